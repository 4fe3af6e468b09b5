// /logs name:<member> [unit] [lines]: the last lines of one unit's journal on the member's host,
// read over SSM by the script this project ships there. Units from an allow-list, lines
// capped; secrets are redacted on the host (by the values it holds and by pattern) before the
// text leaves it, and again here. Operators only by default (the authorization config); the
// reply is ephemeral, an attachment when long.
import { SlashCommandBuilder } from '@discordjs/builders';
import { DEFAULT_LOG_UNIT, LOG_LINES_MAX, LOG_UNITS } from '../../infra/host-document.js';
import { OperationError } from '../../lib/errors.js';
import { textOrFile } from '../render.js';
import type { CommandModule } from '../types.js';
import { NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('logs')
  .setDescription("The last lines of a unit's journal on a member's host")
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('a fleet member, e.g. clawdinator-2')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  )
  .addStringOption((o) =>
    o
      .setName('unit')
      .setDescription(`default ${DEFAULT_LOG_UNIT}`)
      .addChoices(...LOG_UNITS.map((u) => ({ name: u, value: u }))),
  )
  .addIntegerOption((o) =>
    o.setName('lines').setDescription(`how many (at most ${LOG_LINES_MAX})`).setMinValue(1).setMaxValue(LOG_LINES_MAX),
  );

export const logs: CommandModule = {
  data,
  permission: () => 'logs',
  ack: () => 'defer-ephemeral',
  async execute(inv, res, deps) {
    if (deps.host === undefined) throw new OperationError('The fleet is not configured on this gateway.');
    const report = await deps.host.logs({ name: inv.options.name, unit: inv.options.unit, lines: inv.options.lines });
    const heading = `**${report.member}** — last ${report.lines} lines of ${report.unit}`;
    await res.send({
      ...textOrFile(heading, report.text || '(empty)', `logs-${report.member}-${report.unit}.txt`),
      ephemeral: true,
    });
  },
};
