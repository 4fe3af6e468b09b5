// Running jobs. Everything read back from Redis is untrusted: the envelope is parsed, the
// signature verified against the principal's public key, the job's id checked against the
// signed one, replays refused by nonce, expired requests refused, the data parsed with the
// type's schema, and the policy checked again — all before the processor's first side
// effect. Rejections are UnrecoverableErrors (no retry); other errors retry with backoff.
import type { KeyObject } from 'node:crypto';
import { hostname } from 'node:os';
import { DelayedError, type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { ClawError, errorLine, RefusedError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { redactText } from '../../lib/redact.js';
import { publicHalf, verifyPayload } from '../signing.js';
import { readApproval } from './approval.js';
import { type Envelope, envelopeSchema, expectedKeyId, NONCE, principalSchema } from './envelope.js';
import { endKindOf, Finalizer, watchEnds } from './finalize.js';
import { readHeartbeats } from './heartbeat.js';
import { appendJobLog, JobLog } from './job-log.js';
import type { AnyJobType, JobContext } from './job-type.js';
import { keys } from './keys.js';
import { type EventInput, publish } from './notify.js';
import { chargeAgentRate, checkPolicy, type PolicyContext } from './policy.js';
import { type JobTypes, type Signer, startedUp } from './queues.js';
import { FLEET_SCHEDULES, type ScheduleDef, scheduleSlot } from './schedulers.js';
import { Steps, verifyStepState } from './steps.js';

/** How often a job of an unknown type or version is left for another worker before failing. */
const MAX_DEFERRALS = 360;
/**
 * How often in a row a host's worker hands a job about its own host to its peers before
 * running it itself after all (a peer that is alive but never takes it must not stall the
 * job forever). A peer's pickup resets the count: a long job is picked up many times.
 */
const MAX_HAND_BACKS = 60;

export interface WorkerSettings {
  concurrency: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  maxAgeSeconds: number;
  /** How long a job of an unknown type or version waits for a worker that knows it, per try. */
  deferMs: number;
  /** Between two sweeps for jobs that ended without being finalized (finalize.ts); default 60 s. */
  finalizeSweepMs?: number;
  /** How long a finalizer's marker lives without renewal (a crashed one's lapses); default 5 min. */
  finalizeLeaseMs?: number;
  /** How long a journaled job may be missing from its queue before the sweep takes it for removed; default 60 s. */
  removedGraceMs?: number;
}

const DEFAULT_FINALIZE_SWEEP_MS = 60_000;

export interface WorkerDeps {
  connection: RedisOptions;
  redis: Redis;
  types: JobTypes;
  /** The public key for a key id, or null when unknown (agents' keys come from the registry). */
  publicKey(keyId: string): Promise<KeyObject | null>;
  policy: PolicyContext;
  log: Logger;
  /**
   * This worker's host and the fleet's members: a job that acts on this very host (a retire,
   * a replace) is left to a peer's worker while a peer's heartbeat is alive.
   */
  host?: { name: string; peers(): Promise<string[]> };
  /**
   * The workers' own key (key id `schedule`, shared by the fleet's workers): it signs the
   * schedules and every save of a job's step results, which any worker verifies on resume.
   */
  stepSigner: Signer;
  /**
   * The schedules whose runs this worker admits, one per slot (default: FLEET_SCHEDULES). A
   * run's period comes from here, never from its job data.
   */
  schedules?: ScheduleDef[];
  /** The worker's clock for schedule slots (tests fix it). */
  now?: () => number;
}

export class Rejected extends UnrecoverableError {}

function reject(message: string): never {
  throw new Rejected(`rejected: ${message}`);
}

function summaryOf(result: unknown): string {
  if (result !== null && typeof result === 'object' && typeof (result as { summary?: unknown }).summary === 'string') {
    return (result as { summary: string }).summary;
  }
  return 'done';
}

/** A plain JSON object (what BullMQ parsed from Redis), for the checks that come before the schema's. */
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks everything about a job before it may run; returns the type and the parsed data.
 *
 * The order puts the replay record's round trip beside the schema work instead of after it:
 * the signature is checked first, on the request as read (its principal parsed, so that only
 * the key that principal signs with is looked up), then the nonce's `SET NX` is sent, and the
 * envelope and the data are parsed and the policy checked while it travels. A record is still
 * made only for a request its signer signed for this very job id: a forged or copied job
 * cannot spend a pending request's nonce (a copy under another id fails the id check first).
 * A signed request that then fails its schema or the policy has spent its nonce, which only
 * makes it harder to replay.
 */
export async function admit(
  job: Job,
  deps: WorkerDeps,
  settings: WorkerSettings,
): Promise<{ envelope: Envelope; type: AnyJobType; data: unknown } | { defer: true }> {
  const raw: unknown = job.data;
  const rawSigned = isRecord(raw) ? raw.signed : undefined;
  if (!isRecord(raw) || !isRecord(rawSigned)) reject('malformed job data');
  const { keyId, jobId, type: typeName } = rawSigned;
  // Only the key its principal signs with is looked up (an agent's comes from the registry).
  const asked = principalSchema.safeParse(rawSigned.principal);
  if (!asked.success) reject('malformed job data');
  const principal = asked.data;
  if (keyId !== expectedKeyId(principal)) reject('bad signature');
  const key = await deps.publicKey(keyId);
  if (key === null || typeof raw.signature !== 'string' || !verifyPayload(rawSigned, raw.signature, key)) {
    reject('bad signature');
  }
  // A scheduler's jobs carry its id (BullMQ's repeatJobKey), tying a template to its scheduler.
  const scheduled = principal.kind === 'schedule' && jobId === '*' && job.repeatJobKey === principal.scheduler;
  if (!scheduled && jobId !== job.id) reject('bad signature');
  if (job.name !== typeName) reject('bad signature');
  const type = deps.types.get(job.name);
  if (type === undefined || type.version !== rawSigned.schema) return { defer: true };

  // First acceptance: the nonce is recorded against this job id. A resumed or retried job
  // finds its own id there; a replay (the same signed request under another id, or again
  // after its job was removed) finds another id or an expired request.
  const { nonce } = rawSigned;
  if (typeof nonce !== 'string' || !NONCE.test(nonce)) reject('malformed job data');
  const nonceKey = keys.nonce(nonce);
  const ttl = settings.maxAgeSeconds * 2 + 86_400;
  // Its outcome is awaited below, once the envelope and the policy are checked; a rejection
  // before that leaves it settled and unread.
  const recorded = scheduled
    ? undefined
    : deps.redis.set(nonceKey, job.id as string, 'EX', ttl, 'NX').then(
        (r) => ({ first: r === 'OK' }),
        (err: unknown) => ({ err }),
      );

  const parsed = envelopeSchema.safeParse(raw);
  if (!parsed.success) reject('malformed job data');
  const envelope = parsed.data;
  const { signed } = envelope;
  // A resumed job acts on what its saved steps say: only a worker may have written them.
  if (!verifyStepState(job, envelope, publicHalf(deps.stepSigner.key))) reject('saved step state does not verify');
  const data = type.schema.safeParse(signed.data);
  if (!data.success) {
    // The first issue's field and rule (never its value): the requester learns what to fix.
    const issue = data.error.issues[0];
    reject(`invalid data for ${type.name}: ${issue?.path.join('.') || 'data'}: ${issue?.message ?? 'invalid'}`);
  }
  checkPolicy(deps.policy, type, data.data, signed.principal);

  if (scheduled && principal.kind === 'schedule') await admitSlot(job, principal.scheduler, type.name, deps);

  if (recorded !== undefined) {
    const outcome = await recorded;
    if ('err' in outcome) throw outcome.err;
    if (outcome.first) {
      if (Date.now() - signed.issuedAt > settings.maxAgeSeconds * 1000 || signed.issuedAt > Date.now() + 60_000) {
        reject('expired request');
      }
      await chargeAgentRate(deps.policy, signed.principal);
    } else if ((await deps.redis.get(nonceKey)) !== job.id) {
      reject('replayed request');
    }
  }
  return { envelope, type, data: data.data };
}

/**
 * A scheduled run at most once per slot: the first run of a slot records its job id (SET NX);
 * the same run picked up again (a stall) finds its own id, any other run of that slot — the
 * template added again by a Redis writer — is refused.
 */
async function admitSlot(job: Job, scheduler: string, typeName: string, deps: WorkerDeps): Promise<void> {
  const def = (deps.schedules ?? FLEET_SCHEDULES).find((d) => d.id === scheduler);
  if (def === undefined || def.type !== typeName) reject(`${scheduler} is not a schedule of this worker`);
  const { slot, ttlSeconds } = scheduleSlot(def, (deps.now ?? Date.now)());
  const key = keys.scheduleSlot(job.queueName, scheduler, slot);
  const first = (await deps.redis.set(key, job.id as string, 'EX', ttlSeconds, 'NX')) === 'OK';
  if (!first && (await deps.redis.get(key)) !== job.id)
    reject(`replayed schedule run: ${scheduler} already ran in this slot`);
}

/**
 * The part of a job's context (JobContext) that is a getter: its logger, made when the job
 * first logs (most log nothing on a good run; a child logger serializes its bindings, work on
 * the path from pickup to the processor's start). A getter on a class's prototype, not in
 * each context's object literal: with the literal's own getter, every job's closures — and
 * through them its BullMQ Job — survived the young generation's collections into the old one
 * (measured in the job-start bench: ≈ 10 KiB a job promoted, GC pauses 1.5× the floor's),
 * until the next full GC.
 */
class RunContext {
  #logger: Logger | undefined;

  constructor(
    private readonly parentLog: Logger,
    private readonly bindings: Record<string, unknown>,
  ) {}

  get log(): Logger {
    this.#logger ??= this.parentLog.child(this.bindings);
    return this.#logger;
  }
}

export function startWorker(queueName: string, deps: WorkerDeps, settings: WorkerSettings) {
  const { redis, log } = deps;
  let active = 0;

  async function notify(event: EventInput): Promise<void> {
    await publish(redis, deps.stepSigner, event).catch((err) => log.error({ err }, 'notification failed'));
  }

  // One end for every job (finalize.ts): the processor's own ends, BullMQ's failed and
  // removed events, and a periodic sweep all go through it; the first to take its marker runs it.
  let worker: Worker | undefined;
  const finalizer = new Finalizer({
    redis,
    types: deps.types,
    publicKey: deps.publicKey,
    stepKey: publicHalf(deps.stepSigner.key),
    signer: deps.stepSigner,
    log,
    owner: `${deps.host?.name ?? hostname()}:${process.pid}`,
    leaseMs: settings.finalizeLeaseMs,
    removedGraceMs: settings.removedGraceMs,
    logQueue: () => worker,
  });
  const pending = new Set<Promise<unknown>>();
  const track = (what: string, work: Promise<unknown>) => {
    const p = work.catch((err) => log.warn({ err, what }, 'finalization failed: left to the sweep'));
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  /** Never deploy yourself: true when the job was handed to the peers' workers. */
  async function handBack(job: Job, type: AnyJobType, data: unknown, token: string | undefined): Promise<boolean> {
    const own = deps.host;
    const handedBack = typeof job.data?.handedBack === 'number' ? job.data.handedBack : 0;
    if (!type.avoidOwnHost) return false;
    if (own === undefined || type.instanceOf?.(data) !== own.name) {
      // Taken by a peer: the count starts again for the next pickup.
      if (handedBack > 0) await job.updateData({ ...job.data, handedBack: 0 });
      return false;
    }
    if (handedBack >= MAX_HAND_BACKS) {
      log.warn({ job: job.id, handedBack }, 'no peer took a job about this host: running it here');
      return false;
    }
    const peers = (await own.peers()).filter((host) => host !== own.name);
    const heartbeats = await readHeartbeats(redis, peers, publicHalf(deps.stepSigner.key));
    const alive = [...heartbeats.values()].some((h) => h !== null);
    if (!alive) return false;
    await job.updateData({ ...job.data, handedBack: handedBack + 1 });
    await job.moveToDelayed(Date.now() + settings.deferMs, token);
    log.info({ job: job.id, type: type.name }, 'a job about this host: left to a peer');
    return true;
  }

  const processor = async (job: Job, token?: string): Promise<unknown> => {
    active++;
    let admitted: Awaited<ReturnType<typeof admit>> | undefined;
    let jobLog: JobLog | undefined;
    try {
      admitted = await admit(job, deps, settings);
      if ('defer' in admitted) {
        const deferrals = typeof job.data?.deferrals === 'number' ? job.data.deferrals : 0;
        if (deferrals >= MAX_DEFERRALS) reject(`no worker knows job type ${job.name} at this version`);
        await job.updateData({ ...job.data, deferrals: deferrals + 1 });
        await job.moveToDelayed(Date.now() + settings.deferMs, token);
        throw new DelayedError();
      }
      const { envelope, type, data } = admitted;
      if (await handBack(job, type, data, token)) throw new DelayedError();
      const reply = envelope.signed.reply;
      // Elapsed time counts from the request, not from this pickup (re-delayed jobs are picked up again).
      const started = job.timestamp;
      const progress = async (message: string, percent?: number, step?: string) => {
        await job.updateProgress({ message, percent, step });
        await notify({
          kind: 'progress',
          jobId: job.id,
          type: type.name,
          reply,
          text: message,
          percent,
          step,
          startedAt: started,
        });
      };
      const steps = new Steps(job as Job<Envelope>, token, redis, deps.stepSigner, (name) =>
        progress(name, undefined, name),
      );
      jobLog = new JobLog(
        (line) => appendJobLog(worker as Worker, job.id as string, line),
        (err) => log.warn({ job: job.id, err }, 'job log line not written'),
      );
      const output = jobLog;
      const fields = {
        jobId: job.id as string,
        data,
        principal: envelope.signed.principal,
        requestId: envelope.signed.requestId,
        reply,
        steps,
        signer: deps.stepSigner,
        progress,
        output: (line) => output.line(line),
        secret: (value) => output.secret(value),
        readApproval: (expected) =>
          readApproval(
            redis,
            { ...expected, jobId: job.id as string, requestId: envelope.signed.requestId },
            { publicKey: deps.publicKey, policy: deps.policy.policy },
          ),
      } satisfies Omit<JobContext<unknown>, 'log'>;
      const result = await type.run(Object.assign(new RunContext(log, { job: job.id, type: type.name }), fields));
      await jobLog.flush();
      await finalizer.succeeded(job, envelope, type, summaryOf(result));
      return result;
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      await jobLog?.flush();
      // What a failure says is kept (failedReason), logged and sent: no secret in it.
      if (err instanceof Error) err.message = jobLog?.redact(err.message) ?? redactText(err.message);
      // Refusals and bad requests are final: retrying cannot make them right.
      const refused = err instanceof RefusedError || (err instanceof ClawError && err.exitCode === 2);
      const final = refused || err instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const text =
        err instanceof ClawError || err instanceof UnrecoverableError ? errorLine(err) : `failed: ${errorLine(err)}`;
      log.warn({ job: job.id, type: job.name, final, err: text }, 'job failed');
      if (!final) throw err;
      // The same finalization as a stall or a removal gets (finalize.ts), before the job is
      // marked failed: what it undid goes into the failure's reason.
      const report = await finalizer.end({
        jobId: job.id as string,
        name: job.name,
        data: job.data,
        how: refused ? 'refused' : err instanceof UnrecoverableError ? endKindOf(text) : 'failed',
        cause: text,
        repeatJobKey: job.repeatJobKey,
        startedAt: job.timestamp,
      });
      const reason = report?.undone === undefined ? text : `${text}; ${report.undone}`;
      throw new UnrecoverableError(reason);
    } finally {
      active--;
    }
  };

  const running = new Worker(queueName, processor, {
    connection: deps.connection,
    concurrency: settings.concurrency,
    lockDuration: settings.lockDurationMs,
    stalledInterval: settings.stalledIntervalMs,
    maxStalledCount: settings.maxStalledCount,
  });
  worker = running;
  running.on('error', (err) => log.error({ err }, 'worker error'));
  // A job that stalled too often (its workers kept dying) fails outside the processor; a
  // failure the processor finalized already finds the marker taken.
  running.on('failed', (job) => track('failed', finalizer.onFailed(job)));
  // The queue's state, read through this process's client (no connection of its own).
  const queue = new Queue(queueName, { connection: redis });
  queue.on('error', (err) => log.warn({ err }, 'queue error'));
  const events = watchEnds(deps.connection, finalizer, queue, log);
  const sweepMs = settings.finalizeSweepMs ?? DEFAULT_FINALIZE_SWEEP_MS;
  const sweep = setInterval(() => track('sweep', finalizer.sweep(queue)), sweepMs);
  sweep.unref();
  return {
    worker: running,
    finalizer,
    get active() {
      return active;
    },
    async close() {
      clearInterval(sweep);
      // Not while its connections still start up (queues.ts: startedUp).
      await startedUp([running, events, queue]);
      await running.close();
      await Promise.all([...pending]);
      await events.close();
      await queue.close();
    },
  };
}
