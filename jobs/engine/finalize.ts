// One end for every job. Whatever ends a job — a refusal, an unrecoverable error, the last
// attempt failed, a cancel, a removal, a stall past the limit — the same finalization runs,
// exactly once: the job type's undo of what its saved steps say was made, locks released,
// the request spent, an audit line, and a final message to the requester naming the step,
// the cause and the next command (the type's `finalize`, job-type.ts).
//
// A stall past the limit and a removal end a job without any processor code running, so the
// finalization cannot live in the processor alone. It runs from wherever the end is seen:
//   - the processor's own final failure (worker.ts), which waits for it;
//   - BullMQ's `failed` events (the Worker's, and in every worker process the queue's event
//     stream's) and its `removed` events (the event stream, read by `watchEnds`);
//   - a periodic sweep over the jobs not finalized yet (`keys.openJobs`), for ends that no
//     event reached (a worker that died, events read by nobody).
// All of them race for one marker, `keys.finalized(job)`, taken with SET NX: the winner runs
// it, the others do nothing. The marker is a lease ("running:<owner>", renewed while it runs)
// until the end, then "done". A finalizer that crashes part-way lets its lease lapse; the
// sweep takes the marker again and runs the finalization again: it is resumed, never
// skipped. What must not run twice (the audit line) goes through `end.once`, whose results
// are kept in `keys.finalizing(job)`; the rest is idempotent. An undo that fails is retried
// by the sweep; after MAX_ATTEMPTS the job ends anyway, and its message says what is left.
//
// A removed job's data is gone from BullMQ: the journal `keys.openJobs` keeps each open job's
// data (the signed request and its saved steps), written at enqueue and at each step save.
// Everything read back is verified before an undo acts on it: the request's signature with
// its principal's key, the saved steps with the workers' key. An undo never acts on steps
// that do not verify; a request that does not verify gets no reply and spends no nonce.
import { type KeyObject, randomBytes } from 'node:crypto';
import type { Job, MinimalQueue, Queue } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { errorLine } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { redactText } from '../../lib/redact.js';
import { verifyPayload } from '../signing.js';
import { type Envelope, envelopeSchema, expectedKeyId } from './envelope.js';
import { appendJobLog } from './job-log.js';
import type { AnyJobType, EndKind, FinalReport, JobEnd } from './job-type.js';
import { type OpenJob, parseOpenJob } from './journal.js';
import { keys } from './keys.js';
import { eventArgs } from './notify.js';
import type { JobTypes, Signer } from './queues.js';
import { verifyStepState } from './steps.js';

/** How long a finalizer holds the marker without renewing it; a crashed one's lapses after this. */
export const DEFAULT_FINALIZE_LEASE_MS = 5 * 60_000;
/** An undo that failed this often ends the job anyway, saying what is left. */
export const MAX_ATTEMPTS = 3;
/** The "done" marker outlives the failed job kept for inspection (30 days, queues.ts RETENTION). */
const DONE_TTL_SECONDS = 35 * 86_400;
/**
 * After a success the marker only has to outlast events still in flight about the job: no
 * sweep looks at a completed job, and a schedule's run every minute must not leave a key
 * for a month.
 */
const SUCCESS_TTL_SECONDS = 3600;
/**
 * A spent request ("done:<job>" under its nonce), from the job's end: past any request's age,
 * and past JOURNAL_MAX_AGE_MS after its end, so a journal entry of a job that ended is known
 * for one as long as the sweep would act on it.
 */
const SPENT_NONCE_TTL_SECONDS = 2 * 86_400;
/**
 * A journal entry whose request was signed longer ago than this is no job's any more (no job
 * runs for a day: waits time out in hours, retries back off in seconds): ignored and deleted,
 * never finalized. An entry is a copy of a job's data at one step save; played back into the
 * journal after its job ended, an early copy would otherwise be "removed" and its undo run
 * against what the job made — a live member.
 */
const JOURNAL_MAX_AGE_MS = 86_400_000;
/**
 * A journal entry whose job is not in its queue counts as removed only after this. An
 * enqueue writes the entry just after it adds the job, so a missing job is a removed one; the
 * margin keeps a sweep from ever racing a job that is being added (a slow or retried add).
 */
const REMOVED_GRACE_MS = 60_000;
/** Discord shows 2000 characters; the rest of a long message is in the job's log. */
const MAX_MESSAGE = 1800;

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

// The end's bookkeeping in one step, by the holder of the marker only (ARGV[1]; '' for a
// success, which takes a free marker): the marker set "done", the journal entry and the
// finalization's progress deleted, the member's lock released if this job holds it, the
// request spent, the cancel flag deleted and the result event added (signed by the caller
// with the workers' key: Lua cannot sign) — all or nothing, so a crash never sends the
// result twice or leaves it unsent.
// KEYS: marker, journal, progress, lock, nonce, cancel, events.
// ARGV: owner, job id, has lock, has nonce, done TTL, spent-nonce TTL, then XADD's arguments (or none).
const FINISH = `local m = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if m then return 0 end
elseif m ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], 'done', 'EX', ARGV[5])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
if ARGV[3] == '1' and redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
if ARGV[4] == '1' then redis.call('SET', KEYS[5], 'done:' .. ARGV[2], 'EX', ARGV[6]) end
redis.call('DEL', KEYS[6])
if #ARGV > 6 then redis.call('XADD', KEYS[7], unpack(ARGV, 7)) end
return 1`;

/** What a job's end looks like from outside its processor. */
export interface Ending {
  jobId: string;
  /** The job's name (BullMQ's), which must be the signed type. */
  name: string;
  /** The job's data as stored: the envelope and its saved steps. */
  data: unknown;
  how: EndKind;
  cause: string;
  /** A job scheduler's run: signed once for its template ('*'). */
  repeatJobKey?: string;
  /** When the request was added (ms), for the elapsed time of the result. */
  startedAt?: number;
}

export interface FinalizerDeps {
  redis: Redis;
  types: JobTypes;
  /** The public key for a key id, or null (as the worker's). */
  publicKey(keyId: string): Promise<KeyObject | null>;
  /** The workers' public key: saved steps must verify with it before an undo uses them. */
  stepKey: KeyObject;
  /** The workers' key: signs the result event (notify.ts), which the gateways verify. */
  signer: Signer;
  log: Logger;
  /** Who this finalizer is, in the marker (host, pid). */
  owner: string;
  /**
   * How long a journaled job may be missing from its queue before the sweep takes it for
   * removed (default 60 s): a margin, so a sweep never races a job that is being added.
   */
  removedGraceMs?: number;
  leaseMs?: number;
  /** Where job log lines are written (the worker or a queue of the job's). */
  logQueue(): MinimalQueue | undefined;
}

interface Verified {
  envelope: Envelope;
  type: AnyJobType | undefined;
  /** The request's data parsed with its type's schema; undefined if the type or version is unknown here. */
  data: unknown;
  /** The saved steps when they verify, else empty. */
  steps: Record<string, unknown>;
}

/** What a stall past the limit says, in the requester's terms. */
function causeOf(how: EndKind, failedReason: string): string {
  return how === 'stalled' ? `its workers stopped responding (${failedReason})` : failedReason;
}

/** What ended a job, from its failedReason (stalls and cancels are told apart). */
export function endKindOf(failedReason: string): EndKind {
  if (/stalled more than allowable limit/.test(failedReason)) return 'stalled';
  if (/^cancelled: /.test(failedReason)) return 'cancelled';
  if (/^(refused|rejected): /.test(failedReason)) return 'refused';
  return 'failed';
}

/** The step a job ended at: the first of its type's steps it did not save. */
export function stepOf(
  type: AnyJobType | undefined,
  data: unknown,
  envelope: Envelope,
  saved: Record<string, unknown>,
) {
  const order = data === undefined ? [] : (type?.steps?.(data, envelope.signed.principal) ?? []);
  return order.find((name) => !Object.hasOwn(saved, name)) ?? 'checks';
}

function oneLine(text: string): string {
  const line = redactText(text.replace(/[\p{Cc}\u202a-\u202e\u2066-\u2069]+/gu, ' ').trim());
  return line.length > MAX_MESSAGE ? `${line.slice(0, MAX_MESSAGE - 1)}…` : line;
}

export class Finalizer {
  private readonly leaseMs: number;

  constructor(private readonly deps: FinalizerDeps) {
    this.leaseMs = deps.leaseMs ?? DEFAULT_FINALIZE_LEASE_MS;
  }

  /**
   * Finalizes a job that ended without success, unless another finalizer has it or it is
   * done: then null. An undo that fails leaves the job to the sweep (null) until its last try.
   */
  async end(ending: Ending): Promise<FinalReport | null> {
    const { redis, log } = this.deps;
    const marker = keys.finalized(ending.jobId);
    const owner = `running:${this.deps.owner}:${randomBytes(6).toString('hex')}`;
    if ((await redis.set(marker, owner, 'PX', this.leaseMs, 'NX')) !== 'OK') return null;
    const renew = setInterval(() => {
      redis.eval(RENEW, 1, marker, owner, this.leaseMs).catch(() => {});
    }, this.leaseMs / 3);
    renew.unref();
    try {
      const verified = await this.verify(ending);
      const report = await this.report(ending, verified, owner);
      if (report === null) return null;
      report.message = oneLine(report.message);
      await this.log(ending.jobId, `ended: ${report.message}`);
      const finished = await this.finish(ending.jobId, owner, verified, ending.startedAt, {
        ok: false,
        text: report.message,
        type: verified?.envelope.signed.type ?? ending.name,
      });
      if (!finished) log.warn({ job: ending.jobId }, 'finalization lost its marker before the end: left to the sweep');
      else log.info({ job: ending.jobId, how: ending.how }, 'job finalized');
      return finished ? report : null;
    } finally {
      clearInterval(renew);
    }
  }

  /** A job that succeeded: the same bookkeeping (lock, nonce, journal, result event), once. */
  async succeeded(job: Job, envelope: Envelope, type: AnyJobType, text: string): Promise<void> {
    const verified: Verified = { envelope, type, data: undefined, steps: {} };
    // A schedule's successful runs are routine; only their failures are worth a message.
    const event = envelope.signed.principal.kind === 'schedule' ? undefined : { ok: true, text, type: type.name };
    const done = await this.finish(
      job.id as string,
      '',
      verified,
      job.timestamp,
      event,
      type.instanceOf?.(envelope.signed.data),
    );
    if (!done) this.deps.log.warn({ job: job.id }, 'a finished job was already being finalized');
  }

  /** BullMQ's `failed` event (the Worker's or QueueEvents'): only a job failed for good ends. */
  async onFailed(job: Job | undefined): Promise<void> {
    if (job === undefined || job.id === undefined) return;
    if ((await job.getState()) !== 'failed') return; // a retry is coming
    if (await this.held(job.queueQualifiedName, job.id)) return;
    const reason = job.failedReason ?? 'failed';
    const how = endKindOf(reason);
    await this.end({
      jobId: job.id,
      name: job.name,
      data: job.data,
      how,
      cause: causeOf(how, reason),
      repeatJobKey: job.repeatJobKey,
      startedAt: job.timestamp,
    });
  }

  /**
   * A removed job (the event stream's `removed`, see watchEnds): its data comes from the
   * journal. The event is a hint, not a fact: the events stream is Redis data anyone with the
   * Redis password can add to, and a `removed` of a job that still runs would undo its work
   * under it. So the job must be gone from its queue.
   */
  async onRemoved(queue: Queue, jobId: string): Promise<void> {
    if ((await queue.getJobState(jobId)) !== 'unknown' || (await this.held(queue.qualifiedName, jobId))) return;
    const raw = await this.deps.redis.hget(keys.openJobs, jobId);
    if (raw === null) return;
    const entry = parseOpenJob(raw);
    if (entry === undefined || (await this.ended(jobId, entry))) return;
    await this.end(await this.removedEnding(jobId, entry));
  }

  /**
   * True (and the entry deleted) when a journal entry is no open job's: its request was spent
   * by the job's end ("done:<job>" under its nonce), or signed longer ago than any job runs.
   * Either way it is a copy played back, and finalizing it would undo what a finished job made.
   */
  private async ended(jobId: string, entry: OpenJob): Promise<boolean> {
    const signed = (entry.data as { signed?: { nonce?: unknown; issuedAt?: unknown } } | null)?.signed;
    const nonce = typeof signed?.nonce === 'string' ? signed.nonce : undefined;
    const issuedAt = typeof signed?.issuedAt === 'number' ? signed.issuedAt : undefined;
    const spent = nonce !== undefined && (await this.deps.redis.get(keys.nonce(nonce))) === `done:${jobId}`;
    const old = issuedAt !== undefined && Date.now() - issuedAt > JOURNAL_MAX_AGE_MS;
    if (!spent && !old) return false;
    this.deps.log.warn(
      { job: jobId, why: spent ? 'its request was spent by its end' : 'older than any job' },
      'a journal entry of a job that ended: ignored',
    );
    await this.deps.redis.hdel(keys.openJobs, jobId);
    return true;
  }

  /**
   * Finalizes the jobs of `queue` that ended without being finalized: failed ones, and
   * removed ones (gone from the queue, still in the journal). Returns how many it finalized.
   */
  async sweep(queue: Queue): Promise<number> {
    const { redis, log } = this.deps;
    let cursor = '0';
    let count = 0;
    do {
      const [next, flat] = await redis.hscan(keys.openJobs, cursor, 'COUNT', 100);
      cursor = next;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const jobId = flat[i] as string;
        const entry = parseOpenJob(flat[i + 1] as string);
        if (entry === undefined) {
          await redis.hdel(keys.openJobs, jobId);
          continue;
        }
        if (entry.queue !== queue.name) continue;
        try {
          if (await this.sweepOne(queue, jobId, entry)) count++;
        } catch (err) {
          log.warn({ job: jobId, err: errorLine(err) }, 'finalization sweep: job left for the next sweep');
        }
      }
    } while (cursor !== '0');
    return count;
  }

  private async sweepOne(queue: Queue, jobId: string, entry: OpenJob): Promise<boolean> {
    const { redis } = this.deps;
    const marker = await redis.get(keys.finalized(jobId));
    if (marker === 'done') {
      await redis.hdel(keys.openJobs, jobId);
      return false;
    }
    if (marker !== null) return false; // a finalizer holds it now
    const state = await queue.getJobState(jobId);
    if ((state === 'failed' || state === 'unknown') && (await this.held(queue.qualifiedName, jobId))) return false;
    if (state === 'completed') {
      await redis.hdel(keys.openJobs, jobId);
      return false;
    }
    if (state === 'failed') {
      const job = await queue.getJob(jobId);
      if (job === undefined) return false;
      const reason = job.failedReason ?? 'failed';
      const how = endKindOf(reason);
      const ended = await this.end({
        jobId,
        name: job.name,
        data: job.data,
        how,
        cause: causeOf(how, reason),
        repeatJobKey: job.repeatJobKey,
        startedAt: job.timestamp,
      });
      return ended !== null;
    }
    if (state === 'unknown' && Date.now() - entry.at > (this.deps.removedGraceMs ?? REMOVED_GRACE_MS)) {
      if (await this.ended(jobId, entry)) return false;
      return (await this.end(await this.removedEnding(jobId, entry))) !== null;
    }
    return false;
  }

  // ── the parts ──────────────────────────────────────────────────────────────────────

  /**
   * Whether a worker holds the job's lock: then it is running, and its end comes from its
   * processor. A `failed` state or a missing job under a held lock was written by someone
   * else (Redis is writable by whoever has its password): acting on it would undo the job's
   * work while it runs. BullMQ releases the lock when a job fails, refuses to remove a locked
   * job, and a dead worker's lock expires, so every real end passes; the sweep looks again.
   */
  private async held(queueQualifiedName: string, jobId: string): Promise<boolean> {
    return (await this.deps.redis.exists(`${queueQualifiedName}:${jobId}:lock`)) === 1;
  }

  /** A removed job, from the journal; `jobs cancel` leaves who cancelled it in the cancel flag. */
  private async removedEnding(jobId: string, entry: OpenJob): Promise<Ending> {
    const name = (entry.data as { signed?: { type?: unknown } } | null)?.signed?.type;
    const by = await this.deps.redis.get(keys.cancel(jobId));
    return {
      jobId,
      name: typeof name === 'string' ? name : '?',
      data: entry.data,
      how: by === null ? 'removed' : 'cancelled',
      cause:
        by === null ? `removed: ${jobId} was removed before it ended` : `cancelled: ${jobId} was cancelled by ${by}`,
      startedAt: entry.at,
    };
  }

  private async verify(ending: Ending): Promise<Verified | undefined> {
    const parsed = envelopeSchema.safeParse(ending.data);
    if (!parsed.success) return undefined;
    const envelope = parsed.data;
    const { signed } = envelope;
    if (signed.keyId !== expectedKeyId(signed.principal) || envelope.signature === undefined) return undefined;
    const key = await this.deps.publicKey(signed.keyId);
    if (key === null || !verifyPayload(signed, envelope.signature, key)) return undefined;
    const scheduled =
      signed.principal.kind === 'schedule' &&
      signed.jobId === '*' &&
      ending.repeatJobKey === signed.principal.scheduler;
    if ((!scheduled && signed.jobId !== ending.jobId) || ending.name !== signed.type) return undefined;
    const type = this.deps.types.get(signed.type);
    const data = type !== undefined && type.version === signed.schema ? type.schema.safeParse(signed.data) : undefined;
    const stepsOk = verifyStepState({ id: ending.jobId } as Job, envelope, this.deps.stepKey);
    if (!stepsOk) this.deps.log.warn({ job: ending.jobId }, 'saved steps do not verify: nothing is undone from them');
    return {
      envelope,
      type,
      data: data?.success ? data.data : undefined,
      steps: stepsOk ? (envelope.steps ?? {}) : {},
    };
  }

  /** The type's finalization (undo, audit, message), or the engine's own message. */
  private async report(ending: Ending, verified: Verified | undefined, owner: string): Promise<FinalReport | null> {
    const plain: FinalReport = { message: plainMessage(ending) };
    const type = verified?.type;
    if (verified === undefined || type?.finalize === undefined || verified.data === undefined) return plain;
    const { redis, log } = this.deps;
    const { signed } = verified.envelope;
    let written = Promise.resolve();
    const end: JobEnd<unknown> = {
      jobId: ending.jobId,
      data: verified.data,
      principal: signed.principal,
      requestId: signed.requestId,
      steps: verified.steps,
      step: stepOf(type, verified.data, verified.envelope, verified.steps),
      how: ending.how,
      cause: ending.cause,
      log: log.child({ job: ending.jobId, type: type.name, finalize: true }),
      output: (line) => {
        written = written.then(() => this.log(ending.jobId, redactText(line)));
      },
      once: (name, fn) => this.once(ending.jobId, name, fn),
    };
    try {
      const report = await type.finalize(end);
      await written;
      return report;
    } catch (err) {
      await written;
      const progress = keys.finalizing(ending.jobId);
      const attempts = await redis.hincrby(progress, 'attempts', 1);
      await redis.expire(progress, DONE_TTL_SECONDS);
      await this.log(ending.jobId, `clean-up failed (try ${attempts} of ${MAX_ATTEMPTS}): ${errorLine(err)}`);
      if (attempts < MAX_ATTEMPTS) {
        log.warn({ job: ending.jobId, attempts, err: errorLine(err) }, 'finalization failed: the sweep tries again');
        await redis.eval(RELEASE, 1, keys.finalized(ending.jobId), owner);
        return null;
      }
      return {
        message: `${plain.message}. Its clean-up failed ${attempts} times (${errorLine(err)}): see \`jobs show ${ending.jobId}\` for what is left`,
      };
    }
  }

  private async once<T>(jobId: string, name: string, fn: () => Promise<T>): Promise<T> {
    const { redis } = this.deps;
    const progress = keys.finalizing(jobId);
    const field = `once:${name}`;
    const kept = await redis.hget(progress, field);
    if (kept !== null) return JSON.parse(kept) as T;
    const value = await fn();
    await redis.hset(progress, field, JSON.stringify(value ?? null));
    await redis.expire(progress, DONE_TTL_SECONDS);
    return value;
  }

  private async log(jobId: string, line: string): Promise<void> {
    const queue = this.deps.logQueue();
    if (queue === undefined) return;
    // A removed job has no log left to write to.
    await appendJobLog(queue, jobId, line).catch(() => {});
  }

  private async finish(
    jobId: string,
    owner: string,
    verified: Verified | undefined,
    startedAt: number | undefined,
    event: { ok: boolean; text: string; type: string } | undefined,
    instance?: string,
  ): Promise<boolean> {
    const signed = verified?.envelope.signed;
    const member =
      instance ??
      (verified?.type !== undefined && verified.data !== undefined
        ? verified.type.instanceOf?.(verified.data)
        : undefined);
    // A scheduler's template is signed for every run: its nonce is not this run's to spend.
    const nonce = signed !== undefined && signed.jobId !== '*' ? signed.nonce : undefined;
    // Signed here, before the script: Lua cannot sign, and an event the script does not add
    // (the marker was lost) is simply never sent.
    const xadd =
      event === undefined
        ? []
        : eventArgs(this.deps.signer, {
            kind: 'result',
            jobId,
            type: event.type,
            reply: signed?.reply,
            ok: event.ok,
            text: event.text,
            startedAt,
          }).slice(1);
    const result = await this.deps.redis.eval(
      FINISH,
      7,
      keys.finalized(jobId),
      keys.openJobs,
      keys.finalizing(jobId),
      keys.instanceLock(member ?? '-'),
      keys.nonce(nonce ?? '-'),
      keys.cancel(jobId),
      keys.events,
      owner,
      jobId,
      member === undefined ? '0' : '1',
      nonce === undefined ? '0' : '1',
      owner === '' ? SUCCESS_TTL_SECONDS : DONE_TTL_SECONDS,
      SPENT_NONCE_TTL_SECONDS,
      ...xadd,
    );
    return result === 1;
  }
}

function plainMessage(ending: Ending): string {
  switch (ending.how) {
    case 'removed':
      return `removed: ${ending.jobId} was removed before it ended`;
    case 'stalled':
      return `failed: ${ending.cause}`;
    default:
      return ending.cause;
  }
}

/** How long the end watcher waits after a read before the next one (the batching, see watchEnds). */
export const END_EVENTS_BATCH_MS = 50;
/** At most this many events per read. */
const END_EVENTS_COUNT = 1000;

export interface EndWatcher {
  waitUntilReady(): Promise<void>;
  close(): Promise<void>;
}

/**
 * BullMQ's `failed` and `removed` events of a queue, in every process that runs a worker on
 * it, read from the queue's event stream (`bull:<queue>:events`) in batches. BullMQ's
 * QueueEvents would wake this process for every event of every job (≈ 4 a job: added,
 * waiting, active, completed) — in the middle of the next job's pickup, which it slowed by
 * ≈ 8 % at p99 in the job-start bench. This reads what arrived, then waits
 * END_EVENTS_BATCH_MS before blocking again: an end is finalized at most that much later,
 * a busy queue costs at most 20 reads a second, and an idle one a blocked read (no polling).
 * Reads continue from the last id read (from the stream's last entry at start, as
 * QueueEvents starts at `$`), so nothing written between two reads is missed.
 */
export function watchEnds(connection: RedisOptions, finalizer: Finalizer, queue: Queue, log: Logger): EndWatcher {
  // A blocking read holds its connection: one of its own, as QueueEvents has.
  const client = new Redis({ ...connection, maxRetriesPerRequest: null });
  client.on('error', (err) => log.warn({ err: errorLine(err) }, 'queue events error'));
  const stream = `${queue.qualifiedName}:events`;
  const run = (what: string, fn: () => Promise<unknown>) =>
    void fn().catch((err) => log.warn({ err: errorLine(err), what }, 'finalization failed: left to the sweep'));
  let closing = false;
  let ready: () => void = () => {};
  const started = new Promise<void>((r) => {
    ready = r;
  });
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const loop = (async () => {
    let last: string | undefined;
    while (!closing) {
      try {
        if (last === undefined) {
          last = (await client.xrevrange(stream, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
          ready();
        }
        const reply = await client.xread('COUNT', END_EVENTS_COUNT, 'BLOCK', 10_000, 'STREAMS', stream, last);
        for (const [id, fields] of reply?.[0]?.[1] ?? []) {
          last = id;
          const event = fieldOf(fields, 'event');
          const jobId = fieldOf(fields, 'jobId');
          if (jobId === undefined) continue;
          if (event === 'failed') run('failed', async () => finalizer.onFailed(await queue.getJob(jobId)));
          else if (event === 'removed') run('removed', () => finalizer.onRemoved(queue, jobId));
        }
        await pause(END_EVENTS_BATCH_MS);
      } catch (err) {
        if (closing) break;
        log.warn({ err: errorLine(err) }, 'queue events error');
        await pause(1000);
      }
    }
  })();
  return {
    waitUntilReady: () => started,
    async close() {
      closing = true;
      client.disconnect();
      ready();
      await loop;
    },
  };
}

/** A field of a stream entry (its fields and values alternate). */
function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
