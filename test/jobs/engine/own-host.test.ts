// Never deploy yourself: a job that retires or replaces host A is left by A's own worker to a
// peer's while a peer's heartbeat is alive; with no healthy peer, A runs it. Real workers on
// a real Redis, the real retire and replace jobs against the simulated fleet; each worker
// records (in Redis) which host's worker ran a job.
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope, Principal } from '../../../jobs/engine/envelope.js';
import type { AnyJobType } from '../../../jobs/engine/job-type.js';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../../jobs/engine/queues.js';
import { startWorker } from '../../../jobs/engine/worker.js';
import { jobTypes } from '../../../jobs/types/index.js';
import { createLogger } from '../../../lib/log.js';
import { type SimFleet, simFleet, simMember } from '../../support/fleet.js';
import { keyPair, lifecycleSettings, testStepSigner, writeHeartbeat } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';
import { until } from '../../support/until.js';

const A = 'clawdinator-1';
const B = 'clawdinator-3';
const RAN = 'test:ran-on';
const operator: Principal = { kind: 'cli', operator: 'ops' };

let server: TestRedis;
let redis: Redis;
let sim: SimFleet;
let queue: Queue;
let enqueuer: Enqueuer;
let types: AnyJobType[];
const operatorKey = keyPair();
const closers: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

const conn = () => ({ host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null });

beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  sim = simFleet(redis);
  closers.push(() => sim.close());
  // B is a member too, so a retire of A leaves a host.
  await sim.registry.update((r) => ({ ...r, [B]: simMember(B) }), { message: 'test: add B' });
  types = jobTypes({
    redis,
    registry: async () => (await sim.registry.read()).registry,
    memory: sim.memory,
    fleet: sim.fleet,
  });
  enqueuer = new Enqueuer(conn(), server.client(), new JobTypes(types), {
    keyId: 'operator:ops',
    key: operatorKey.privateKey,
  });
  queue = new Queue(FLEET_QUEUE, { connection: conn() });
  closers.push(
    () => enqueuer.close(),
    () => queue.close(),
  );
});

async function beat(host: string): Promise<void> {
  await writeHeartbeat(redis, { host, instanceId: `i-${host}` }, 600);
}

/** Host `host`'s worker: its types record, at each pickup, that this host ran the job. */
function worker(host: string) {
  const recording = types.map((t) => ({
    ...t,
    run: async (ctx: Parameters<AnyJobType['run']>[0]) => {
      await redis.rpush(RAN, `${host} ${t.name}`);
      return t.run(ctx);
    },
  }));
  const w = startWorker(
    FLEET_QUEUE,
    {
      connection: conn(),
      redis: server.client(),
      types: new JobTypes(recording),
      publicKey: async (id) => (id === 'operator:ops' ? operatorKey.publicKey : null),
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
      host: { name: host, peers: async () => Object.keys((await sim.registry.read()).registry) },
    },
    lifecycleSettings,
  );
  closers.push(() => w.close());
  return w;
}

let requests = 0;
async function ask(type: 'retire' | 'replace', name: string): Promise<string> {
  const { jobId } = await enqueuer.enqueue({
    type,
    data: { name },
    principal: operator,
    requestId: `req-${++requests}`,
  });
  return jobId;
}

async function finished(jobId: string): Promise<Job<Envelope>> {
  return until(`${jobId} to finish`, async () => {
    const state = await queue.getJobState(jobId);
    return state === 'completed' || state === 'failed' ? ((await queue.getJob(jobId)) as Job<Envelope>) : undefined;
  });
}

describe('never deploy yourself', () => {
  it("A's worker hands a retire of A to its peers while B is alive; B's worker runs it", async () => {
    await beat(A);
    await beat(B);
    worker(A);
    const jobId = await ask('retire', A);
    // A picks it up and gives it back, again and again; it never runs there.
    await until('hand-backs', async () => {
      const handedBack = (await queue.getJob(jobId))?.data.handedBack ?? 0;
      return handedBack >= 3 ? handedBack : undefined;
    });
    expect(await redis.lrange(RAN, 0, -1)).toEqual([]);
    expect(Object.keys((await sim.registry.read()).registry)).toEqual([A, B]);

    worker(B);
    const job = await finished(jobId);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue).toMatchObject({ summary: expect.stringMatching(/^clawdinator-1 retired: /) });
    const ran = await redis.lrange(RAN, 0, -1);
    expect(ran.length).toBeGreaterThan(0);
    expect(new Set(ran)).toEqual(new Set([`${B} retire`]));
    expect(Object.keys((await sim.registry.read()).registry)).toEqual([B]);
    // B's pickups reset the count: A's bound counts hand-backs in a row, not over the job's life.
    expect(job.data.handedBack).toBe(0);
  });

  it('with no healthy peer, A runs the replace of A itself', async () => {
    await beat(A);
    worker(A);
    const jobId = await ask('replace', A);
    const job = await finished(jobId);
    expect(job.failedReason).toBeUndefined();
    expect(job.data.handedBack).toBeUndefined();
    expect(new Set(await redis.lrange(RAN, 0, -1))).toEqual(new Set([`${A} replace`]));
  });

  it('a forged heartbeat is no live peer: A runs the replace of A itself, handing nothing back', async () => {
    await beat(A);
    // B's worker is gone; what a Redis writer puts under its key (the unsigned shape) is no heartbeat.
    const at = Date.now();
    const forged = { host: B, instanceId: `i-${B}`, version: 't', revision: 'r', startedAt: at, activeJobs: 0, at };
    await redis.set(keys.heartbeat(B), JSON.stringify(forged), 'EX', 600);
    worker(A);
    const job = await finished(await ask('replace', A));
    expect(job.failedReason).toBeUndefined();
    expect(job.data.handedBack).toBeUndefined();
    expect(new Set(await redis.lrange(RAN, 0, -1))).toEqual(new Set([`${A} replace`]));
  });

  it('a job about another host runs wherever it is picked up', async () => {
    await beat(A);
    await beat(B);
    worker(A);
    const jobId = await ask('retire', B);
    const job = await finished(jobId);
    expect(job.failedReason).toBeUndefined();
    expect(job.data.handedBack).toBeUndefined();
    expect(new Set(await redis.lrange(RAN, 0, -1))).toEqual(new Set([`${A} retire`]));
  });
});
