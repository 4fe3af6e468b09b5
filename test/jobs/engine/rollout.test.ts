// The fleet-wide lock of rollouts and deploys (one Redis key naming its job) on a real Redis:
// taken once, idempotent for its holder, refused while its holder lives, taken over once the
// holder has ended, released only by its holder; and the canary order.
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { canaryOrder, FLEET_ROLLOUT_LOCK, releaseJobLock, takeJobLock } from '../../../jobs/engine/rollout.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

let server: TestRedis;
let redis: Redis;
let queue: Queue;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  queue = new Queue('clawdinator-fleet', { connection: redis });
});
afterAll(async () => {
  await queue.close();
  await server.stop();
});
beforeEach(async () => {
  await redis.flushall();
});

describe('the fleet rollout lock', () => {
  it('one holder at a time while it lives; its own second take is a no-op; others cannot release it', async () => {
    // A deploy waiting for its next step holds the fleet.
    await queue.add('deploy', {}, { jobId: 'deploy-1', delay: 60_000 });
    expect(await takeJobLock(redis, [queue], FLEET_ROLLOUT_LOCK, 'deploy-1')).toBeNull();
    expect(await takeJobLock(redis, [queue], FLEET_ROLLOUT_LOCK, 'deploy-1')).toBeNull();
    expect(await takeJobLock(redis, [queue], FLEET_ROLLOUT_LOCK, 'rebuild-ami-2')).toBe('deploy-1');
    expect(await releaseJobLock(redis, FLEET_ROLLOUT_LOCK, 'rebuild-ami-2')).toBe(false);
    expect(await redis.get(FLEET_ROLLOUT_LOCK)).toBe('deploy-1');
    expect(await releaseJobLock(redis, FLEET_ROLLOUT_LOCK, 'deploy-1')).toBe(true);
    expect(await takeJobLock(redis, [queue], FLEET_ROLLOUT_LOCK, 'rebuild-ami-2')).toBeNull();
  });

  it('a holder that has ended (failed, gone) is taken over: a dead job never blocks the fleet', async () => {
    await redis.set(FLEET_ROLLOUT_LOCK, 'deploy-that-died');
    expect(await takeJobLock(redis, [queue], FLEET_ROLLOUT_LOCK, 'rebuild-ami-3')).toBeNull();
    expect(await redis.get(FLEET_ROLLOUT_LOCK)).toBe('rebuild-ami-3');
  });

  it('a holder alive in any of the queues it may be in keeps the lock', async () => {
    const host = new Queue('clawdinator-host-clawdinator-2', { connection: redis });
    await host.add('ami-build', {}, { jobId: 'ami-build-x', delay: 60_000 });
    await redis.set('clawdinator:instance-lock:clawdinator-2', 'ami-build-x');
    expect(await takeJobLock(redis, [queue, host], 'clawdinator:instance-lock:clawdinator-2', 'rebuild-ami-4')).toBe(
      'ami-build-x',
    );
    await host.close();
  });
});

describe('canaryOrder', () => {
  it('by name, numbers as numbers, the running host last', () => {
    const members = ['clawdinator-10', 'clawdinator-2', 'clawdinator-1', 'clawdinator-3'];
    expect(canaryOrder(members)).toEqual(['clawdinator-1', 'clawdinator-2', 'clawdinator-3', 'clawdinator-10']);
    expect(canaryOrder(members, 'clawdinator-1')).toEqual([
      'clawdinator-2',
      'clawdinator-3',
      'clawdinator-10',
      'clawdinator-1',
    ]);
    expect(canaryOrder(members, 'clawdinator-9')).toEqual(canaryOrder(members));
  });
});
