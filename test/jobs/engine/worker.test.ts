// The job engine on a real redis-server: enqueue, signatures, replay, policy, locks, steps.
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope, Principal } from '../../../jobs/engine/envelope.js';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { AlreadyInProgress } from '../../../jobs/engine/locks.js';
import { type Enqueuer, signRequest } from '../../../jobs/engine/queues.js';
import { signPayload } from '../../../jobs/signing.js';
import { alicePrincipal as alice, policy, READER_ROLE } from '../../support/bot.js';
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
const operator: Principal = { kind: 'cli', operator: 'ops' };
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

function worker(p = policy, lookups?: string[]) {
  const deps = h.deps(server.client(), conn, p);
  const publicKey = deps.publicKey;
  // What the worker asked keys for, when the test wants to know.
  if (lookups !== undefined) {
    deps.publicKey = async (id) => {
      lookups.push(id);
      return publicKey(id);
    };
  }
  const w = startWorker(FLEET_QUEUE, deps, fastSettings);
  closers.push(() => w.close());
  return w;
}

function gatewayQueue(signer = h.gateway): Enqueuer {
  const e = enqueuer(server.client(), conn, h.types, signer);
  closers.push(() => e.close());
  return e;
}

async function finished(jobId: string, timeoutMs = 20_000): Promise<Job<Envelope>> {
  const q = new Queue(FLEET_QUEUE, { connection: conn });
  closers.push(() => q.close());
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await q.getJobState(jobId);
    if (state === 'completed' || state === 'failed') return (await q.getJob(jobId)) as Job<Envelope>;
    if (Date.now() > deadline) throw new Error(`${jobId} did not finish (state ${state})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Alice's request for a two-step job on clawdinator-3, signed by the gateway, as it would be added. */
function twoStepSigned(id: string) {
  return signRequest(h.gateway, {
    type: 'two-step',
    jobId: `two-step-${id}`,
    schema: 1,
    data: { name: 'clawdinator-3', pauseMs: 0 },
    principal: alice,
    requestId: id,
  });
}

async function effects(): Promise<string[]> {
  return redis.lrange(EFFECTS, 0, -1);
}

describe('job engine', () => {
  it('runs a signed job through its steps and publishes progress and the result', async () => {
    worker();
    const { jobId } = await gatewayQueue().enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: '1234567890',
    });
    expect(jobId).toBe('two-step-1234567890');
    const job = await finished(jobId);
    expect(job.returnvalue).toEqual({ summary: 'clawdinator-3 done' });
    expect((await effects()).map((e) => e.split(':')[0])).toEqual(['first', 'pause-start', 'second']);
    expect(Object.keys(job.data.steps ?? {})).toEqual(['first', 'pause', 'second']);
    const events = (await redis.xrange('clawdinator:events', '-', '+')).map(
      ([, f]) => JSON.parse(f[1] as string).event,
    );
    expect(events.map((e) => e.kind)).toEqual(['progress', 'progress', 'progress', 'result']);
    expect(events.at(-1)).toMatchObject({ ok: true, text: 'clawdinator-3 done', jobId });
  });

  it('the same request enqueued twice makes one job', async () => {
    const q = gatewayQueue();
    const a = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: 'req-1',
    });
    const b = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: 'req-1',
    });
    expect(b.jobId).toBe(a.jobId);
    expect(await q.queue(FLEET_QUEUE).count()).toBe(1);
    worker();
    await finished(a.jobId);
    expect((await effects()).filter((e) => e.startsWith('first'))).toHaveLength(1);
  });

  it('one operation per instance: a second request is "already in progress", a later one runs', async () => {
    const q = gatewayQueue();
    const first = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 300 },
      principal: alice,
      requestId: 'req-a',
    });
    await expect(
      q.enqueue({
        type: 'two-step',
        data: { name: 'clawdinator-3', pauseMs: 0 },
        principal: alice,
        requestId: 'req-b',
      }),
    ).rejects.toThrow(new AlreadyInProgress('clawdinator-3', first.jobId));
    worker();
    await finished(first.jobId);
    const later = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: 'req-c',
    });
    expect((await finished(later.jobId)).returnvalue).toEqual({ summary: 'clawdinator-3 done' });
  });

  it('a request that failed for good releases the instance; a retried request runs (not swallowed)', async () => {
    const reader: Principal = { ...alice, roles: [READER_ROLE] };
    const q = gatewayQueue();
    const denied = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-4', pauseMs: 0 },
      principal: reader,
      requestId: 'r-1',
    });
    worker();
    const job = await finished(denied.jobId);
    expect(job.failedReason).toBe('rejected: not allowed: You are not allowed to use /spawn.');
    expect(job.attemptsMade).toBe(1);
    const retried = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-4', pauseMs: 0 },
      principal: alice,
      requestId: 'r-2',
    });
    expect((await finished(retried.jobId)).returnvalue).toEqual({ summary: 'clawdinator-4 done' });
  });

  it('malformed job data written straight into Redis is rejected, and the worker goes on', async () => {
    worker();
    const raw = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => raw.close());
    await raw.add('two-step', { hello: 'world' }, { jobId: 'two-step-evil-1' });
    await raw.add('two-step', 'not even an object', { jobId: 'two-step-evil-2' });
    expect((await finished('two-step-evil-1')).failedReason).toBe('rejected: malformed job data');
    expect((await finished('two-step-evil-2')).failedReason).toBe('rejected: malformed job data');
    // A signed request is still parsed whole: a field its envelope does not have is refused.
    await raw.add('two-step', { ...twoStepSigned('evil-3'), extra: true }, { jobId: 'two-step-evil-3' });
    expect((await finished('two-step-evil-3')).failedReason).toBe('rejected: malformed job data');
    expect(await effects()).toEqual([]);
    const ok = await gatewayQueue().enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-5', pauseMs: 0 },
      principal: alice,
      requestId: 'after',
    });
    expect((await finished(ok.jobId)).returnvalue).toEqual({ summary: 'clawdinator-5 done' });
  });

  it('a forged or missing signature is "rejected: bad signature" with no side effect', async () => {
    worker();
    const raw = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => raw.close());
    const base = {
      type: 'two-step',
      schema: 1,
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: 'forged',
    };
    const forged = signRequest({ keyId: 'gateway', key: keyPair().privateKey }, { ...base, jobId: 'two-step-forged' });
    await raw.add('two-step', forged, { jobId: 'two-step-forged' });
    const unsigned = { signed: { ...forged.signed, jobId: 'two-step-unsigned' } };
    await raw.add('two-step', unsigned, { jobId: 'two-step-unsigned' });
    // Signed by a real agent key but claiming to be a Discord user.
    const confused = signRequest(h.agents['clawdinator-2'] as never, { ...base, jobId: 'two-step-confused' });
    await raw.add('two-step', confused, { jobId: 'two-step-confused' });
    // A genuine request whose data was changed after signing.
    const genuine = signRequest(h.gateway, { ...base, jobId: 'two-step-tampered' });
    genuine.signed.data = { name: 'clawdinator-1', pauseMs: 0 };
    await raw.add('two-step', genuine, { jobId: 'two-step-tampered' });
    for (const id of ['two-step-forged', 'two-step-unsigned', 'two-step-confused', 'two-step-tampered']) {
      expect((await finished(id)).failedReason, id).toBe('rejected: bad signature');
    }
    expect(await effects()).toEqual([]);
  });

  it('a rejected job leaves no replay record: a forged copy cannot spend a pending request', async () => {
    worker();
    const raw = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => raw.close());
    const genuine = twoStepSigned('pending');
    // The replay check records a nonce only for a request its signer signed for this very job
    // id: a forged or malformed copy carrying a pending request's nonce must not spend it.
    const forged = { ...genuine, signed: { ...genuine.signed, data: { name: 'clawdinator-1', pauseMs: 0 } } };
    await raw.add('two-step', forged, { jobId: 'two-step-pending' });
    expect((await finished('two-step-pending')).failedReason).toBe('rejected: bad signature');
    // A copy under another id fails the id check before its shape is looked at.
    const malformed = { ...genuine, extra: true };
    await raw.add('two-step', malformed, { jobId: 'two-step-malformed' });
    expect((await finished('two-step-malformed')).failedReason).toBe('rejected: bad signature');
    expect(await redis.exists(keys.nonce(genuine.signed.nonce))).toBe(0);
    // The genuine request, added once the forged job is gone, runs.
    await (await raw.getJob('two-step-pending'))?.remove();
    await raw.add('two-step', genuine, { jobId: 'two-step-pending' });
    expect((await finished('two-step-pending')).returnvalue).toEqual({ summary: 'clawdinator-3 done' });
    expect(await redis.get(keys.nonce(genuine.signed.nonce))).toMatch(/two-step-pending/);
  });

  it('a planted job makes the worker look up no key but the one its principal signs with', async () => {
    const lookups: string[] = [];
    worker(policy, lookups);
    const raw = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => raw.close());
    // A Discord user's request claiming an agent's key: an unknown agent's key is read from
    // the registry, freshly; a planted job must not make the worker do that.
    const claimed = twoStepSigned('claimed');
    await raw.add(
      'two-step',
      { ...claimed, signed: { ...claimed.signed, keyId: 'agent:clawdinator-99' } },
      {
        jobId: 'two-step-claimed',
      },
    );
    expect((await finished('two-step-claimed')).failedReason).toBe('rejected: bad signature');
    expect(lookups).toEqual([]);
    expect(await effects()).toEqual([]);
  });

  it('replays are refused: the same signed request under another id, or again after it ran', async () => {
    worker();
    const q = gatewayQueue();
    const { jobId } = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: 'once',
    });
    const done = await finished(jobId);
    const envelope = { signed: done.data.signed, signature: done.data.signature };
    const raw = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => raw.close());
    await raw.add('two-step', envelope, { jobId: 'two-step-copy' });
    expect((await finished('two-step-copy')).failedReason).toBe('rejected: bad signature');
    await done.remove();
    await raw.add('two-step', envelope, { jobId });
    expect((await finished(jobId)).failedReason).toBe('rejected: replayed request');
    expect((await effects()).filter((e) => e.startsWith('first'))).toHaveLength(1);
  });

  it('an expired request is refused', async () => {
    worker();
    const raw = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => raw.close());
    const env = twoStepSigned('old');
    env.signed.issuedAt = Date.now() - 3600_000;
    env.signature = signPayload(env.signed, h.gateway.key);
    await raw.add('two-step', env, { jobId: 'two-step-old' });
    expect((await finished('two-step-old')).failedReason).toBe('rejected: expired request');
  });

  it('agents: peers only, never themselves, within the hourly rate', async () => {
    worker();
    const agent2 = gatewayQueue(h.agents['clawdinator-2']);
    const self = await agent2.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-2', pauseMs: 0 },
      principal: { kind: 'agent', host: 'clawdinator-2' },
      requestId: 'self',
    });
    expect((await finished(self.jobId)).failedReason).toBe(
      'rejected: not allowed: an agent cannot two-step its own host',
    );
    // A refusal is final at once, and its requester hears about it.
    const events = (await redis.xrange('clawdinator:events', '-', '+')).map(
      ([, f]) => JSON.parse(f[1] as string).event,
    );
    expect(events.find((e) => e.jobId === self.jobId && e.kind === 'result')).toMatchObject({
      ok: false,
      text: 'rejected: not allowed: an agent cannot two-step its own host',
    });
    for (let i = 0; i < 3; i++) {
      const peer = await agent2.enqueue({
        type: 'two-step',
        data: { name: 'clawdinator-3', pauseMs: 0 },
        principal: { kind: 'agent', host: 'clawdinator-2' },
        requestId: `peer-${i}`,
      });
      expect((await finished(peer.jobId)).returnvalue).toEqual({ summary: 'clawdinator-3 done' });
    }
    const over = await agent2.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: { kind: 'agent', host: 'clawdinator-2' },
      requestId: 'peer-4',
    });
    expect((await finished(over.jobId)).failedReason).toMatch(/^rejected: rate limit: clawdinator-2 may ask for 3/);
    // A process holding one key cannot sign as another principal.
    await expect(
      agent2.enqueue({
        type: 'two-step',
        data: { name: 'clawdinator-3', pauseMs: 0 },
        principal: operator,
        requestId: 'x',
      }),
    ).rejects.toThrow('this process signs as agent:clawdinator-2 and cannot ask as cli');
  });

  it('bad data is refused at enqueue with one line, and nothing is added', async () => {
    const q = gatewayQueue();
    await expect(
      q.enqueue({ type: 'two-step', data: { name: 'evil; rm -rf /', pauseMs: 0 }, principal: alice, requestId: 'bad' }),
    ).rejects.toThrow(/^two-step: invalid name: Invalid/);
    await expect(q.enqueue({ type: 'nope', data: {}, principal: alice, requestId: 'bad' })).rejects.toThrow(
      'unknown job type "nope"',
    );
    await expect(
      q.enqueue({ type: 'two-step', data: { name: 'clawdinator-3', pauseMs: 0 }, principal: alice, requestId: 'a:b' }),
    ).rejects.toThrow(/request id/);
    expect(await q.queue(FLEET_QUEUE).count()).toBe(0);
  });

  it('a long wait re-delays the job instead of holding a worker', async () => {
    const w = worker();
    const { jobId } = await gatewayQueue().enqueue({
      type: 'wait-for-key',
      data: { key: 'test:ready', pollMs: 1000 },
      principal: alice,
      requestId: 'wait-1',
    });
    const q = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => q.close());
    while ((await q.getJobState(jobId)) !== 'delayed') await new Promise((r) => setTimeout(r, 20));
    expect(w.active).toBe(0);
    await redis.set('test:ready', 'yes');
    const job = await finished(jobId);
    expect(job.returnvalue).toEqual({ summary: 'got yes' });
    expect(job.data.steps?.['key:waiting-since']).toEqual(expect.any(Number));
  });

  it('saved step results changed in Redis: the resumed job is rejected before it acts on them', async () => {
    worker();
    const q = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => q.close());
    const waiting = async (requestId: string) => {
      const { jobId } = await gatewayQueue().enqueue({
        type: 'wait-for-key',
        data: { key: 'test:never', pollMs: 300 },
        principal: alice,
        requestId,
      });
      while ((await q.getJobState(jobId)) !== 'delayed') await new Promise((r) => setTimeout(r, 20));
      return (await q.getJob(jobId)) as Job<Envelope>;
    };
    const forged = await waiting('forged-step');
    const copied = await waiting('copied-steps');
    const honest = await waiting('honest-steps');
    expect(forged.data.stepsSignature).toEqual(expect.any(String));
    // A Redis writer claims the wait is over (the job would skip it and act on "forged"), and
    // moves one job's correctly signed steps onto another job.
    await forged.updateData({ ...forged.data, steps: { ...forged.data.steps, key: 'forged' } });
    await copied.updateData({ ...copied.data, steps: honest.data.steps, stepsSignature: honest.data.stepsSignature });
    for (const job of [forged, copied]) {
      const done = await finished(job.id as string);
      expect(done.failedReason).toBe('rejected: saved step state does not verify');
      expect(done.attemptsMade).toBe(1);
    }
    expect(await effects()).toEqual([]);
    // The untouched job's own signed steps still verify: it resumes and finishes.
    await redis.set('test:never', 'now');
    expect((await finished(honest.id as string)).returnvalue).toEqual({ summary: 'got now' });
    expect(await effects()).toEqual(['waited:now']);
  });

  it('a worker that does not know a job type leaves it for one that does', async () => {
    const old = startWorker(
      FLEET_QUEUE,
      {
        ...h.deps(server.client(), conn, policy),
        types: new (await import('../../../jobs/engine/queues.js')).JobTypes([]),
      },
      fastSettings,
    );
    closers.push(() => old.close());
    const { jobId } = await gatewayQueue().enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: alice,
      requestId: 'new-type',
    });
    await new Promise((r) => setTimeout(r, 500));
    expect((await effects()).length).toBe(0);
    // Left for another worker, and its replay record with it: the worker that runs it makes it.
    const queue = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => queue.close());
    const waiting = await until('the job to be left once', async () => {
      const j = (await queue.getJob(jobId)) as Job<Envelope> | undefined;
      return (j?.data.deferrals ?? 0) > 0 ? j : undefined;
    });
    expect(await redis.exists(keys.nonce(waiting.data.signed.nonce))).toBe(0);
    worker();
    const job = await finished(jobId);
    expect(job.returnvalue).toEqual({ summary: 'clawdinator-3 done' });
    expect(job.data.deferrals).toBeGreaterThan(0);
  });
});
