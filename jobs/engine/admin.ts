// Jobs made visible and controllable (`clawdinator jobs …`, `/jobs`): list, show, cancel and
// retry across the fleet queue and the per-host queues.
//
// Everything read back from Redis is untrusted (whoever can write to Redis can write a job):
// a job whose data does not parse as a request shows as type '?', and every text shown to
// people is one bounded line without control characters, since it ends up in terminals and
// Discord. A list shows what jobs claim; `show` says whether the job's signature verifies
// (when this process has the public keys), and the worker verifies before anything runs.
//
// Retry: a new request by whoever retries, signed with their key — so it must never sign what
// it has not verified. The original's envelope is verified first (its principal's key, the
// signature, the job id it was signed for, its type, version and schema); one that does not
// verify is refused ("cannot retry …: its signature does not verify"), so a job planted in the
// failed set cannot be laundered into a signed one. The retrier's own policy must allow the
// type and its target, and a destructive type (JobType.destructive) is confirmed as a new
// request of it would be (`--yes` on the CLI, the requester's button on Discord).
//
// Cancel: a job that never started is removed, and the workers' finalizer (finalize.ts: the
// `removed` event, or its sweep) ends it as it ends every job — lock released, request spent,
// audit line, result event. One that started (running, waiting out a long step, or back in
// the queue after its worker died) gets the cancel flag, which the job checks before each
// step, so its worker stops it at a step boundary and the same finalization undoes its work.
import type { KeyObject } from 'node:crypto';
import { Job, type JobJsonRaw, Queue } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import type { AuthorizationPolicy } from '../../lib/authorize.js';
import { instanceName } from '../../lib/config.js';
import { OperationError, UsageError } from '../../lib/errors.js';
import { verifyPayload } from '../signing.js';
import {
  describePrincipal,
  type Envelope,
  envelopeSchema,
  expectedKeyId,
  type Principal,
  type ReplyTarget,
} from './envelope.js';
import { FLEET_QUEUE, hostQueue, keys } from './keys.js';
import { checkPolicy } from './policy.js';
import type { EnqueueResult, Enqueuer, JobTypes } from './queues.js';

export type JobFilter = 'recent' | 'running' | 'failed' | 'waiting';
export const JOB_FILTERS: readonly JobFilter[] = ['recent', 'running', 'failed', 'waiting'];

/** BullMQ's job states, plus 'unknown' for a job gone between listing and reading it. */
export type JobState =
  | 'waiting'
  | 'prioritized'
  | 'delayed'
  | 'waiting-children'
  | 'active'
  | 'completed'
  | 'failed'
  | 'unknown';

export interface JobSummary {
  id: string;
  queue: string;
  /** The job type, or '?' when the job's data is not a well-formed request. */
  type: string;
  state: JobState;
  /** Who asked (describePrincipal), or '?'. */
  requestedBy: string;
  /** The fleet member the job operates on, when it has one. */
  instance: string | null;
  /** Milliseconds since the epoch. */
  createdAt: number | null;
  startedAt: number | null;
  finishedAt: number | null;
  /** The current step or progress message. */
  step: string | null;
  percent: number | null;
  /** First line of why it failed (the last attempt). */
  failedReason: string | null;
  /** Attempts made so far. */
  attempts: number;
}

export interface JobDetail extends JobSummary {
  requestId: string | null;
  /** When the request was signed (ms), as it claims; see `signature`. */
  requestedAt: number | null;
  /**
   * Whether the job's request verifies with its principal's public key and is bound to this
   * job: `verified`, `does not verify`, or `not checked` (this process has no public keys).
   */
  signature: 'verified' | 'does not verify' | 'not checked';
  /** A completed job's summary line. */
  result: string | null;
  /** Who asked to cancel it, while the flag is set. */
  cancelRequestedBy: string | null;
  /** Saved steps by name and the size of their saved JSON; values stay out (they may be large). */
  steps: { name: string; bytes: number }[];
  /** The last log lines (at most LOG_LINES) and how many the job has. */
  logs: string[];
  logCount: number;
}

export type CancelOutcome = 'removed' | 'flagged' | 'already-finished' | 'not-found';

/**
 * What this view may use beyond Redis: public keys to verify with. It signs no events: the
 * result of a job a cancel removed is sent by the workers' finalizer (finalize.ts).
 */
export interface AdminTrust {
  /** The public key of a key id (setup.ts publicKeys): `show` and `retry` verify with it. */
  publicKey?(keyId: string): Promise<KeyObject | null>;
}

/** A failed job whose request verified, as a retry would ask for it again. */
export interface RetryPlan {
  jobId: string;
  type: string;
  data: unknown;
  /** The fleet member it acts on (instanceOf). */
  target: string | null;
  destructive: boolean;
  /** Who asked for the original, and when (ms). */
  requestedBy: string;
  requestedAt: number;
}

export interface RetryOptions {
  /** The retrier's authorization policy (Discord users); operators are allowed everything. */
  policy?: AuthorizationPolicy;
  /** A destructive type was confirmed by the retrier (`--yes`, the confirm button). */
  confirmed?: boolean;
}

/** A destructive retry not yet confirmed: the caller asks, then calls retry again with `confirmed`. */
export class NeedsConfirmation extends UsageError {
  constructor(readonly plan: RetryPlan) {
    super(
      `retrying ${plan.jobId} runs ${plan.type}${plan.target ? ` of ${plan.target}` : ''} again, which cannot be undone: confirm it`,
    );
  }
}

const LOG_LINES = 20;
const MAX_LIMIT = 200;
/** Long enough for any job to reach its next step; the worker deletes the flag when the job ends. */
const CANCEL_FLAG_TTL_SECONDS = 86_400;

const QUEUED: ReadonlySet<JobState> = new Set(['waiting', 'prioritized', 'delayed', 'waiting-children']);
type StoredState = Exclude<JobState, 'unknown'>;
const ALL_STATES: StoredState[] = [
  'active',
  'waiting',
  'prioritized',
  'delayed',
  'waiting-children',
  'completed',
  'failed',
];
/** Where each filter looks; a delayed job is running when it started (a long wait, a retry's backoff). */
const STATES_OF: Record<JobFilter, StoredState[]> = {
  recent: ALL_STATES,
  running: ['active', 'delayed'],
  failed: ['failed'],
  waiting: ['waiting', 'prioritized', 'delayed', 'waiting-children'],
};

// Our ids are <type>-<request id> (jobIdFor); a job scheduler's runs are repeat:<scheduler>:<time>.
const JOB_ID = /^[a-z][a-z0-9-]{0,40}-[A-Za-z0-9_-]{1,64}$/;
const SCHEDULED_JOB_ID = /^repeat:[A-Za-z0-9_-]{1,64}:\d{1,16}$/;

export function checkJobId(id: string): void {
  if (!JOB_ID.test(id) && !SCHEDULED_JOB_ID.test(id)) {
    throw new UsageError('not a job id: expected <type>-<request id>, e.g. spawn-1234567890');
  }
}

/**
 * The fleet's queues that exist in Redis: the fleet queue and every per-host queue
 * (BullMQ writes `bull:<queue>:meta` when a queue is first used). Other applications'
 * queues on the same Redis are left out.
 */
export async function existingQueueNames(redis: Redis): Promise<string[]> {
  const names = new Set<string>([FLEET_QUEUE]);
  const hostPrefix = hostQueue('');
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', 'bull:clawdinator-*:meta', 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      const name = key.slice('bull:'.length, -':meta'.length);
      if (name.startsWith(hostPrefix) && instanceName.safeParse(name.slice(hostPrefix.length)).success) names.add(name);
    }
  } while (cursor !== '0');
  return [...names].sort();
}

/** One line of at most `max` characters without control or bidi-override characters. */
function oneLine(text: string, max: number): string {
  const line = (text.split('\n', 1)[0] ?? '').replace(/[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function positive(n: number | undefined): number | null {
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : null;
}

/** What the worker reports (steps.ts and worker.ts: `{ message, percent }`), read defensively. */
function progressOf(progress: unknown): { step: string | null; percent: number | null } {
  if (typeof progress === 'number' && progress >= 0 && progress <= 100) return { step: null, percent: progress };
  if (progress === null || typeof progress !== 'object') return { step: null, percent: null };
  const { message, percent } = progress as { message?: unknown; percent?: unknown };
  return {
    step: typeof message === 'string' ? oneLine(message, 200) : null,
    percent: typeof percent === 'number' && percent >= 0 && percent <= 100 ? percent : null,
  };
}

interface Loaded {
  queue: Queue;
  summary: JobSummary;
  /** Undefined when the job's fields do not parse at all. */
  job?: Job;
  /** Undefined when the job's data is not a well-formed request. */
  envelope?: Envelope;
}

export class JobAdmin {
  private readonly queues = new Map<string, Queue>();

  /**
   * `types` tells which fleet member a job locks (its type's `instanceOf`, as at enqueue).
   * For a type this process does not know (a newer worker's), `data.name` is the fleet's
   * convention; trying it is safe, since a lock is released only when it names this job.
   */
  constructor(
    private readonly connection: RedisOptions,
    private readonly redis: Redis,
    private readonly queueNames: () => Promise<string[]> | string[],
    private readonly types: JobTypes,
    private readonly trust: AdminTrust = {},
  ) {}

  private queue(name: string): Queue {
    let q = this.queues.get(name);
    if (q === undefined) {
      q = new Queue(name, { connection: this.connection });
      // A lost connection also rejects the pending commands, which the caller reports.
      q.on('error', () => {});
      this.queues.set(name, q);
    }
    return q;
  }

  async list(filter: JobFilter, limit = 20): Promise<JobSummary[]> {
    if (!JOB_FILTERS.includes(filter)) throw new UsageError(`filter: expected one of ${JOB_FILTERS.join(', ')}`);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new UsageError(`limit: expected a whole number from 1 to ${MAX_LIMIT}`);
    }
    const names = await this.queueNames();
    const found = await Promise.all(
      names.flatMap((name) =>
        STATES_OF[filter].map(async (state) => {
          const queue = this.queue(name);
          // Newest first: waiting lists are pushed at the head, finished sets scored by time.
          const ids = await queue.getRanges([state], 0, limit - 1, false);
          return Promise.all(ids.map((id) => this.load(queue, id, state)));
        }),
      ),
    );
    const seen = new Set<string>();
    const summaries: JobSummary[] = [];
    for (const loaded of found.flat(2)) {
      if (loaded === null) continue;
      const { summary } = loaded;
      // A job that moved between two range reads shows up twice.
      const key = `${summary.queue}/${summary.id}`;
      if (seen.has(key) || !matches(filter, summary)) continue;
      seen.add(key);
      summaries.push(summary);
    }
    summaries.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0));
    return summaries.slice(0, limit);
  }

  async show(id: string): Promise<JobDetail | null> {
    checkJobId(id);
    const loaded = await this.find(id);
    if (loaded === null) return null;
    const { queue, summary, job, envelope } = loaded;
    const [{ logs, count }, cancelBy] = await Promise.all([
      queue.getJobLogs(id, -LOG_LINES, -1),
      this.redis.get(keys.cancel(id)),
    ]);
    const returned = job?.returnvalue as { summary?: unknown } | null | undefined;
    const verified = this.trust.publicKey === undefined ? null : await this.verified(loaded);
    return {
      ...summary,
      requestId: envelope?.signed.requestId ?? null,
      requestedAt: envelope ? positive(envelope.signed.issuedAt) : null,
      signature: verified === null ? 'not checked' : verified === true ? 'verified' : 'does not verify',
      result:
        summary.state === 'completed' && typeof returned?.summary === 'string' ? oneLine(returned.summary, 300) : null,
      cancelRequestedBy: cancelBy === null ? null : oneLine(cancelBy, 120),
      steps: Object.entries(envelope?.steps ?? {}).map(([name, value]) => ({
        name: oneLine(name, 100),
        bytes: Buffer.byteLength(JSON.stringify(value) ?? 'null'),
      })),
      logs: logs.map((line) => oneLine(line, 500)),
      logCount: count,
    };
  }

  /** `by` says who cancels (e.g. describePrincipal of the caller); it goes into the flag and the result event. */
  async cancel(id: string, by: string): Promise<{ outcome: CancelOutcome; jobId: string }> {
    checkJobId(id);
    const loaded = await this.find(id);
    if (loaded === null) return { outcome: 'not-found', jobId: id };
    const { queue, summary, job } = loaded;
    if (summary.state === 'completed' || summary.state === 'failed') return { outcome: 'already-finished', jobId: id };
    const who = oneLine(by, 120);
    // The flag first: a started job stops at its next step, and the finalizer of a removed
    // one reads who cancelled it from there.
    await this.redis.set(keys.cancel(id), who, 'EX', CANCEL_FLAG_TTL_SECONDS);
    // A job scheduler's pending run is flagged, not removed: BullMQ refuses to remove it (the
    // schedule's next run is made from it), and flagged it stops at its first step.
    if (QUEUED.has(summary.state) && summary.startedAt === null && job?.repeatJobKey === undefined) {
      // 0 means a worker took the job meanwhile: it is running now and stops at its next step.
      if ((await queue.remove(id)) === 1) return { outcome: 'removed', jobId: id };
    }
    return { outcome: 'flagged', jobId: id };
  }

  /**
   * What a retry of this failed job would ask for, once its request verified and the
   * retrier's policy allows it (see the top of this file). Throws a one-line error otherwise.
   */
  async planRetry(id: string, principal: Principal, options: RetryOptions = {}): Promise<RetryPlan> {
    checkJobId(id);
    const loaded = await this.find(id);
    if (loaded === null) throw new OperationError(`no such job: ${id}`);
    if (loaded.summary.state !== 'failed') {
      throw new OperationError(`only failed jobs can be retried: ${id} is ${loaded.summary.state}`);
    }
    if (loaded.envelope === undefined) throw new OperationError(`cannot retry ${id}: its data is not a request`);
    if (this.trust.publicKey === undefined) {
      throw new OperationError(`cannot retry ${id}: this process has no public keys to verify it with`);
    }
    if (!(await this.verified(loaded))) throw new OperationError(`cannot retry ${id}: its signature does not verify`);
    const { signed } = loaded.envelope;
    const type = this.types.get(signed.type);
    if (type === undefined || type.version !== signed.schema) {
      throw new OperationError(`cannot retry ${id}: this version does not know ${signed.type} v${signed.schema}`);
    }
    const data = type.schema.safeParse(signed.data);
    if (!data.success) throw new OperationError(`cannot retry ${id}: its data is not valid for ${type.name}`);
    // The retrier asks anew: their own policy, for this type and this target.
    checkPolicy({ policy: options.policy ?? {} }, type, data.data, principal);
    return {
      jobId: id,
      type: type.name,
      data: data.data,
      target: type.instanceOf?.(data.data) ?? null,
      destructive: typeof type.destructive === 'function' ? type.destructive(data.data) : type.destructive === true,
      requestedBy: oneLine(describePrincipal(signed.principal), 160),
      requestedAt: signed.issuedAt,
    };
  }

  /**
   * A retry is a new request by whoever retries: the failed job's verified type and data
   * under the caller's principal and a new request id. The original's signed request is spent
   * (the worker marked its nonce done). A destructive type needs `confirmed` (else
   * NeedsConfirmation). The enqueuer validates the data again and takes the instance lock, so
   * a busy instance answers "already in progress".
   */
  async retry(
    id: string,
    enqueuer: Enqueuer,
    principal: Principal,
    requestId: string,
    reply?: ReplyTarget,
    options: RetryOptions = {},
  ): Promise<EnqueueResult> {
    const plan = await this.planRetry(id, principal, options);
    if (plan.destructive && !options.confirmed) throw new NeedsConfirmation(plan);
    return enqueuer.enqueue({ type: plan.type, data: plan.data, principal, requestId, reply });
  }

  /**
   * Whether the job's request was signed by its principal's key, for this very job: the key id
   * its principal must use, the signature, the job id it was signed for (a scheduler's
   * template: "*" and the scheduler that made the run) and the job's name. As admit() checks.
   */
  private async verified(loaded: Loaded): Promise<boolean> {
    const { envelope, job } = loaded;
    if (envelope === undefined || job === undefined || envelope.signature === undefined) return false;
    const { signed } = envelope;
    if (signed.keyId !== expectedKeyId(signed.principal)) return false;
    const key = await this.trust.publicKey?.(signed.keyId);
    if (!key || !verifyPayload(signed, envelope.signature, key)) return false;
    const scheduled =
      signed.principal.kind === 'schedule' && signed.jobId === '*' && job.repeatJobKey === signed.principal.scheduler;
    return (scheduled || signed.jobId === job.id) && job.name === signed.type;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }

  /** The job by id in whichever of the fleet's queues holds it. */
  private async find(id: string): Promise<Loaded | null> {
    for (const name of await this.queueNames()) {
      const queue = this.queue(name);
      const state = (await queue.getJobState(id)) as JobState;
      if (state === 'unknown') continue;
      const loaded = await this.load(queue, id, state);
      if (loaded !== null) return loaded;
    }
    return null;
  }

  /** Reads one job; null when it is gone. Fields that do not parse give a '?' summary. */
  private async load(queue: Queue, id: string, state: JobState): Promise<Loaded | null> {
    const fields = await this.redis.hgetall(queue.toKey(id));
    if (Object.keys(fields).length === 0) return null;
    const unreadable: JobSummary = {
      id,
      queue: queue.name,
      type: '?',
      state,
      requestedBy: '?',
      instance: null,
      createdAt: null,
      startedAt: null,
      finishedAt: null,
      step: null,
      percent: null,
      failedReason: null,
      attempts: 0,
    };
    let job: Job;
    try {
      // Separate from the read above, so only malformed fields (not a lost connection) land here.
      job = Job.fromJSON(queue, fields as unknown as JobJsonRaw, id);
    } catch {
      return { queue, summary: unreadable };
    }
    const parsed = envelopeSchema.safeParse(job.data);
    const envelope = parsed.success && parsed.data.signed.type === job.name ? parsed.data : undefined;
    const summary: JobSummary = {
      ...unreadable,
      type: envelope?.signed.type ?? '?',
      requestedBy: envelope ? oneLine(describePrincipal(envelope.signed.principal), 160) : '?',
      instance: envelope ? this.instanceOf(envelope) : null,
      createdAt: positive(job.timestamp),
      startedAt: positive(job.processedOn),
      finishedAt: positive(job.finishedOn),
      // BullMQ reads a job that never reported progress as 0%; this says nothing instead.
      ...progressOf(fields.progress === undefined ? null : job.progress),
      failedReason: job.failedReason ? oneLine(job.failedReason, 300) : null,
      attempts: Number.isInteger(job.attemptsMade) ? job.attemptsMade : 0,
    };
    return { queue, summary, job, envelope };
  }

  private instanceOf(envelope: Envelope): string | null {
    const { type: name, data } = envelope.signed;
    const type = this.types.get(name);
    if (type !== undefined) {
      const parsed = type.schema.safeParse(data);
      return parsed.success ? (type.instanceOf?.(parsed.data) ?? null) : null;
    }
    const guess = (data as { name?: unknown } | null)?.name;
    return instanceName.safeParse(guess).success ? (guess as string) : null;
  }
}

function matches(filter: JobFilter, s: JobSummary): boolean {
  const started = s.startedAt !== null;
  switch (filter) {
    case 'recent':
      return true;
    case 'failed':
      return s.state === 'failed';
    case 'running':
      return s.state === 'active' || (s.state === 'delayed' && started);
    case 'waiting':
      return QUEUED.has(s.state) && !(s.state === 'delayed' && started);
  }
}
