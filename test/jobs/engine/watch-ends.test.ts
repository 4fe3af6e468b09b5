// The workers' end watcher (finalize.ts: watchEnds) on a real redis-server: it reads the
// queue's event stream in batches, hands each `failed` and `removed` to the finalizer once,
// misses nothing written between two reads or while it waits, replays nothing written
// before it started, and stops on close.
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { END_EVENTS_BATCH_MS, type Finalizer, watchEnds } from '../../../jobs/engine/finalize.js';
import { createLogger } from '../../../lib/log.js';
import { startRedis, type TestRedis } from '../../support/redis.js';
import { until } from '../../support/until.js';

let server: TestRedis;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

/** A finalizer that only records what it was handed. */
function recorder() {
  const seen: string[] = [];
  const finalizer = {
    async onRemoved(_queue: Queue, jobId: string) {
      seen.push(`removed ${jobId}`);
    },
    async onFailed(job: { id?: string } | undefined) {
      seen.push(`failed ${job?.id ?? '(gone)'}`);
    },
  } as unknown as Finalizer;
  return { seen, finalizer };
}

describe('watchEnds', () => {
  it('hands each failed and removed event to the finalizer once, batched, from where it started', async () => {
    const queue = new Queue('watch-ends', { connection: redis });
    const stream = `${queue.qualifiedName}:events`;
    // Written before the watcher starts: not its to act on (QueueEvents starts at `$` too).
    await redis.xadd(stream, '*', 'event', 'removed', 'jobId', 'before-start');
    const { seen, finalizer } = recorder();
    const watcher = watchEnds({ host: '127.0.0.1', port: server.port }, finalizer, queue, createLogger('silent'));
    await watcher.waitUntilReady();
    try {
      // A burst, events it does not act on among them, then more while it waits between reads.
      for (let i = 0; i < 50; i++) {
        await redis.xadd(stream, '*', 'event', 'completed', 'jobId', `done-${i}`, 'returnvalue', '{}');
        await redis.xadd(stream, '*', 'event', 'removed', 'jobId', `gone-${i}`, 'prev', 'waiting');
      }
      await redis.xadd(stream, '*', 'event', 'failed', 'jobId', 'broke', 'failedReason', 'x');
      await new Promise((r) => setTimeout(r, END_EVENTS_BATCH_MS / 2));
      await redis.xadd(stream, '*', 'event', 'removed', 'jobId', 'during-pause');
      await redis.xadd(stream, '*', 'event', 'removed');
      await until('every end to be handed over', async () => seen.includes('removed during-pause'), 10_000);
      // Another batch's time: nothing arrives twice.
      await new Promise((r) => setTimeout(r, END_EVENTS_BATCH_MS * 3));
      // (A failed event looks its job up first, so it may be handed over after later ones.)
      expect([...seen].sort()).toEqual(
        [
          ...Array.from({ length: 50 }, (_, i) => `removed gone-${i}`),
          // The job is not in the queue (queue.getJob finds nothing): the finalizer is told so.
          'failed (gone)',
          'removed during-pause',
        ].sort(),
      );
    } finally {
      await watcher.close();
      await queue.close();
    }
  });

  it('stops on close while it waits for events', async () => {
    const queue = new Queue('watch-ends-idle', { connection: redis });
    const { seen, finalizer } = recorder();
    const watcher = watchEnds({ host: '127.0.0.1', port: server.port }, finalizer, queue, createLogger('silent'));
    await watcher.waitUntilReady();
    // Blocked in its read (10 s): close ends it now, not when the read times out.
    await new Promise((r) => setTimeout(r, END_EVENTS_BATCH_MS * 2));
    const t0 = Date.now();
    await watcher.close();
    expect(Date.now() - t0).toBeLessThan(5000);
    await redis.xadd(`${queue.qualifiedName}:events`, '*', 'event', 'removed', 'jobId', 'after-close');
    await new Promise((r) => setTimeout(r, END_EVENTS_BATCH_MS * 2));
    expect(seen).toEqual([]);
    await queue.close();
  });
});
