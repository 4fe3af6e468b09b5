// /jobs list|show|cancel|retry: the fleet's jobs from Discord, through the same admin code
// as `clawdinator jobs`. A retry is a new request by whoever presses it (their policy applies).
import { SlashCommandBuilder } from '@discordjs/builders';
import type { JobSummary } from '../../jobs/engine/admin.js';
import { OperationError, UsageError } from '../../lib/errors.js';
import { textOrFile } from '../render.js';
import type { CommandInvocation, CommandModule } from '../types.js';

const ID_MAX = 110;

export const data = new SlashCommandBuilder()
  .setName('jobs')
  .setDescription('Recent, running and failed fleet jobs')
  .addSubcommand((s) =>
    s
      .setName('list')
      .setDescription('List jobs')
      .addStringOption((o) =>
        o
          .setName('filter')
          .setDescription('which jobs (default: recent)')
          .addChoices(
            { name: 'recent', value: 'recent' },
            { name: 'running', value: 'running' },
            { name: 'failed', value: 'failed' },
            { name: 'waiting', value: 'waiting' },
          ),
      ),
  )
  .addSubcommand((s) =>
    s
      .setName('show')
      .setDescription('One job in detail')
      .addStringOption((o) => o.setName('id').setDescription('job id').setRequired(true).setMaxLength(ID_MAX)),
  )
  .addSubcommand((s) =>
    s
      .setName('cancel')
      .setDescription('Cancel a job (a running one stops at its next step)')
      .addStringOption((o) => o.setName('id').setDescription('job id').setRequired(true).setMaxLength(ID_MAX)),
  )
  .addSubcommand((s) =>
    s
      .setName('retry')
      .setDescription('Run a failed job again, as a new request by you')
      .addStringOption((o) => o.setName('id').setDescription('job id').setRequired(true).setMaxLength(ID_MAX)),
  );

function line(j: JobSummary): string {
  const when = new Date(j.createdAt ?? 0).toISOString().slice(5, 16).replace('T', ' ');
  const step = j.step ? ` · ${j.step}` : '';
  const why = j.failedReason ? ` · ${j.failedReason}` : '';
  return `${when}  ${j.state.padEnd(9)} ${j.id}  by ${j.requestedBy}${step}${why}`;
}

function idOf(inv: CommandInvocation): string {
  const id = inv.options.id;
  if (typeof id !== 'string' || id === '') throw new UsageError('Give a job id.');
  return id;
}

export const jobs: CommandModule = {
  data,
  permission: (inv) => (inv.kind === 'command' ? `jobs ${inv.subcommand ?? 'list'}` : 'jobs'),
  ack: () => 'defer',
  async execute(inv, res, deps) {
    const jobs = deps.jobAdmin;
    if (jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    switch (inv.subcommand) {
      case 'list': {
        const filter = (inv.options.filter as 'recent' | 'running' | 'failed' | 'waiting' | undefined) ?? 'recent';
        const list = await jobs.list(filter);
        if (list.length === 0) return res.send({ content: `No ${filter} jobs.` });
        return res.send(textOrFile(`**Jobs** — ${filter}`, list.map(line).join('\n'), 'jobs.txt'));
      }
      case 'show': {
        const job = await jobs.show(idOf(inv));
        if (job === null) throw new OperationError(`no such job: ${idOf(inv)}`);
        const steps = job.steps.map((s) => s.name).join(' → ') || 'none yet';
        return res.send(
          textOrFile(
            `**${job.id}**`,
            `${line(job)}\nsteps done: ${steps}\n${job.logs.join('\n')}`.trim(),
            `${job.id}.txt`,
          ),
        );
      }
      case 'cancel': {
        const r = await jobs.cancel(idOf(inv), inv.actor);
        const said = {
          removed: 'cancelled (it had not started)',
          flagged: 'will stop at its next step',
          'already-finished': 'had already finished',
          'not-found': 'does not exist',
        }[r.outcome];
        return res.send({ content: `\`${r.jobId}\` ${said}.` });
      }
      case 'retry': {
        const r = await jobs.retry(idOf(inv), inv.actor, inv.id, await res.handOff());
        return res.send({ content: `Retrying as \`${r.jobId}\`…` });
      }
      default:
        throw new UsageError('Unknown /jobs subcommand.');
    }
  },
};
