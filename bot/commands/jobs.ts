// /jobs list|show|cancel|retry: the fleet's jobs from Discord, through the same admin code
// as `clawdinator jobs`. A retry is a new request by whoever asks for it: the original's
// signature must verify, their policy applies, and a destructive type (retire, replace) asks
// for the same confirmation as a new request would — a button only the requester can press,
// until it expires: `jobs:<retry|keep>:<userId>:<expiresAtSeconds>:<jobId>`. The press checks
// everything again before anything is queued.
import { SlashCommandBuilder } from '@discordjs/builders';
import type { JobDetail, JobSummary, RetryPlan } from '../../jobs/engine/admin.js';
import { OperationError, RefusedError, UsageError } from '../../lib/errors.js';
import { textOrFile } from '../render.js';
import type { BotDeps, ButtonInvocation, CommandInvocation, CommandModule, Responder } from '../types.js';

const ID_MAX = 110;
/** As /retire's: long enough to read the question, short enough that a forgotten button goes stale. */
export const RETRY_CONFIRM_SECONDS = 5 * 60;
/** Discord's limit on a button's custom id. */
const CUSTOM_ID_MAX = 100;

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

/** "retire of clawdinator-3, asked by alice (Discord …) at 2026-…" */
function described(p: RetryPlan | JobDetail): string {
  const target = ('target' in p ? p.target : p.instance) ?? null;
  const at =
    p.requestedAt === null ? '' : ` at ${new Date(p.requestedAt).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  return `${p.type}${target ? ` of ${target}` : ''}, asked by ${p.requestedBy}${at}`;
}

interface RetryButton {
  decision: 'retry' | 'keep';
  userId: string;
  expiresAt: number;
  jobId: string;
}

function retryButtonId(b: RetryButton): string {
  return `jobs:${b.decision}:${b.userId}:${b.expiresAt}:${b.jobId}`;
}

function parseRetryButton(customId: string): RetryButton {
  // The job id comes last: a scheduled run's id has ':' in it.
  const [prefix, decision, userId, expires, ...rest] = customId.split(':');
  const jobId = rest.join(':');
  const expiresAt = Number(expires);
  if (
    prefix !== 'jobs' ||
    (decision !== 'retry' && decision !== 'keep') ||
    !/^\d{17,20}$/.test(userId ?? '') ||
    !Number.isSafeInteger(expiresAt) ||
    jobId === ''
  ) {
    throw new UsageError('This button is not a retry confirmation.');
  }
  return { decision, userId: userId as string, expiresAt, jobId };
}

async function askRetry(plan: RetryPlan, inv: CommandInvocation, res: Responder, deps: BotDeps): Promise<void> {
  const pending = {
    userId: inv.actor.userId,
    expiresAt: Math.floor(deps.now().getTime() / 1000) + RETRY_CONFIRM_SECONDS,
    jobId: plan.jobId,
  };
  const confirm = retryButtonId({ decision: 'retry', ...pending });
  if (confirm.length > CUSTOM_ID_MAX) {
    throw new UsageError(
      `${plan.jobId}: its id is too long for a confirmation button; retry it with clawdinator jobs retry --yes.`,
    );
  }
  await res.send({
    content:
      `⚠️ Retry \`${plan.jobId}\` (${described(plan)})? It runs again as your request and cannot be undone. ` +
      `Only <@${pending.userId}> can confirm, until <t:${pending.expiresAt}:t>.`,
    buttons: [
      { id: confirm, label: `Retry ${plan.type}${plan.target ? ` ${plan.target}` : ''}`.slice(0, 80), style: 'danger' },
      { id: retryButtonId({ decision: 'keep', ...pending }), label: 'Cancel', style: 'secondary' },
    ],
  });
}

function idOf(inv: CommandInvocation): string {
  const id = inv.options.id;
  if (typeof id !== 'string' || id === '') throw new UsageError('Give a job id.');
  return id;
}

export const jobs: CommandModule = {
  data,
  // A press is part of a retry: the same permission as /jobs retry.
  permission: (inv) =>
    inv.kind === 'command' ? `jobs ${inv.subcommand ?? 'list'}` : inv.kind === 'button' ? 'jobs retry' : 'jobs',
  // A press answers nothing slow before its reply, and a refused one must answer ephemerally.
  ack: (inv) => (inv.kind === 'button' ? 'none' : 'defer'),
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
        const asked = `${described(job)}; signature ${job.signature}`;
        return res.send(
          textOrFile(
            `**${job.id}**`,
            `${line(job)}\n${asked}\nsteps done: ${steps}\n${job.logs.join('\n')}`.trim(),
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
        const plan = await jobs.planRetry(idOf(inv), inv.actor);
        if (plan.destructive) return askRetry(plan, inv, res, deps);
        const r = await jobs.retry(plan.jobId, inv.actor, inv.id, await res.handOff());
        return res.send({ content: `Retrying as \`${r.jobId}\`…` });
      }
      default:
        throw new UsageError('Unknown /jobs subcommand.');
    }
  },
  async button(inv: ButtonInvocation, res: Responder, deps) {
    const pending = parseRetryButton(inv.customId);
    if (inv.actor.userId !== pending.userId) {
      throw new RefusedError(`Only <@${pending.userId}>, who asked, can answer this retry confirmation.`);
    }
    if (deps.now().getTime() / 1000 > pending.expiresAt) {
      throw new UsageError(`This confirmation expired: run /jobs retry id:${pending.jobId} again.`);
    }
    if (pending.decision === 'keep') {
      await res.update({ content: `Retry of \`${pending.jobId}\` cancelled.`, buttons: [] });
      return;
    }
    const jobs = deps.jobAdmin;
    if (jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    // Everything again: the job may have been retried, removed or changed since the question.
    const plan = await jobs.planRetry(pending.jobId, inv.actor);
    // Acknowledge first (the relay may edit this message as soon as the job starts).
    await res.update({ content: `⏳ Retrying \`${plan.jobId}\` (${described(plan)})…`, buttons: [] });
    await jobs.retry(plan.jobId, inv.actor, inv.id, await res.handOff(), { confirmed: true });
  },
};
