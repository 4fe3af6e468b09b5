// /spawn name [instance-type] [ami]: queues the spawn job; its progress edits this reply
// (through the relay) until the new CLAWDINATOR is online or the job names the failed step.
import { SlashCommandBuilder } from '@discordjs/builders';
import { OperationError } from '../../lib/errors.js';
import type { CommandModule } from '../types.js';
import { AMI_MAX, AMI_MIN, DESTRUCTIVE_DEFAULT_PERMISSIONS, INSTANCE_TYPES, NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('spawn')
  .setDescription('Create a new CLAWDINATOR')
  .setDefaultMemberPermissions(DESTRUCTIVE_DEFAULT_PERMISSIONS)
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('clawdinator-<n>; needs its own Discord token secret')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  )
  .addStringOption((o) =>
    o
      .setName('instance-type')
      .setDescription('EC2 instance type (default from settings)')
      .addChoices(...INSTANCE_TYPES.map((t) => ({ name: t, value: t }))),
  )
  .addStringOption((o) =>
    o
      .setName('ami')
      .setDescription('AMI id (default: the latest available)')
      .setMinLength(AMI_MIN)
      .setMaxLength(AMI_MAX),
  );

export const spawn: CommandModule = {
  data,
  permission: () => 'spawn',
  ack: () => 'defer',
  async execute(inv, res, deps) {
    if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    const { name, 'instance-type': instanceType, ami } = inv.options;
    // The job's schema checks every value again (Discord-side limits are a convenience).
    const queued = await deps.jobs.enqueue({
      type: 'spawn',
      data: { name, instanceType, ami },
      actor: inv.actor,
      requestId: inv.id,
      reply: await res.handOff(),
    });
    await res.send({ content: `⏳ Spawning **${String(name)}** — job \`${queued.jobId}\``, buttons: [] });
  },
};
