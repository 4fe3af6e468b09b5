// /doctor name:<member>: the original's verification checklist, run on the member's host over
// SSM by the script this project ships there (each unit, the memory mount, secrets present and
// 0400 — names only —, /memory shared, repos seeded, disk and memory pressure, clock sync, the
// revision), one ✅/❌ line of evidence each. Never SSH.
import { SlashCommandBuilder } from '@discordjs/builders';
import { OperationError } from '../../lib/errors.js';
import { textOrFile } from '../render.js';
import type { CommandModule } from '../types.js';
import { NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('doctor')
  .setDescription("Check a member's host: units, memory, secrets, disk, clock, revision")
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('a fleet member, e.g. clawdinator-2')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  );

export const doctor: CommandModule = {
  data,
  permission: () => 'doctor',
  ack: () => 'defer',
  async execute(inv, res, deps) {
    if (deps.host === undefined) throw new OperationError('The fleet is not configured on this gateway.');
    const report = await deps.host.doctor(inv.options.name);
    const [head, ...lines] = report.text.split('\n');
    const reply = textOrFile(`**${head}**`, lines.join('\n'), `doctor-${report.member}.txt`);
    // A checklist reads better as lines than in a code block when it fits.
    await res.send(reply.files ? reply : { content: `**${head}**\n${lines.join('\n')}` });
  },
};
