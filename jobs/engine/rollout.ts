// What fleet-wide changes share: the slow lane's rollout of a new image (/rebuild-ami) and the
// fast lane's deploy of a revision (/deploy) never overlap — one Redis key names the job that
// holds the fleet — and they go through the members in one canary order.
//
// A job lock is a Redis key naming the job that holds it, as the per-member locks are
// (locks.ts): taken with SET NX, idempotent for the same job, taken over when its holder has
// ended (completed, failed or gone: a job that died for good must not block the fleet), and
// released only by its holder. Not a reused job id: a failed job kept in the history would
// otherwise swallow the next request.
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { FleetRegistry } from '../../infra/registry.js';
import { RELEASE_SCRIPT } from './locks.js';

/** The fleet-wide lock of rollouts and deploys. */
export const FLEET_ROLLOUT_LOCK = 'clawdinator:fleet-rollout-lock';

const TAKE_OVER = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end`;
const ENDED = new Set(['completed', 'failed', 'unknown']);

/** Where the holder of a lock may be: the queues its job could be in. */
export type HolderQueues = Pick<Queue, 'getJobState'>[];

/**
 * Takes `key` for `jobId`. Returns null once held (also when this job held it already), or
 * the id of the live job that holds it.
 */
export async function takeJobLock(
  redis: Redis,
  queues: HolderQueues,
  key: string,
  jobId: string,
): Promise<string | null> {
  for (let attempt = 0; attempt < 3; attempt++) {
    if ((await redis.set(key, jobId, 'NX')) === 'OK') return null;
    const holder = await redis.get(key);
    if (holder === null) continue;
    if (holder === jobId) return null;
    if (await holderEnded(queues, holder)) {
      if ((await redis.eval(TAKE_OVER, 1, key, holder, jobId)) === 1) return null;
      continue;
    }
    return holder;
  }
  return (await redis.get(key)) ?? 'unknown';
}

/** Releases `key` if `jobId` holds it; true when it did. */
export async function releaseJobLock(redis: Redis, key: string, jobId: string): Promise<boolean> {
  return (await redis.eval(RELEASE_SCRIPT, 1, key, jobId)) === 1;
}

async function holderEnded(queues: HolderQueues, holder: string): Promise<boolean> {
  for (const queue of queues) {
    if (!ENDED.has(await queue.getJobState(holder))) return false;
  }
  return true;
}

/**
 * The order a fleet-wide change goes through the members: the members flagged `canary` in the
 * registry first, then the rest, each group by name, numbers compared as numbers
 * (clawdinator-2 before clawdinator-10), the first one the canary — except that the host
 * running the change goes last (never deploy yourself while a peer can be changed first; if
 * it is replaced in the end, a peer's worker resumes the job from its saved steps).
 */
export function canaryOrder(members: string[], ownHost?: string, canaries: Iterable<string> = []): string[] {
  const flagged = new Set(canaries);
  const byName = [...new Set(members)].sort(
    (a, b) => Number(flagged.has(b)) - Number(flagged.has(a)) || a.localeCompare(b, 'en', { numeric: true }),
  );
  if (ownHost === undefined || !byName.includes(ownHost)) return byName;
  return [...byName.filter((m) => m !== ownHost), ownHost];
}

/** The registry's members in canary order (its `canary` flags honoured), `ownHost` last. */
export function fleetOrder(registry: FleetRegistry, ownHost?: string): string[] {
  const canaries = Object.entries(registry).flatMap(([name, entry]) => (entry.canary ? [name] : []));
  return canaryOrder(Object.keys(registry), ownHost, canaries);
}
