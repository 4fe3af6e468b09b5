// One operation per fleet member: a Redis key naming the job that holds it, taken at
// enqueue and released when that job ends, fails for good or is removed. Not a reused job
// id: a job id kept in the failed history would silently swallow a retried request.
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { ClawError } from '../../lib/errors.js';
import { keys } from './keys.js';

export class AlreadyInProgress extends ClawError {
  constructor(
    readonly instance: string,
    readonly holder: string,
  ) {
    super(`already in progress: ${holder} (one operation per instance; ${instance} is busy)`);
  }
}

export const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const TAKE_OVER = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end`;

/** Takes the member's lock for `jobId` (idempotent for the same job); a lock left by a finished job is taken over. */
export async function acquireInstanceLock(redis: Redis, queue: Queue, instance: string, jobId: string): Promise<void> {
  const key = keys.instanceLock(instance);
  for (let attempt = 0; attempt < 3; attempt++) {
    if ((await redis.set(key, jobId, 'NX')) === 'OK') return;
    const holder = await redis.get(key);
    if (holder === null) continue;
    if (holder === jobId) return;
    const state = await queue.getJobState(holder);
    if (state === 'completed' || state === 'failed' || state === 'unknown') {
      if ((await redis.eval(TAKE_OVER, 1, key, holder, jobId)) === 1) return;
      continue;
    }
    throw new AlreadyInProgress(instance, holder);
  }
  throw new AlreadyInProgress(instance, (await redis.get(key)) ?? 'unknown');
}

export async function releaseInstanceLock(redis: Redis, instance: string, jobId: string): Promise<boolean> {
  return (await redis.eval(RELEASE_SCRIPT, 1, keys.instanceLock(instance), jobId)) === 1;
}
