// Listing, inspecting, cancelling and retrying jobs on a real redis-server, with the real
// worker running the test job types.
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { existingQueueNames, JobAdmin } from '../../../jobs/engine/admin.js';
import type { Envelope, Principal } from '../../../jobs/engine/envelope.js';
import { FLEET_QUEUE, hostQueue, keys } from '../../../jobs/engine/keys.js';
import { type Enqueuer, signRequest } from '../../../jobs/engine/queues.js';
import { UsageError } from '../../../lib/errors.js';
import { ALICE, alicePrincipal as alice, policy, READER_ROLE } from '../../support/bot.js';
import {
  EFFECTS,
  enqueuer,
  fastSettings,
  harness,
  keyPair,
  setEffectsClient,
  startWorker,
} from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';
import { until } from '../../support/until.js';

let server: TestRedis;
let redis: Redis;
let conn: { host: string; port: number };
const h = harness();
const reader: Principal = { ...alice, roles: [READER_ROLE] };
const operator: Principal = { kind: 'cli', operator: 'ops' };
const HOST_QUEUE = hostQueue('clawdinator-2');
let closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  server = await startRedis();
  conn = { host: '127.0.0.1', port: server.port };
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  setEffectsClient(redis);
});
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
});

function worker() {
  const w = startWorker(FLEET_QUEUE, h.deps(server.client(), conn, policy), fastSettings);
  closers.push(() => w.close());
  return w;
}

function queueAs(signer = h.gateway): Enqueuer {
  const e = enqueuer(server.client(), conn, h.types, signer);
  closers.push(() => e.close());
  return e;
}

function admin(): JobAdmin {
  const client = server.client();
  // It verifies with the keys the workers know.
  const a = new JobAdmin({ ...conn, maxRetriesPerRequest: null }, client, () => existingQueueNames(client), h.types, {
    publicKey: async (id) => h.keys[id] ?? null,
  });
  closers.push(() => a.close());
  return a;
}

function rawQueue(name: string): Queue {
  const q = new Queue(name, { connection: conn });
  closers.push(() => q.close());
  return q;
}

async function finished(jobId: string): Promise<Job<Envelope>> {
  const q = rawQueue(FLEET_QUEUE);
  return until(`${jobId} to finish`, async () => {
    const state = await q.getJobState(jobId);
    return (state === 'completed' || state === 'failed') && ((await q.getJob(jobId)) as Job<Envelope>);
  });
}

async function stateOf(jobId: string): Promise<string> {
  return rawQueue(FLEET_QUEUE).getJobState(jobId);
}

function twoStep(name: string, pauseMs = 0) {
  return { type: 'two-step', data: { name, pauseMs } };
}

describe('job admin', () => {
  it('lists waiting, then running and failed jobs, with who asked, instance, step and reason', async () => {
    const q = queueAs();
    const slow = await q.enqueue({ ...twoStep('clawdinator-3', 1000), principal: alice, requestId: 'slow' });
    await new Promise((r) => setTimeout(r, 5)); // distinct creation times, for the order of 'recent'
    const denied = await q.enqueue({ ...twoStep('clawdinator-4'), principal: reader, requestId: 'denied' });
    const a = admin();

    const waiting = await a.list('waiting');
    expect(waiting.map((j) => j.id).sort()).toEqual([denied.jobId, slow.jobId].sort());
    expect(waiting.find((j) => j.id === slow.jobId)).toEqual({
      id: slow.jobId,
      queue: FLEET_QUEUE,
      type: 'two-step',
      state: 'waiting',
      requestedBy: `alice (Discord ${ALICE})`,
      instance: 'clawdinator-3',
      createdAt: expect.any(Number),
      startedAt: null,
      finishedAt: null,
      step: null,
      percent: null,
      failedReason: null,
      attempts: 0,
    });
    expect(await a.list('running')).toEqual([]);

    worker();
    await finished(denied.jobId);
    const running = await until('the slow job to pause', async () => {
      const jobs = await a.list('running');
      return jobs[0]?.step === 'pause' && jobs;
    });
    expect(running).toEqual([
      expect.objectContaining({ id: slow.jobId, state: 'active', step: 'pause', startedAt: expect.any(Number) }),
    ]);
    const failed = await a.list('failed');
    expect(failed).toEqual([
      expect.objectContaining({
        id: denied.jobId,
        state: 'failed',
        instance: 'clawdinator-4',
        failedReason: 'rejected: not allowed: You are not allowed to use /spawn.',
        attempts: 1,
        finishedAt: expect.any(Number),
      }),
    ]);
    expect(await a.list('waiting')).toEqual([]);
    expect((await a.list('recent', 1)).map((j) => j.id)).toEqual([denied.jobId]);
    expect((await a.list('recent')).map((j) => j.id)).toEqual([denied.jobId, slow.jobId]);
    await a.cancel(slow.jobId, 'test');
  });

  it('malformed jobs, in any of the fleet’s queues, show as "?" and never crash list or show', async () => {
    const host = rawQueue(HOST_QUEUE);
    await host.add('two-step', { hello: 'world' }, { jobId: 'two-step-evil-1' });
    await host.add('two-step', 'not even an object', { jobId: 'two-step-evil-2' });
    // Fields BullMQ itself cannot parse.
    await host.add('two-step', {}, { jobId: 'two-step-evil-3' });
    await redis.hset(`bull:${HOST_QUEUE}:two-step-evil-3`, 'data', '{not json', 'opts', 'null');
    // A genuine request whose progress message tries to draw on the terminal.
    const env = (await queueAs().enqueue({ ...twoStep('clawdinator-3'), principal: alice, requestId: 'ok' })).jobId;
    const job = await rawQueue(FLEET_QUEUE).getJob(env);
    await job?.updateProgress({ message: 'evil\u001b[2Jscreen\nsecond line', percent: 500 });
    // Another application's queue on the same Redis is not ours.
    await rawQueue('someone-else').add('x', {}, { jobId: 'x-1' });

    expect(await existingQueueNames(redis)).toEqual([FLEET_QUEUE, HOST_QUEUE]);
    const a = admin();
    const listed = await a.list('recent');
    expect(listed.map((j) => j.id).sort()).toEqual(['two-step-evil-1', 'two-step-evil-2', 'two-step-evil-3', env]);
    for (const id of ['two-step-evil-1', 'two-step-evil-2', 'two-step-evil-3']) {
      expect(listed.find((j) => j.id === id)).toMatchObject({ type: '?', requestedBy: '?', queue: HOST_QUEUE });
      expect(await a.show(id)).toMatchObject({ id, type: '?', state: 'waiting', steps: [], requestId: null });
    }
    expect(listed.find((j) => j.id === env)).toMatchObject({ step: 'evil [2Jscreen', percent: null });
    expect(await a.cancel('two-step-evil-3', 'test')).toEqual({ outcome: 'removed', jobId: 'two-step-evil-3' });
    await expect(a.retry('two-step-evil-1', queueAs(h.operator), operator, 'r')).rejects.toThrow(
      'only failed jobs can be retried: two-step-evil-1 is waiting',
    );
  });

  it('show: step names and sizes (not values), the last log lines, and a missing job is null', async () => {
    worker();
    const { jobId } = await queueAs().enqueue({ ...twoStep('clawdinator-3'), principal: alice, requestId: 'shown' });
    const job = await finished(jobId);
    for (let i = 1; i <= 25; i++) await job.log(`line ${i}`);
    const detail = await admin().show(jobId);
    expect(detail).toMatchObject({
      id: jobId,
      state: 'completed',
      requestId: 'shown',
      result: 'clawdinator-3 done',
      cancelRequestedBy: null,
      logCount: 25,
    });
    expect(detail?.steps).toEqual([
      { name: 'first', bytes: expect.any(Number) },
      { name: 'pause', bytes: 4 },
      { name: 'second', bytes: 4 },
    ]);
    expect(detail?.logs).toHaveLength(20);
    expect(detail?.logs[0]).toBe('line 6');
    expect(detail?.logs.at(-1)).toBe('line 25');
    expect(await admin().show('two-step-nothing')).toBeNull();
  });

  it('cancel of a waiting job removes it; the workers finalize it: the instance is free for a new request', async () => {
    // A worker that takes no jobs for now: only its finalizer (the `removed` event) acts.
    const w = worker();
    await w.worker.pause(true);
    const q = queueAs();
    const { jobId } = await q.enqueue({ ...twoStep('clawdinator-3'), principal: alice, requestId: 'waits' });
    const nonce = (await rawQueue(FLEET_QUEUE).getJob(jobId))?.data.signed.nonce as string;
    expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBe(jobId);

    expect(await admin().cancel(jobId, 'operator ops')).toEqual({ outcome: 'removed', jobId });
    expect(await stateOf(jobId)).toBe('unknown');
    await until('the removed job to be finalized', async () => (await redis.get(keys.finalized(jobId))) === 'done');
    expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBeNull();
    // The request is spent, and whoever waits on it hears that it was cancelled.
    expect(await redis.get(keys.nonce(nonce))).toBe(`done:${jobId}`);
    expect(await redis.ttl(keys.nonce(nonce))).toBeGreaterThan(0);
    expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
    // Sent by the workers' finalizer, signed with their key: the admin signs nothing.
    const stored = (await redis.xrange(keys.events, '-', '+')).map(([, f]) => JSON.parse(f[1] as string));
    expect(stored.map((s) => s.keyId)).toEqual(['schedule']);
    const events = stored.map((s) => s.event);
    expect(events).toEqual([
      expect.objectContaining({
        kind: 'result',
        jobId,
        ok: false,
        text: `cancelled: ${jobId} was cancelled by operator ops`,
      }),
    ]);

    const next = await q.enqueue({ ...twoStep('clawdinator-3'), principal: alice, requestId: 'next' });
    w.worker.resume();
    expect((await finished(next.jobId)).returnvalue).toEqual({ summary: 'clawdinator-3 done' });
    expect(await admin().cancel(next.jobId, 'x')).toEqual({ outcome: 'already-finished', jobId: next.jobId });
    expect(await admin().cancel('two-step-gone', 'x')).toEqual({ outcome: 'not-found', jobId: 'two-step-gone' });
  });

  it('cancel of a running job flags it: it fails "cancelled" at its next step, skipping the later steps', async () => {
    worker();
    const { jobId } = await queueAs().enqueue({
      ...twoStep('clawdinator-3', 1500),
      principal: alice,
      requestId: 'run',
    });
    await until('the pause step', async () => (await redis.lrange(EFFECTS, 0, -1)).some((e) => e.startsWith('pause')));
    const a = admin();
    expect(await a.cancel(jobId, 'operator ops')).toEqual({ outcome: 'flagged', jobId });
    expect(await a.show(jobId)).toMatchObject({ state: 'active', cancelRequestedBy: 'operator ops' });
    const job = await finished(jobId);
    expect(job.failedReason).toBe(`cancelled: ${jobId} was cancelled`);
    expect((await redis.lrange(EFFECTS, 0, -1)).map((e) => e.split(':')[0])).toEqual(['first', 'pause-start']);
    // The worker cleaned up: the lock and the flag are gone.
    expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBeNull();
    expect(await redis.exists(keys.cancel(jobId))).toBe(0);
  });

  it('a job waiting out a long step is running, not waiting, and a cancel flags it', async () => {
    worker();
    const { jobId } = await queueAs().enqueue({
      type: 'wait-for-key',
      data: { key: 'test:never', pollMs: 1000 },
      principal: alice,
      requestId: 'long',
    });
    await until('the job to re-delay itself', async () => (await stateOf(jobId)) === 'delayed');
    const a = admin();
    expect((await a.list('running')).map((j) => [j.id, j.state])).toEqual([[jobId, 'delayed']]);
    expect(await a.list('waiting')).toEqual([]);
    expect(await a.cancel(jobId, 'operator ops')).toEqual({ outcome: 'flagged', jobId });
    expect((await finished(jobId)).failedReason).toBe(`cancelled: ${jobId} was cancelled`);
  });

  it('retry of a failed job is a new request by whoever retries; completed jobs and busy instances are refused', async () => {
    worker();
    const denied = await queueAs().enqueue({ ...twoStep('clawdinator-4'), principal: reader, requestId: 'denied' });
    await finished(denied.jobId);
    const done = await queueAs().enqueue({ ...twoStep('clawdinator-5'), principal: alice, requestId: 'done' });
    await finished(done.jobId);
    const a = admin();
    const ops = queueAs(h.operator);

    await expect(a.retry(done.jobId, ops, operator, 'again')).rejects.toThrow(
      `only failed jobs can be retried: ${done.jobId} is completed`,
    );
    const busy = await queueAs().enqueue({ ...twoStep('clawdinator-4', 1000), principal: alice, requestId: 'busy' });
    await expect(a.retry(denied.jobId, ops, operator, 'too-soon')).rejects.toThrow(
      `already in progress: ${busy.jobId}`,
    );
    await finished(busy.jobId);

    const retried = await a.retry(denied.jobId, ops, operator, 'retry-1');
    expect(retried).toEqual({ jobId: 'two-step-retry-1', queue: FLEET_QUEUE });
    const job = await finished(retried.jobId);
    expect(job.returnvalue).toEqual({ summary: 'clawdinator-4 done' });
    expect(job.data.signed.principal).toEqual(operator);
    expect(job.data.signed.data).toEqual({ name: 'clawdinator-4', pauseMs: 0 });
    expect((await a.show(retried.jobId))?.requestedBy).toBe('operator ops');
  });

  it('a job planted in the failed set is never retried into a signed one', async () => {
    worker();
    // A genuine request that failed (the policy refuses the reader), to copy and change.
    const denied = await queueAs().enqueue({ ...twoStep('clawdinator-4'), principal: reader, requestId: 'real' });
    const real = await finished(denied.jobId);
    const raw = rawQueue(FLEET_QUEUE);
    const planted = async (id: string, data: unknown) => {
      await raw.add('two-step', data, { jobId: id, attempts: 1 });
      // The worker refuses it ("bad signature"): it lands in the failed set, as a Redis writer could put it.
      const job = await finished(id);
      expect(job.failedReason).toBe('rejected: bad signature');
    };
    const envelope = real.data;
    // Signed by a key that is not the gateway's; the genuine envelope with its target changed;
    // the genuine envelope copied under another job id; unsigned.
    const forged = signRequest(
      { keyId: 'gateway', key: keyPair().privateKey },
      { ...envelope.signed, jobId: 'two-step-forged' },
    );
    await planted('two-step-forged', forged);
    const changed = {
      ...envelope,
      signed: { ...envelope.signed, jobId: 'two-step-changed', data: { name: 'clawdinator-1', pauseMs: 0 } },
    };
    await planted('two-step-changed', changed);
    await planted('two-step-copied', envelope);
    await planted('two-step-unsigned', { signed: { ...envelope.signed, jobId: 'two-step-unsigned' } });
    // The genuine job itself, its data changed in place in Redis.
    await redis.hset(
      `bull:${FLEET_QUEUE}:${denied.jobId}`,
      'data',
      JSON.stringify({ ...envelope, signed: { ...envelope.signed, data: { name: 'clawdinator-1', pauseMs: 0 } } }),
    );
    const a = admin();
    const before = (await raw.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed'])).length;
    for (const id of ['two-step-forged', 'two-step-changed', 'two-step-copied', 'two-step-unsigned', denied.jobId]) {
      await expect(a.retry(id, queueAs(h.operator), operator, `retry-${id}`), id).rejects.toThrow(
        `cannot retry ${id}: its signature does not verify`,
      );
      expect(await a.show(id), id).toMatchObject({ signature: 'does not verify' });
    }
    expect((await raw.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed'])).length).toBe(before);
    expect(await redis.lrange(EFFECTS, 0, -1)).toEqual([]);
  });

  it('a retry is held to the retrier’s policy, and a destructive type must be confirmed', async () => {
    worker();
    const denied = await queueAs().enqueue({ ...twoStep('clawdinator-4'), principal: reader, requestId: 'by-reader' });
    await finished(denied.jobId);
    const destroy = await queueAs().enqueue({
      type: 'destroy-step',
      data: { name: 'clawdinator-5', pauseMs: 0 },
      principal: reader,
      requestId: 'destroy',
    });
    await finished(destroy.jobId);
    const a = admin();
    // The reader asking again is refused by their own policy, before anything is queued.
    await expect(a.planRetry(denied.jobId, reader, { policy })).rejects.toThrow('rejected: not allowed');
    expect(await a.planRetry(denied.jobId, alice, { policy })).toMatchObject({
      type: 'two-step',
      target: 'clawdinator-4',
      destructive: false,
      requestedBy: `alice (Discord ${ALICE})`,
      requestedAt: expect.any(Number),
    });
    await expect(a.retry(destroy.jobId, queueAs(), alice, 'unconfirmed', undefined, { policy })).rejects.toThrow(
      `retrying ${destroy.jobId} runs destroy-step of clawdinator-5 again, which cannot be undone: confirm it`,
    );
    expect(await rawQueue(FLEET_QUEUE).getJob('destroy-step-unconfirmed')).toBeUndefined();
    const retried = await a.retry(destroy.jobId, queueAs(), alice, 'confirmed', undefined, { policy, confirmed: true });
    expect((await finished(retried.jobId)).returnvalue).toEqual({ summary: 'clawdinator-5 done' });
  });

  it('a job scheduler’s pending run is flagged, not removed, so the schedule goes on', async () => {
    const q = rawQueue(FLEET_QUEUE);
    await q.upsertJobScheduler('test-sweep', { every: 60_000 }, { name: 'wait-for-key', data: {} });
    const [run] = await q.getJobs(['waiting', 'delayed']);
    const id = run?.id as string;
    expect(id).toMatch(/^repeat:test-sweep:\d+$/);
    const a = admin();
    expect(await a.show(id)).toMatchObject({ id, type: '?' });
    expect(await a.cancel(id, 'operator ops')).toEqual({ outcome: 'flagged', jobId: id });
    expect(await q.getJob(id)).toBeDefined();
    expect(await redis.get(keys.cancel(id))).toBe('operator ops');
  });

  it('bad ids and arguments are usage errors', async () => {
    const a = admin();
    for (const id of ['a:b', '123', '../x', 'twostep', 'Two-step-1', `two-step-${'x'.repeat(65)}`]) {
      await expect(a.show(id), id).rejects.toThrow(UsageError);
      await expect(a.cancel(id, 'x'), id).rejects.toThrow('not a job id: expected <type>-<request id>');
    }
    await expect(a.retry('a:b', queueAs(h.operator), operator, 'r')).rejects.toThrow(UsageError);
    await expect(a.list('everything' as never)).rejects.toThrow('filter: expected one of recent, running');
    await expect(a.list('recent', 0)).rejects.toThrow('limit: expected a whole number');
    // A job scheduler's runs have ids of their own shape.
    expect(await a.show('repeat:github-sync:1795554913000')).toBeNull();
  });
});
