// /status [name]: the fleet at a glance, or one member in detail. A source that does not
// answer (EC2, SSM, the heartbeats …) is marked with its cause; the rest is still shown.
// Name autocomplete reads the registry alone: Discord drops an answer slower than 3 s, and
// the cloud is what is slow when it is.
import { SlashCommandBuilder } from '@discordjs/builders';
import { formatMember, formatStatus, unavailableSources } from '../../jobs/status.js';
import { OperationError, UsageError } from '../../lib/errors.js';
import { textOrFile } from '../render.js';
import type { CommandModule } from '../types.js';
import { NAME_MAX, NAME_MIN } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('status')
  .setDescription('Show the fleet, or one member in detail')
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('a fleet member, e.g. clawdinator-2')
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX)
      .setAutocomplete(true),
  );

export const status: CommandModule = {
  data,
  permission: () => 'status',
  ack: () => 'defer',
  async execute(inv, res, deps) {
    if (deps.status === undefined) throw new OperationError('The fleet status is not configured on this gateway.');
    const name = inv.options.name;
    if (name !== undefined && typeof name !== 'string') throw new UsageError('Option name must be text.');
    const fleet = await deps.status(name);
    if (name === undefined) {
      const counts = fleet.members.reduce<Record<string, number>>((acc, m) => {
        acc[m.state] = (acc[m.state] ?? 0) + 1;
        return acc;
      }, {});
      const partial = unavailableSources(fleet).length > 0 ? ' (partial: a source did not answer)' : '';
      const heading = `**Fleet** — ${
        Object.entries(counts)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ') || 'no members'
      }${partial}`;
      await res.send(textOrFile(heading, formatStatus(fleet), 'status.txt'));
      return;
    }
    const detail = formatMember(fleet, name);
    if (detail === null) throw new UsageError(`${name} is not in the fleet registry.`);
    await res.send({ content: detail });
  },
  async autocomplete(inv, deps) {
    if (deps.fleetNames === undefined) return [];
    const names = await deps.fleetNames();
    return names
      .filter((n) => n.includes(inv.focused.value))
      .sort()
      .slice(0, 25)
      .map((n) => ({ name: n, value: n }));
  },
};
