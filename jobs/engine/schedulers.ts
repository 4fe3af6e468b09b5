// Recurring work: BullMQ job schedulers, the same definitions on every host, changed by one
// leader at a time. Several BullMQ releases mishandled concurrent upserts of one scheduler
// from many processes (duplicate next jobs: bullmq#2988; a scheduler left without a job:
// #3085), so every host calls upsertSchedules periodically (say every minute); whoever wins
// a short Redis lease compares what is stored with the definitions, changes only what
// differs, removes our stale schedulers, and checks the result: each scheduler as defined,
// with exactly one job waiting. A dead leader's lease runs out and the next caller takes over.
//
// A scheduler's job template is a signed request (principal `schedule`, job id "*": BullMQ
// makes the ids per run), so its jobs pass the worker's admit() like any other job. Runs
// carry no signature of their own (BullMQ builds each from the stored template), so anyone
// who can write to Redis could add the template again and again: the worker admits one run
// per slot (scheduleSlot, from its own clock and the definition's period, never from job
// data) with a SET NX on scheduler + slot before the first side effect.
//
// `every` schedules run in the middle of their slots (BullMQ's `offset` = half the period),
// so a run picked up a little late, or by a worker whose clock is a little off, still falls
// in its own slot: half a period of slack either way.
import type { KeyObject } from 'node:crypto';
import type { Job, JobSchedulerJson, Queue } from 'bullmq';
import cronParser from 'cron-parser';
import type { Redis } from 'ioredis';
import { canonicalJson, publicHalf, verifyPayload } from '../signing.js';
import { GITHUB_SYNC, GITHUB_SYNC_EVERY_MS } from '../types/github-sync.js';
import { HEALTH_SWEEP } from '../types/health-sweep.js';
import { envelopeSchema, type SignedRequest } from './envelope.js';
import type { AnyJobType } from './job-type.js';
import { keys } from './keys.js';
import { type JobTypes, RETENTION, type Signer, signRequest } from './queues.js';

/** Our schedulers' ids start with this; others in the queue are not ours to remove. */
export const SCHEDULER_PREFIX = 'clawdinator-';

export interface ScheduleDef {
  /** The BullMQ scheduler id, `clawdinator-…`; it also names the schedule principal. */
  id: string;
  /** A job type with `scheduled: true`. */
  type: string;
  /** Milliseconds between runs, or a cron pattern (read in UTC): exactly one of the two. */
  every?: number;
  pattern?: string;
  data: unknown;
}

/**
 * The fleet queue's schedules that always run. Those with a cron from the settings join them
 * in the worker: the image prune and rebuild (jobs/ami/deps.ts), the self-update — a fleet-wide
 * deploy, so one scheduler for the fleet queue, however many workers upsert it
 * (jobs/fastlane/deps.ts). The per-host token refresh is host-local: upserted into each host's
 * own queue, one upsertSchedules call per host queue with that host's definitions
 * (jobs/github/setup.ts hostSchedules).
 */
export function fleetSchedules(settings: { healthSweepMs?: number } = {}): ScheduleDef[] {
  return [
    { id: 'clawdinator-health-sweep', type: HEALTH_SWEEP, every: settings.healthSweepMs ?? 60_000, data: {} },
    { id: 'clawdinator-github-sync', type: GITHUB_SYNC, every: GITHUB_SYNC_EVERY_MS, data: {} },
  ];
}

/** The defaults (CLAWDINATOR_HEALTH_SWEEP_SECONDS unset). */
export const FLEET_SCHEDULES: ScheduleDef[] = fleetSchedules();

// A run's result matters only until the next run, which is also its retry. Completed runs
// are removed at once, so a sweep a minute does not push other jobs out of the bounded
// completed history; failures keep the same bounds as every other job's, since BullMQ trims
// the whole failed set by the bounds of the job that just failed.
const TEMPLATE_OPTS = { attempts: 1, removeOnComplete: true, removeOnFail: RETENTION.removeOnFail };

const DEFAULT_LEASE_MS = 30_000;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export interface UpsertOptions {
  queue: Queue;
  redis: Redis;
  /** Signs the templates: key id "schedule". */
  signer: Signer;
  /** Each definition's type must be here, scheduled, and accept the definition's data. */
  types: JobTypes;
  defs: ScheduleDef[];
  /** Names this caller in the lease, e.g. `<host>-<pid>`. */
  workerId: string;
  leaseMs?: number;
  /** The lease's key: the fleet's by default; a host queue's schedules use one of their own. */
  leaseKey?: string;
}

export interface UpsertResult {
  /** False: another caller held the lease and nothing was read or changed. */
  leader: boolean;
  upserted: string[];
  removed: string[];
  /** Read back after the changes: every definition stored as defined with one job waiting, no stale scheduler left. */
  verified: boolean;
}

interface Wanted {
  def: ScheduleDef;
  type: AnyJobType;
  /** The request to sign, without its per-signature fields. */
  request: Omit<SignedRequest, 'keyId' | 'issuedAt' | 'nonce'>;
}

interface Observed {
  schedulers: Map<string, JobSchedulerJson>;
  /** Jobs of each scheduler that wait to run (delayed, waiting, prioritized, paused). */
  pending: Map<string, Job[]>;
  /** Jobs of each scheduler that run now. */
  active: Map<string, Job[]>;
}

export async function upsertSchedules(opts: UpsertOptions): Promise<UpsertResult> {
  const { queue, redis, signer, workerId } = opts;
  if (signer.keyId !== 'schedule') throw new Error(`schedules are signed with the "schedule" key, not ${signer.keyId}`);
  // Wrong definitions are a programming error: refuse them before taking the lease.
  const wanted = opts.defs.map((def) => checkDef(def, opts.types));
  const wantedIds = new Set(wanted.map((w) => w.def.id));
  const publicKey = publicHalf(signer.key);

  const leaseKey = opts.leaseKey ?? keys.schedulerLeader;
  const lease = await redis.set(leaseKey, workerId, 'PX', opts.leaseMs ?? DEFAULT_LEASE_MS, 'NX');
  if (lease !== 'OK') return { leader: false, upserted: [], removed: [], verified: false };
  try {
    const before = await observe(queue);
    const upserted: string[] = [];
    for (const w of wanted) {
      if (healthy(before, w, signer.keyId, publicKey)) continue;
      if (misaligned(before, w.def)) {
        // BullMQ keeps a scheduler's phase across upserts: only a new scheduler is re-aligned.
        await queue.removeJobScheduler(w.def.id);
        for (const job of before.pending.get(w.def.id) ?? []) await queue.remove(job.id as string);
      } else {
        await removeStrayJobs(queue, before, w.def.id);
      }
      await queue.upsertJobScheduler(
        w.def.id,
        w.def.pattern !== undefined
          ? { pattern: w.def.pattern, tz: 'UTC' }
          : { every: w.def.every, offset: everyOffset(w.def.every as number) },
        { name: w.type.name, data: signRequest(signer, w.request), opts: TEMPLATE_OPTS },
      );
      upserted.push(w.def.id);
    }
    const removed: string[] = [];
    for (const id of staleIds(before, wantedIds)) {
      // BullMQ removes the scheduler's delayed job, not one already due and waiting.
      await queue.removeJobScheduler(id);
      for (const job of before.pending.get(id) ?? []) await queue.remove(job.id as string);
      removed.push(id);
    }
    const after = upserted.length + removed.length === 0 ? before : await observe(queue);
    const verified =
      wanted.every((w) => healthy(after, w, signer.keyId, publicKey)) && staleIds(after, wantedIds).length === 0;
    return { leader: true, upserted, removed, verified };
  } finally {
    await redis.eval(RELEASE, 1, leaseKey, workerId);
  }
}

function checkDef(def: ScheduleDef, types: JobTypes): Wanted {
  if (!/^clawdinator-[a-z0-9-]{1,52}$/.test(def.id))
    throw new Error(`schedule ${def.id}: id must be clawdinator-[a-z0-9-]`);
  if ((def.every === undefined) === (def.pattern === undefined)) {
    throw new Error(`schedule ${def.id}: give exactly one of every and pattern`);
  }
  if (def.every !== undefined && !(Number.isInteger(def.every) && def.every >= 1000)) {
    throw new Error(`schedule ${def.id}: every must be whole milliseconds, at least 1000`);
  }
  const type = types.get(def.type);
  if (type === undefined || !type.scheduled)
    throw new Error(`schedule ${def.id}: ${def.type} is not a scheduled job type`);
  const data = type.schema.safeParse(def.data);
  if (!data.success) throw new Error(`schedule ${def.id}: invalid data for ${def.type}`);
  return {
    def,
    type,
    request: {
      type: type.name,
      jobId: '*',
      schema: type.version,
      data: data.data,
      principal: { kind: 'schedule', scheduler: def.id },
      requestId: def.id,
    },
  };
}

async function observe(queue: Queue): Promise<Observed> {
  const [schedulers, waiting, running] = await Promise.all([
    queue.getJobSchedulers(),
    queue.getJobs(['delayed', 'wait', 'prioritized', 'paused']),
    queue.getJobs(['active']),
  ]);
  return {
    schedulers: new Map(schedulers.map((s) => [s.key, s])),
    pending: byScheduler(waiting),
    active: byScheduler(running),
  };
}

/** Our schedulers, or waiting jobs of them, that no definition names. */
function staleIds(seen: Observed, wantedIds: Set<string>): string[] {
  const ids = new Set([...seen.schedulers.keys(), ...seen.pending.keys()]);
  return [...ids].filter((id) => id.startsWith(SCHEDULER_PREFIX) && !wantedIds.has(id));
}

function byScheduler(jobs: Job[]): Map<string, Job[]> {
  const out = new Map<string, Job[]>();
  for (const job of jobs) {
    if (job.repeatJobKey === undefined) continue;
    out.set(job.repeatJobKey, [...(out.get(job.repeatJobKey) ?? []), job]);
  }
  return out;
}

/**
 * Stored as defined (signed by our key) with one job waiting. A run that has just started may
 * not have added its successor yet, so an active job stands in for the waiting one.
 */
function healthy(seen: Observed, w: Wanted, keyId: string, publicKey: KeyObject): boolean {
  const stored = seen.schedulers.get(w.def.id);
  if (stored === undefined || stored.name !== w.type.name) return false;
  if (stored.every !== w.def.every || stored.pattern !== w.def.pattern) return false;
  if (misaligned(seen, w.def)) return false;
  for (const [name, value] of Object.entries(TEMPLATE_OPTS)) {
    const storedOpt = (stored.template?.opts as Record<string, unknown> | undefined)?.[name];
    if (canonicalJson(storedOpt) !== canonicalJson(value)) return false;
  }
  const envelope = envelopeSchema.safeParse(stored.template?.data);
  if (!envelope.success || envelope.data.signature === undefined) return false;
  const { signed, signature } = envelope.data;
  if (signed.keyId !== keyId || !verifyPayload(signed, signature, publicKey)) return false;
  const unsigned = { ...signed, keyId: undefined, issuedAt: undefined, nonce: undefined };
  if (canonicalJson(unsigned) !== canonicalJson(w.request)) return false;
  const pending = seen.pending.get(w.def.id)?.length ?? 0;
  const active = seen.active.get(w.def.id)?.length ?? 0;
  return pending <= 1 && pending + active >= 1;
}

/**
 * Duplicate waiting jobs of one scheduler (the concurrent-upsert bug's trace) are removed,
 * except the one the scheduler points at — BullMQ names it `repeat:<id>:<next>` and refuses
 * to remove it directly; the upsert that follows replaces it.
 */
async function removeStrayJobs(queue: Queue, seen: Observed, id: string): Promise<void> {
  const current = `repeat:${id}:${seen.schedulers.get(id)?.next}`;
  for (const job of seen.pending.get(id) ?? []) {
    if (job.id !== current) await queue.remove(job.id as string);
  }
}

/**
 * Removes every one of our schedulers from a queue, with the jobs they left waiting: what a
 * retired member's host queue keeps (its token refresh) would otherwise wait there forever.
 */
export async function removeSchedules(queue: Queue): Promise<string[]> {
  const seen = await observe(queue);
  const ours = staleIds(seen, new Set());
  for (const id of ours) {
    await queue.removeJobScheduler(id);
    for (const job of seen.pending.get(id) ?? []) await queue.remove(job.id as string);
  }
  return ours;
}

/** Where in its slot an `every` schedule runs: the middle (see the top of this file). */
function everyOffset(every: number): number {
  return Math.floor(every / 2);
}

/** An `every` scheduler whose next run is not in the middle of a slot (made before offsets, or forged). */
function misaligned(seen: Observed, def: ScheduleDef): boolean {
  const stored = seen.schedulers.get(def.id);
  if (stored === undefined || def.every === undefined || stored.every !== def.every) return false;
  const next = Number(stored.next);
  return !Number.isFinite(next) || (((next - everyOffset(def.every)) % def.every) + def.every) % def.every !== 0;
}

/** How far a pattern's run may be picked up before its time, on a clock a little behind, and still be its own. */
const PATTERN_SLACK_MS = 30_000;

/**
 * The slot a run of this schedule belongs to at `now` on the worker's clock: for `every`,
 * the period's index (runs fall mid-slot); for a pattern, the time of its latest firing, seen
 * from a little ahead (a worker whose clock lags the one that released the run). With how
 * long its record must be kept: until no run could be counted in that slot any more.
 */
export function scheduleSlot(
  def: Pick<ScheduleDef, 'every' | 'pattern'>,
  now: number,
): { slot: string; ttlSeconds: number } {
  const margin = 3600;
  if (def.every !== undefined) {
    const slot = Math.floor(now / def.every);
    return { slot: String(slot), ttlSeconds: Math.ceil(((slot + 2) * def.every - now) / 1000) + margin };
  }
  if (def.pattern === undefined) throw new Error('a schedule has every or pattern');
  const at = new Date(now + PATTERN_SLACK_MS);
  const fired = cronParser.parseExpression(def.pattern, { currentDate: at, tz: 'UTC' }).prev().getTime();
  const next = cronParser.parseExpression(def.pattern, { currentDate: at, tz: 'UTC' }).next().getTime();
  return { slot: String(fired), ttlSeconds: Math.ceil((next - now) / 1000) + margin };
}
