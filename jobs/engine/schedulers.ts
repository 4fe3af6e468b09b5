// Recurring work: BullMQ job schedulers, the same definitions on every host, changed by one
// leader at a time. Several BullMQ releases mishandled concurrent upserts of one scheduler
// from many processes (duplicate next jobs: bullmq#2988; a scheduler left without a job:
// #3085), so every host calls upsertSchedules periodically (say every minute); whoever wins
// a short Redis lease compares what is stored with the definitions, changes only what
// differs, removes our stale schedulers, and checks the result: each scheduler as defined,
// with exactly one job waiting. A dead leader's lease runs out and the next caller takes over.
//
// A scheduler's job template is a signed request (principal `schedule`, job id "*": BullMQ
// makes the ids per run), so its jobs pass the worker's admit() like any other job.
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Job, JobSchedulerJson, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { canonicalJson, verifyPayload } from '../signing.js';
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
 * deploy, so one scheduler for the fleet (jobs/fastlane/deps.ts). Later: GitHub sync every 15
 * min (`clawdinator-github-sync`); the per-host token refresh is host-local, upserted into each
 * host's own queue with that host's definitions.
 */
export const FLEET_SCHEDULES: ScheduleDef[] = [
  { id: 'clawdinator-health-sweep', type: HEALTH_SWEEP, every: 60_000, data: {} },
];

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
  const publicKey = createPublicKey(signer.key);

  const lease = await redis.set(keys.schedulerLeader, workerId, 'PX', opts.leaseMs ?? DEFAULT_LEASE_MS, 'NX');
  if (lease !== 'OK') return { leader: false, upserted: [], removed: [], verified: false };
  try {
    const before = await observe(queue);
    const upserted: string[] = [];
    for (const w of wanted) {
      if (healthy(before, w, signer.keyId, publicKey)) continue;
      await removeStrayJobs(queue, before, w.def.id);
      await queue.upsertJobScheduler(
        w.def.id,
        w.def.pattern !== undefined ? { pattern: w.def.pattern, tz: 'UTC' } : { every: w.def.every },
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
    await redis.eval(RELEASE, 1, keys.schedulerLeader, workerId);
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
