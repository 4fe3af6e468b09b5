// What the lifecycle jobs (spawn, retire, replace; deploy's records) share: how a run is named in registry
// commits, ops.md and the audit, which runner refusals are final, and how an agent's
// destructive request waits for a human.
import { UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { errorLine, OperationError, RefusedError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { appendOpsLine } from '../../memory/ops-log.js';
import type { MemoryStore } from '../../memory/store.js';
import { AuditTrail } from '../audit.js';
import { type Approval, ASKED_STEP, approvalButtonId, WAIT_STEP, writePending } from '../engine/approval.js';
import { describePrincipal, type Principal } from '../engine/envelope.js';
import type { FinalReport, JobContext, JobEnd } from '../engine/job-type.js';
import { publish } from '../engine/notify.js';
import type { Signer } from '../engine/queues.js';
import { PlanRefusedError, type RunContext } from '../terraform/runner.js';

export type LifecycleAction = 'spawn' | 'retire' | 'replace' | 'cleanup' | 'deploy';

/** The runner's refusals (unasked destroys, a plan beyond the saved one) cannot be retried away. */
export async function refusedIsFinal<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PlanRefusedError) throw new UnrecoverableError(err.message);
    throw err;
  }
}

/** How the request came in, for commit messages and ops.md. */
export function via(action: LifecycleAction, p: Principal): string {
  switch (p.kind) {
    case 'discord':
      return `/${action}`;
    case 'agent':
      return `clawdinator request ${action}`;
    case 'cli':
      return 'the CLI';
    case 'schedule':
      return `schedule ${p.scheduler}`;
  }
}

/** "2026-11-24 20:41 UTC" */
export function clock(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** One run of a lifecycle job, as ops.md and the audit name it. */
export interface LifecycleRun {
  jobId: string;
  principal: Principal;
  action: LifecycleAction;
  name: string;
}

/** One audit event for a lifecycle job (jobs/audit.ts: journal, S3, the copy in audit/<day>.md). */
export async function auditLifecycle(audit: AuditTrail, run: LifecycleRun, at: Date, outcome: string): Promise<void> {
  const by = describePrincipal(run.principal);
  const line = `- ${at.toISOString()} job=${run.jobId} ${by} ${run.action} name:${run.name} → ${outcome}`;
  await audit.record({
    at,
    line,
    fields: { kind: 'job', job: run.jobId, action: run.action, name: run.name, by, outcome },
  });
}

/** Where a record that could not be written is reported: the ops channel, as the job's signer. */
export interface RecordAlerts {
  redis: Redis;
  signer: Signer;
  opsChannelId?: string;
  log: Logger;
}

/**
 * The run's line in ops.md, in the original's style ("- <time> spawn <name>: <what> —
 * requested by …"), and its audit line. An append is not idempotent: a retried step looks
 * for its own line (tagged with the job id) first.
 *
 * Best-effort: the change is made by now (an instance runs, a host is gone), so a record
 * that cannot be written (ops.md over the cap, not a file, locked too long) must not fail
 * the job and send it into retries or clean-up. It becomes an alert in the ops channel.
 */
export async function recordLifecycle(
  memory: MemoryStore,
  audit: AuditTrail,
  run: LifecycleRun,
  what: string,
  outcome: string,
  alerts?: RecordAlerts,
) {
  const at = new Date();
  const tag = `(job ${run.jobId})`;
  const who = describePrincipal(run.principal);
  let missed: string | undefined;
  await appendOpsLine(memory, {
    line: `- ${clock(at)} ${run.action} ${run.name}: ${what} — requested by ${who} ${tag}`,
    tag,
    now: at,
  }).catch((err) => {
    missed = `its line in ops.md was not written: ${errorLine(err)}`;
  });
  // The trail never throws: its journal line and S3 object are the record, the memory copy
  // is best-effort and logged (jobs/audit.ts).
  await auditLifecycle(audit, run, at, outcome);
  if (missed !== undefined && alerts !== undefined) {
    const text = `${run.name}: ${run.action} done, but ${missed}`;
    alerts.log.warn({ jobId: run.jobId }, text);
    await publish(alerts.redis, alerts.signer, {
      kind: 'alert',
      jobId: run.jobId,
      type: run.action,
      text,
      reply: alerts.opsChannelId === undefined ? undefined : { channelId: alerts.opsChannelId },
    }).catch((err) => alerts.log.error({ err: errorLine(err) }, 'record alert not published'));
  }
  return null;
}

/**
 * What a lifecycle job's failure says: a refusal of the checks is its own one line; later
 * failures name the step. Refusals and UnrecoverableErrors stay final; whether another
 * failure is the last is the engine's to say, and the engine's finalizer then undoes the
 * job's steps (`lifecycleFinalize`), whatever ended it.
 */
export function lifecycleFailure(run: LifecycleRun, step: string, err: unknown): Error {
  const final = err instanceof UnrecoverableError || err instanceof RefusedError;
  const message = step === 'checks' ? errorLine(err) : `${run.name}: ${step} failed: ${errorLine(err)}`;
  return final ? new UnrecoverableError(message) : new OperationError(message, { cause: err });
}

// ── one end for every lifecycle job ───────────────────────────────────────────────────

/** What a lifecycle job's undo did, for its final message. */
export interface LifecycleUndo {
  /** What is left: "Nothing was left behind", "Left: i-0… and its registry entry clawdinator-3". */
  left: string;
  /** The command to run next, e.g. "run /spawn name:clawdinator-3 again". */
  next: string;
  /** Added to the failure's reason when the processor ended the job, e.g. "undone: …". */
  undone?: string;
}

/** How `principal` asks for `action` on `name` again: a slash command, the CLI, or a request. */
export function commandFor(action: LifecycleAction, name: string, principal: Principal): string {
  switch (principal.kind) {
    case 'cli':
      return `\`clawdinator fleet ${action} ${name}${action === 'spawn' ? '' : ' --yes'}\``;
    case 'agent':
      return `\`clawdinator request ${action} ${name}\``;
    default:
      return `\`/${action} name:${name}\``;
  }
}

/** The steps before an agent's request was confirmed, then the job's own. */
export function lifecycleSteps(principal: Principal, own: readonly string[]): readonly string[] {
  return principal.kind === 'agent' ? [ASKED_STEP, WAIT_STEP, 'confirmed', ...own] : own;
}

/** Steps that change nothing: a job ending there says only why (a refusal, a cancel, an expiry). */
const QUIET_STEPS = new Set([ASKED_STEP, WAIT_STEP, 'confirmed', 'checks']);

/**
 * A lifecycle job type's `finalize`: its undo (of the saved steps, from the request alone),
 * then one audit line, and the final message — the step, the cause, what is left, the next
 * command. The undo runs once (`end.once`); each of its parts is idempotent besides, since a
 * crash may come before its result is kept.
 */
export function lifecycleFinalize<D extends { name: string }>(
  action: LifecycleAction,
  deps: { memory?: MemoryStore; audit?: AuditTrail },
  undo: (end: JobEnd<D>) => Promise<LifecycleUndo>,
): (end: JobEnd<D>) => Promise<FinalReport> {
  return async (end) => {
    const { name } = end.data;
    const run: LifecycleRun = { jobId: end.jobId, principal: end.principal, action, name };
    // A failure the processor formatted ("clawdinator-3: apply failed: …") names its step already.
    const cause = end.cause.replace(/^[a-z0-9-]+: [a-z-]+ failed: /, '');
    const result = await end.once('undo', () => undo(end));
    let message: string;
    if (QUIET_STEPS.has(end.step)) {
      message = end.how === 'removed' ? `${action} ${name}: ${cause}; nothing changed` : cause;
    } else {
      const verb = end.how === 'cancelled' || end.how === 'removed' ? 'stopped' : 'failed';
      const said = /[.!?]$/.test(cause) ? cause : `${cause}.`;
      message = `${action} ${name} ${verb} at ${end.step}: ${said} ${result.left}; ${result.next}.`;
    }
    // The worker's trail; a process without one (tests) has the journal and the memory copy.
    const trail = deps.audit ?? (deps.memory && new AuditTrail({ log: end.log, memory: deps.memory }));
    if (trail !== undefined) {
      const outcome = end.how === 'cancelled' ? 'cancelled' : end.how === 'removed' ? 'removed' : 'failed';
      await end.once('audit', () => auditLifecycle(trail, run, new Date(), `${outcome}: ${message}`));
    }
    return { message, undone: result.undone };
  };
}

// ── an agent's retire or replace waits for a human ───────────────────────────────────────

/**
 * How long an agent's request waits for a human in the ops channel. Long enough for someone
 * on call to see it; short enough that a stale question is not approved hours later against
 * a fleet that has changed (the checks run again after the answer anyway) — and the member's
 * instance lock is held the whole while, blocking every other operation on it.
 */
export const DEFAULT_AGENT_CONFIRM_SECONDS = 30 * 60;

export interface ConfirmationSettings {
  redis: Redis;
  /** Where the question goes; without one, an agent's request cannot be confirmed. */
  opsChannelId?: string;
  expirySeconds: number;
  pollMs: number;
}

export interface ConfirmationRequest {
  action: 'retire' | 'replace';
  /** Said after the name, e.g. " with ami-…". */
  detail?: string;
  /** The refusals that need no human (unknown name, last healthy host …): before asking. */
  precheck: () => Promise<unknown>;
  /** One audit line for the run. */
  audit: (outcome: string) => Promise<void>;
}

/** "30 min", or seconds below a minute (tests use short expiries). */
export function duration(seconds: number): string {
  return seconds < 60 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
}

/**
 * Asks the ops channel, then waits (re-delayed, no worker slot held) for a human's signed
 * answer, until the expiry. Returns on a confirm; a cancel or the expiry ends the job with
 * nothing changed. Only for an agent's request: other principals were confirmed already.
 */
export async function humanConfirmation(
  ctx: JobContext<{ name: string }>,
  request: ConfirmationRequest,
  settings: ConfirmationSettings,
): Promise<Approval> {
  const { action } = request;
  const { name } = ctx.data;
  if (ctx.principal.kind !== 'agent') throw new Error('only an agent’s request waits for a human');
  const host = ctx.principal.host;
  const readApproval = ctx.readApproval;
  if (readApproval === undefined) throw new UnrecoverableError(`${action}: this worker cannot read approvals`);
  const asked = await ctx.steps.run(ASKED_STEP, async () => {
    const channelId = settings.opsChannelId;
    if (channelId === undefined) {
      throw new UnrecoverableError(
        `an agent's ${action} needs a human's confirmation in the ops channel, and none is configured (CLAWDINATOR_OPS_CHANNEL_ID)`,
      );
    }
    await request.precheck();
    const expiresAt = Math.floor(Date.now() / 1000) + settings.expirySeconds;
    const button = (decision: 'confirm' | 'cancel') =>
      approvalButtonId({ action, decision, jobId: ctx.jobId, expiresAt });
    const verb = action === 'retire' ? 'Retire' : 'Replace';
    // The buttons live in the signed pending record; the event only says there is a question.
    await writePending(settings.redis, ctx.signer, {
      jobId: ctx.jobId,
      requestId: ctx.requestId,
      action,
      name,
      askedBy: host,
      permission: action,
      channelId,
      expiresAt,
      buttons: [
        { id: button('confirm'), label: `${verb} ${name}`, style: 'danger' },
        { id: button('cancel'), label: 'Cancel', style: 'secondary' },
      ],
    });
    await publish(settings.redis, ctx.signer, {
      kind: 'confirm',
      jobId: ctx.jobId,
      type: action,
      reply: { channelId },
      text:
        `${host} asks to ${action} **${name}**${request.detail ?? ''}. ` +
        `Any human allowed /${action} can answer, until <t:${expiresAt}:t>.`,
    });
    return { expiresAt };
  });
  const expired = `${action} of ${name} asked by ${host}: not confirmed within ${duration(settings.expirySeconds)}`;
  const approval = await ctx.steps.waitFor(
    WAIT_STEP,
    async () => {
      const read = await readApproval({ action, name, expiresAt: asked.expiresAt });
      if (read !== null && 'approval' in read) return read.approval;
      if (read !== null) ctx.log.warn({ reason: read.ignored }, 'ignored an approval that does not verify');
      if (Date.now() > asked.expiresAt * 1000) throw new UnrecoverableError(expired);
      return undefined;
    },
    // The expiry above decides; this bound only backs it up.
    { pollMs: settings.pollMs, timeoutMs: settings.expirySeconds * 2000 + 60_000, timeoutMessage: expired },
  );
  const who = describePrincipal(approval.by);
  if (approval.decision === 'cancel') throw new UnrecoverableError(`${action} of ${name} cancelled by ${who}`);
  await ctx.steps.run('confirmed', async () => {
    await request.audit(`confirmed by ${who}`);
    await ctx.progress(`${approval.by.userName} confirmed: ${action === 'retire' ? 'retiring' : 'replacing'} ${name}`);
    return null;
  });
  return approval;
}

// ── what every lifecycle job's run shares ────────────────────────────────────────────────

/**
 * A run of a lifecycle job: the member's name, the step running now (a failure names it),
 * steps and waits that keep it current, Terraform's lines in the job log, how the run
 * appears in ops.md and the audit, and an agent's wait for a human.
 */
export abstract class LifecycleJob<D extends { name: string }> {
  protected readonly name: string;
  protected readonly runCtx: RunContext;
  /** The step running now: a failure names it. */
  protected current = 'checks';
  private readonly trail: AuditTrail;
  /** Where a record that could not be written is reported (see reportRecordsTo). */
  private recordAlerts?: Pick<RecordAlerts, 'redis' | 'opsChannelId'>;

  constructor(
    protected readonly ctx: JobContext<D>,
    private readonly action: LifecycleAction,
    protected readonly memory: MemoryStore,
    /** Between two looks at what a wait waits for. */
    protected readonly pollMs: number,
    /** The worker's audit trail; without one (tests), the journal and the memory copy only. */
    audit?: AuditTrail,
  ) {
    this.name = ctx.data.name;
    this.trail = audit ?? new AuditTrail({ log: ctx.log, memory });
    // Terraform's lines go to the job's log in Redis (`jobs show`) and the worker's log (the
    // runner never passes plan values).
    this.runCtx = {
      onLine: (line) => {
        ctx.output?.(line);
        ctx.log.info({ stack: this.name }, line);
      },
    };
  }

  /** This run, as ops.md and the audit name it. */
  protected get lifecycle(): LifecycleRun {
    return { jobId: this.ctx.jobId, principal: this.ctx.principal, action: this.action, name: this.name };
  }

  protected step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.current = name;
    return this.ctx.steps.run(name, fn);
  }

  protected waitFor<T>(
    name: string,
    check: () => Promise<T | undefined>,
    timeoutMs: number,
    timeoutMessage = `${this.name}: gave up waiting for ${name} after ${Math.round(timeoutMs / 60_000)} min`,
  ): Promise<T> {
    this.current = name;
    return this.ctx.steps.waitFor(name, check, { pollMs: this.pollMs, timeoutMs, timeoutMessage });
  }

  protected audit(outcome: string): Promise<void> {
    return auditLifecycle(this.trail, this.lifecycle, new Date(), outcome);
  }

  /** A record (ops.md, audit) that cannot be written becomes an alert there. */
  reportRecordsTo(alerts: Pick<RecordAlerts, 'redis' | 'opsChannelId'>): this {
    this.recordAlerts = { redis: alerts.redis, opsChannelId: alerts.opsChannelId };
    return this;
  }

  protected record(what: string, outcome: string): Promise<null> {
    const alerts = this.recordAlerts && { ...this.recordAlerts, signer: this.ctx.signer, log: this.ctx.log };
    return recordLifecycle(this.memory, this.trail, this.lifecycle, what, outcome, alerts);
  }

  protected failed(err: unknown): Error {
    return lifecycleFailure(this.lifecycle, this.current, err);
  }

  /** An agent's request: a human in the ops channel answers first (see humanConfirmation). */
  protected async confirmed(
    action: ConfirmationRequest['action'],
    request: Pick<ConfirmationRequest, 'detail' | 'precheck'>,
    deps: { redis: Redis; opsChannelId?: string; agentConfirmSeconds?: number },
  ): Promise<void> {
    // Part of the checks: its refusals, a cancel and the expiry are one line each.
    this.current = 'checks';
    await humanConfirmation(
      this.ctx,
      { ...request, action, audit: (outcome) => this.audit(outcome) },
      {
        redis: deps.redis,
        opsChannelId: deps.opsChannelId,
        expirySeconds: deps.agentConfirmSeconds ?? DEFAULT_AGENT_CONFIRM_SECONDS,
        pollMs: this.pollMs,
      },
    );
  }
}
