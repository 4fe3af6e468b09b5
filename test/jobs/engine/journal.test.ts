// The journal of open jobs on a real redis-server: written in the enqueuer's next batch once
// its job is added (not before nor right after: a command beside the add delays the job's
// start), created by the first step save when that write has not arrived yet, never written
// again for a job already finalized, not written for a request merged into another job, and
// written for a job removed before its batch, which the sweep then finalizes.
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope } from '../../../jobs/engine/envelope.js';
import { openJobArgs, openJobEntry, parseOpenJob, updateOpenJobArgs } from '../../../jobs/engine/journal.js';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { type Enqueuer, jobIdFor } from '../../../jobs/engine/queues.js';
import { newNonce, signPayload } from '../../../jobs/signing.js';
import { alicePrincipal as alice, policy } from '../../support/bot.js';
import { enqueuer, fastSettings, harness, setEffectsClient, startWorker } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';
import { until } from '../../support/until.js';

let server: TestRedis;
let redis: Redis;
let gateway: Enqueuer;
const h = harness();

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  gateway = enqueuer(server.client(), { host: '127.0.0.1', port: server.port }, h.types, h.gateway);
});
afterEach(async () => {
  await gateway.close();
  redis.disconnect();
});

/** The result events sent for a job. */
const resultsOf = async (jobId: string) =>
  (await redis.xrange(keys.events, '-', '+'))
    .map(([, f]) => JSON.parse(f[1] as string).event)
    .filter((e) => e.kind === 'result' && e.jobId === jobId);

const entry = async (jobId: string) => {
  const raw = await redis.hget(keys.openJobs, jobId);
  return raw === null ? undefined : parseOpenJob(raw);
};

describe('the journal of open jobs', () => {
  it('an enqueue journals its job in its next batch: the queue, the time and the signed request', async () => {
    const before = Date.now();
    const { jobId } = await gateway.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-1', pauseMs: 0 },
      principal: alice,
      requestId: 'journal-1',
    });
    // No flush: the batch's own timer writes it.
    const written = await until('the entry', () => entry(jobId));
    expect(written).toMatchObject({ queue: FLEET_QUEUE, data: { signed: { jobId, requestId: 'journal-1' } } });
    expect(written?.at).toBeGreaterThanOrEqual(before);
  });

  it('the enqueue’s write never recreates the entry of a job finalized before it arrived, nor replaces one', async () => {
    await redis.set(keys.finalized('two-step-done'), 'done');
    expect(await redis.eval(...openJobArgs('two-step-done', FLEET_QUEUE, { late: true }))).toBe(0);
    expect(await redis.hexists(keys.openJobs, 'two-step-done')).toBe(0);

    expect(await redis.eval(...openJobArgs('two-step-open', FLEET_QUEUE, { first: true }))).toBe(1);
    expect(await redis.eval(...openJobArgs('two-step-open', FLEET_QUEUE, { second: true }))).toBe(0);
    expect((await entry('two-step-open'))?.data).toEqual({ first: true });
  });

  it('a step save creates the entry not written yet, keeps its first head after, and never outlives the end', async () => {
    const jobId = 'two-step-early';
    await redis.eval(...updateOpenJobArgs(jobId, FLEET_QUEUE, '{"steps":{"first":1}}'));
    const created = await entry(jobId);
    expect(created).toMatchObject({ queue: FLEET_QUEUE, data: { steps: { first: 1 } } });
    // The enqueue's write arrives late: the step's newer entry stays.
    expect(await redis.eval(...openJobArgs(jobId, FLEET_QUEUE, { steps: {} }))).toBe(0);
    await new Promise((r) => setTimeout(r, 5));
    await redis.eval(...updateOpenJobArgs(jobId, FLEET_QUEUE, '{"steps":{"first":1,"second":2}}'));
    expect(await entry(jobId)).toEqual({
      queue: FLEET_QUEUE,
      at: created?.at,
      data: { steps: { first: 1, second: 2 } },
    });
    // Finalized (marker done, entry deleted): a save that comes after creates nothing.
    await redis.set(keys.finalized(jobId), 'done');
    await redis.hdel(keys.openJobs, jobId);
    expect(await redis.eval(...updateOpenJobArgs(jobId, FLEET_QUEUE, '{"steps":{"late":3}}'))).toBe(0);
    expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
  });

  it('a request merged into another job by its request id journals nothing and holds no lock of its own', async () => {
    const first = await gateway.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-1', pauseMs: 0 },
      principal: alice,
      requestId: 'journal-same',
    });
    const merged = await gateway.enqueue({
      type: 'destroy-step',
      data: { name: 'clawdinator-2', pauseMs: 0 },
      principal: alice,
      requestId: 'journal-same',
    });
    expect(merged.jobId).not.toBe(first.jobId);
    expect(await gateway.queue(FLEET_QUEUE).getJob(merged.jobId)).toBeUndefined();
    expect(await redis.hexists(keys.openJobs, merged.jobId)).toBe(0);
    expect(await redis.get(keys.instanceLock('clawdinator-2'))).toBeNull();
    expect(await redis.get(keys.instanceLock('clawdinator-1'))).toBe(first.jobId);
    await gateway.flushJournal();
    expect(await entry(first.jobId)).toBeDefined();
    expect(await redis.hexists(keys.openJobs, merged.jobId)).toBe(0);
  });

  it('a job removed before its batch is written is journaled all the same, and the sweep finalizes it as removed', async () => {
    const connection = { host: '127.0.0.1', port: server.port };
    const { jobId } = await gateway.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: 'journal-removed-early',
    });
    // Removed at once, no worker running yet: the batch is still pending (its timer is 50 ms).
    const queue = gateway.queue(FLEET_QUEUE);
    await queue.remove(jobId);
    await gateway.flushJournal();
    expect(await entry(jobId)).toMatchObject({ queue: FLEET_QUEUE, data: { signed: { jobId } } });
    const w = startWorker(FLEET_QUEUE, h.deps(server.client(), connection, policy), {
      ...fastSettings,
      removedGraceMs: 0,
    });
    setEffectsClient(redis);
    try {
      expect(await w.finalizer.sweep(queue)).toBe(1);
      expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
      expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBeNull();
      expect(await resultsOf(jobId)).toEqual([
        expect.objectContaining({ ok: false, text: expect.stringContaining('removed') }),
      ]);
    } finally {
      await w.close();
    }
  });

  it('a running job is not ended by what Redis says of it: a forged `removed` event, a forged `failed` state', async () => {
    const connection = { host: '127.0.0.1', port: server.port };
    const w = startWorker(FLEET_QUEUE, h.deps(server.client(), connection, policy), fastSettings);
    const queue = new Queue(FLEET_QUEUE, { connection });
    setEffectsClient(redis);
    try {
      const { jobId } = await gateway.enqueue({
        type: 'two-step',
        data: { name: 'clawdinator-4', pauseMs: 800 },
        principal: alice,
        requestId: 'forged-end',
      });
      await until('the job to run', async () => (await queue.getJobState(jobId)) === 'active');
      // What BullMQ writes when a job is removed or fails, written by anyone holding the Redis password.
      const events = `bull:${FLEET_QUEUE}:events`;
      await redis.xadd(events, '*', 'event', 'removed', 'jobId', jobId, 'prev', 'active');
      await redis.zadd(`bull:${FLEET_QUEUE}:failed`, Date.now(), jobId);
      await redis.hset(`bull:${FLEET_QUEUE}:${jobId}`, 'failedReason', 'failed: forged', 'finishedOn', Date.now());
      const failed = ['event', 'failed', 'jobId', jobId, 'failedReason', 'failed: forged', 'prev', 'active'];
      await redis.xadd(events, '*', ...failed);
      expect(await queue.getJobState(jobId)).toBe('failed');
      expect(await w.finalizer.sweep(queue)).toBe(0);
      await redis.zrem(`bull:${FLEET_QUEUE}:failed`, jobId);
      await until('the job to end', async () => (await queue.getJobState(jobId)) === 'completed');
      expect(await resultsOf(jobId)).toEqual([expect.objectContaining({ ok: true, text: 'clawdinator-4 done' })]);
      expect(await redis.get(keys.finalized(jobId))).toBe('done');
    } finally {
      await w.close();
      await queue.close();
    }
  });

  it('a copy of a finished job’s entry played back into the journal is ignored, not finalized as removed', async () => {
    const connection = { host: '127.0.0.1', port: server.port };
    const w = startWorker(FLEET_QUEUE, h.deps(server.client(), connection, policy), {
      ...fastSettings,
      removedGraceMs: 0,
    });
    const queue = new Queue(FLEET_QUEUE, { connection });
    setEffectsClient(redis);
    try {
      const { jobId } = await gateway.enqueue({
        type: 'two-step',
        data: { name: 'clawdinator-4', pauseMs: 400 },
        principal: alice,
        requestId: 'journal-copy',
      });
      // What a reader of Redis could keep: the entry as it was after the first step.
      const early = await until('the first step in the journal', async () => {
        const raw = await redis.hget(keys.openJobs, jobId);
        return raw?.includes('"first"') ? raw : undefined;
      });
      await until('the job to end', async () => (await queue.getJobState(jobId)) === 'completed');
      expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
      // The job is gone from its queue (retention), its copy is played back.
      await queue.remove(jobId);
      await redis.hset(keys.openJobs, jobId, early);
      expect(await w.finalizer.sweep(queue)).toBe(0);
      await w.finalizer.onRemoved(queue, jobId);
      expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
      expect((await resultsOf(jobId)).map((e) => e.ok)).toEqual([true]);

      // A request signed two days ago (its spent mark long gone): no job runs that long.
      const signed = {
        type: 'two-step',
        jobId: jobIdFor('two-step', 'journal-old'),
        schema: 1,
        data: { name: 'clawdinator-5', pauseMs: 0 },
        principal: alice,
        keyId: 'gateway',
        issuedAt: Date.now() - 2 * 86_400_000,
        nonce: newNonce(),
        requestId: 'journal-old',
      };
      const old: Envelope = { signed, signature: signPayload(signed, h.gateway.key) };
      await redis.hset(keys.openJobs, signed.jobId, openJobEntry(FLEET_QUEUE, old, Date.now() - 60_000));
      expect(await w.finalizer.sweep(queue)).toBe(0);
      expect(await redis.hexists(keys.openJobs, signed.jobId)).toBe(0);
      expect(await resultsOf(jobId)).toHaveLength(1);

      // The same, signed now: a job removed before it ran, finalized.
      const fresh = { ...signed, jobId: jobIdFor('two-step', 'journal-new'), requestId: 'journal-new' };
      fresh.issuedAt = Date.now();
      const entry: Envelope = { signed: fresh, signature: signPayload(fresh, h.gateway.key) };
      await redis.hset(keys.openJobs, fresh.jobId, openJobEntry(FLEET_QUEUE, entry, Date.now() - 60_000));
      expect(await w.finalizer.sweep(queue)).toBe(1);
      expect(await resultsOf(fresh.jobId)).toEqual([expect.objectContaining({ ok: false })]);
    } finally {
      await w.close();
      await queue.close();
    }
  });
});
