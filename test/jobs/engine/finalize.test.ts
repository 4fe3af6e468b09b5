// Ends that no processor sees, with real processes: fleet workers (the production worker and
// job types, each in its own process) on one redis-server and one simulated cloud served by
// this process (test/support/sim-server.ts), which holds a chosen cloud call so a worker can
// be SIGKILLed exactly there.
//   - A spawn whose worker dies stalls past the limit: two workers race to finalize it, and
//     it is undone once, with one audit line and one final message.
//   - The worker finalizing it dies part-way through the undo: the sweep of another worker
//     takes the finalization over once the dead one's lease lapses, and finishes it once.
import type { ChildProcess } from 'node:child_process';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { JobTypes } from '../../../jobs/engine/queues.js';
import { startWorker, type WorkerSettings } from '../../../jobs/engine/worker.js';
import { jobTypes } from '../../../jobs/types/index.js';
import { createLogger } from '../../../lib/log.js';
import { SIM_BUCKET, type SimFleet, simFleet } from '../../support/fleet.js';
import { operatorClient, startFleetWorker } from '../../support/fleet-worker.js';
import { fastSettings, keyPair, testStepSigner } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';
import { serveSim } from '../../support/sim-server.js';
import { until } from '../../support/until.js';

const operator = keyPair();
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => {});
  cleanup.length = 0;
});

/** Cloud calls held by the served cloud: a worker process that reaches one waits there. */
class Holds {
  private readonly held = new Map<string, () => void>();
  private readonly reached = new Map<string, Promise<void>>();

  hold(method: string): Promise<void> {
    const reached = new Promise<void>((resolve) => this.held.set(method, resolve));
    this.reached.set(method, reached);
    return reached;
  }

  readonly hook = async (method: string): Promise<void> => {
    const reached = this.held.get(method);
    if (reached === undefined) return;
    this.held.delete(method);
    reached();
    // Never released: the worker that made the call is killed while it waits.
    await new Promise(() => {});
  };
}

interface World {
  server: TestRedis;
  redis: Redis;
  sim: SimFleet;
  holds: Holds;
  simUrl: string;
  queue: Queue;
  enqueue(requestId: string): Promise<string>;
}

async function world(): Promise<World> {
  const server = await startRedis();
  cleanup.push(() => server.stop());
  const redis = server.client();
  const sim = simFleet(redis);
  cleanup.push(() => sim.close());
  const holds = new Holds();
  const http = await serveSim(sim.cloud, holds.hook);
  cleanup.push(() => http.close());
  const { enqueuer, queue } = operatorClient({ server, sim, cleanup }, redis, operator.privateKey);
  return {
    server,
    redis,
    sim,
    holds,
    simUrl: http.url,
    queue,
    async enqueue(requestId) {
      const { jobId } = await enqueuer.enqueue({
        type: 'spawn',
        data: { name: 'clawdinator-3' },
        principal: { kind: 'cli', operator: 'ops' },
        requestId,
      });
      return jobId;
    },
  };
}

async function kill(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
}

/** A worker in this process on the same fleet (the cloud itself, not over HTTP). */
function localWorker(w: World, settings: Partial<WorkerSettings>) {
  const { redis, sim, server } = w;
  const types = new JobTypes(
    jobTypes({
      redis,
      registry: async () => (await sim.registry.read()).registry,
      memory: sim.memory,
      fleet: sim.fleet,
    }),
  );
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection: { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null },
      redis: server.client(),
      types,
      publicKey: async (id) => (id === 'operator:ops' ? operator.publicKey : null),
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
    },
    { ...fastSettings, lockDurationMs: 10_000, ...settings },
  );
  cleanup.push(() => worker.close());
  return worker;
}

/** The job's worker dies in its bundle step, after the registry entry and the host key. */
async function diesInBundle(w: World, requestId: string): Promise<string> {
  const bundle = w.holds.hold('putBytes');
  const first = await startFleetWorker(
    { ...w, operator: operator.publicKey, cleanup },
    { settings: { lockDurationMs: 1500 } },
  );
  const jobId = await w.enqueue(requestId);
  await bundle;
  await kill(first);
  expect(Object.keys((await w.sim.registry.read()).registry)).toEqual(['clawdinator-1', 'clawdinator-3']);
  expect(await w.sim.cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(true);
  return jobId;
}

async function expectUndoneOnce(w: World, jobId: string): Promise<void> {
  const { redis, sim } = w;
  expect(Object.keys((await sim.registry.read()).registry)).toEqual(['clawdinator-1']);
  expect(await sim.cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(false);
  expect(await sim.cloud.listKeys(SIM_BUCKET, 'bootstrap/clawdinator-3/')).toEqual([]);
  expect(await redis.zscore('clawdinator:spawn-rate', jobId)).toBeNull();
  expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBeNull();
  expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
  expect(await redis.exists(keys.finalizing(jobId))).toBe(0);
  const message = `spawn clawdinator-3 failed at bundle: its workers stopped responding (job stalled more than allowable limit). Nothing was left behind; run \`clawdinator fleet spawn clawdinator-3\` again.`;
  const results = (await redis.xrange(keys.events, '-', '+'))
    .map(([, f]) => JSON.parse(f[1] as string).event)
    .filter((e) => e.kind === 'result' && e.jobId === jobId);
  expect(results).toEqual([expect.objectContaining({ ok: false, text: message })]);
  const audit = (await sim.memory.read(`audit/${new Date().toISOString().slice(0, 10)}.md`)).content.toString();
  expect(audit.split('\n').filter((l) => l.includes(`job=${jobId} `))).toEqual([
    expect.stringContaining(`spawn name:clawdinator-3 → failed: ${message}`),
  ]);
}

describe('ends without a processor, across worker processes', () => {
  it('a spawn stalled past the limit is undone once, though two workers race to finalize it', async () => {
    const w = await world();
    const jobId = await diesInBundle(w, 'stalls');
    // Two workers that count a first stall as past the limit.
    const a = localWorker(w, { maxStalledCount: 0, stalledIntervalMs: 200 });
    const b = localWorker(w, { maxStalledCount: 0, stalledIntervalMs: 200 });
    await until('the stalled job to be finalized', async () => (await w.redis.get(keys.finalized(jobId))) === 'done');
    const job = await w.queue.getJob(jobId);
    expect(job?.failedReason).toBe('job stalled more than allowable limit');
    await expectUndoneOnce(w, jobId);
    // Once done, nobody finalizes it again: not an event, not a sweep.
    const again = { jobId, name: 'spawn', data: job?.data, how: 'stalled' as const, cause: 'again' };
    expect(await Promise.all([a.finalizer.end(again), b.finalizer.end(again)])).toEqual([null, null]);
    expect(await a.finalizer.sweep(w.queue)).toBe(0);
    await expectUndoneOnce(w, jobId);
  });

  it('a finalizer killed part-way through the undo is resumed by another worker’s sweep and finishes once', async () => {
    const w = await world();
    const jobId = await diesInBundle(w, 'finalizer-dies');
    // The worker that finds the stall dies while undoing: after the registry entry, at the host key.
    const undoing = w.holds.hold('deleteSecret');
    const finalizer = await startFleetWorker(
      { ...w, operator: operator.publicKey, cleanup },
      { settings: { maxStalledCount: 0, stalledIntervalMs: 200, finalizeLeaseMs: 1500 } },
    );
    await undoing;
    await kill(finalizer);
    expect(Object.keys((await w.sim.registry.read()).registry)).toEqual(['clawdinator-1']);
    expect(await w.sim.cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(true);
    expect(await w.redis.get(keys.finalized(jobId))).toMatch(/^running:/);

    // Another worker's sweep takes it over once the dead finalizer's lease lapses.
    localWorker(w, { finalizeSweepMs: 200 });
    await until(
      'the sweep to finish the finalization',
      async () => (await w.redis.get(keys.finalized(jobId))) === 'done',
    );
    await expectUndoneOnce(w, jobId);
  });
});
