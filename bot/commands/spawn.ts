// /spawn name [instance-type] [ami]: queues the spawn job; its progress edits this reply
// (through the relay) until the new CLAWDINATOR is online or the job names the failed step.
import { SlashCommandBuilder } from '@discordjs/builders';
import { DEFAULT_INSTANCE_TYPES } from '../../lib/config.js';
import { OperationError } from '../../lib/errors.js';
import type { CommandModule } from '../types.js';
import { AMI_MAX, AMI_MIN, DESTRUCTIVE_DEFAULT_PERMISSIONS, NAME_MAX, NAME_MIN } from './options.js';

/**
 * The command's definition with `instanceTypes` as the instance-type choices: the same list
 * the spawn job allows (CLAWDINATOR_INSTANCE_TYPES; `register-commands` passes the setting).
 */
export function spawnDefinition(instanceTypes: readonly string[]) {
  return new SlashCommandBuilder()
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
        .addChoices(...instanceTypes.map((t) => ({ name: t, value: t }))),
    )
    .addStringOption((o) =>
      o
        .setName('ami')
        .setDescription('AMI id (default: the latest available)')
        .setMinLength(AMI_MIN)
        .setMaxLength(AMI_MAX),
    );
}

export const data = spawnDefinition(DEFAULT_INSTANCE_TYPES);

export const spawn: CommandModule = {
  data,
  definitionFor: (settings) => spawnDefinition(settings.instanceTypes),
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
