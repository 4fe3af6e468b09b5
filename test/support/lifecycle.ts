// A lifecycle harness over a simulated fleet (test/support/fleet.ts): the real worker running
// the real job types on the fleet queue, Enqueuers signing as an operator, an agent
// (clawdinator-1) or the gateway, and a way to run a job until it completed or failed.
import { createPublicKey } from 'node:crypto';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import type { Deployer } from '../../jobs/deploy/types.js';
import type { Envelope, Principal } from '../../jobs/engine/envelope.js';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes, type Signer } from '../../jobs/engine/queues.js';
import type { WorkerSettings } from '../../jobs/engine/worker.js';
import { type JobTypeDeps, jobTypes } from '../../jobs/types/index.js';
import type { FleetDeps } from '../../jobs/types/spawn.js';
import type { AuthorizationPolicy } from '../../lib/authorize.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { type SimFleet, type SimFleetOptions, simFleet } from './fleet.js';
import { keyPair, lifecycleSettings, startWorker, TEST_RETRY_DELAY_MS, testStepSigner } from './jobs.js';
import { startRedis, type TestRedis } from './redis.js';

export const OPERATOR: Principal = { kind: 'cli', operator: 'ops' };
export const AGENT: Principal = { kind: 'agent', host: 'clawdinator-1' };

export interface LifecycleOptions {
  /** What to change in the fleet's FleetDeps (the cap, the spawn rate). */
  fleet?: Partial<FleetDeps>;
  /** Wraps the simulated deployer, to change what a plan or an apply does. */
  deployer?: (sim: Deployer) => Deployer;
  /** More for the job types: the ops channel, how long an agent's request waits for a human, the allowed instance types, the image and fast lanes. */
  types?: Pick<JobTypeDeps, 'opsChannelId' | 'agentConfirmSeconds' | 'instanceTypes' | 'ami' | 'lane'>;
  /** Who may do what (default: nobody is allowed anything by policy). */
  policy?: AuthorizationPolicy;
  agentRequestsPerHour?: number;
  /** The worker's log (default: silent); a test that searches logs for a planted secret gives one. */
  log?: Logger;
  /** The request id of `run`'s `n`th job on this fleet (default `req-<type>-<name>-<n>`). */
  requestId?: (type: string, name: string, n: number) => string;
  /** The worker's settings beside lifecycleSettings (stall limits, the finalizer's sweep). */
  settings?: Partial<WorkerSettings>;
}

export interface Lifecycle {
  types: JobTypes;
  queue: Queue;
  /** The keys the worker knows: the operator's (operator:ops), clawdinator-1's agent's, the gateway's. */
  keys: Record<'operator' | 'agent' | 'gateway', ReturnType<typeof keyPair>>;
  signers: Record<'operator' | 'agent' | 'gateway' | 'schedule', Signer>;
  /** An Enqueuer signing as `who` (one each, closed with the harness); `schedule`: the workers' key. */
  enqueuer(who: 'operator' | 'agent' | 'gateway' | 'schedule'): Enqueuer;
  /** Queues a job as `principal` (an operator by default) and waits until it completed or failed. */
  run(type: string, data: { name: string } & Record<string, unknown>, principal?: Principal): Promise<Job<Envelope>>;
  /** Waits until the job completed or failed. */
  finished(jobId: string): Promise<Job<Envelope>>;
  /** The worker (its finalizer, to pause it). */
  worker: ReturnType<typeof startWorker>;
  close(): Promise<void>;
}

// Counted per fleet, not per harness: a second harness on the same fleet (another worker's
// settings) must not reuse a request id, which BullMQ would take for the same job.
const requests = new WeakMap<SimFleet, number>();
function nextRequest(sim: SimFleet): number {
  const n = (requests.get(sim) ?? 0) + 1;
  requests.set(sim, n);
  return n;
}

// One set of keys per fleet, as a fleet's workers share their public keys: a job signed
// through one harness verifies in every worker (and finalizer) on the same fleet.
const fleetKeySets = new WeakMap<SimFleet, Record<'operator' | 'agent' | 'gateway', ReturnType<typeof keyPair>>>();
function fleetKeys(sim: SimFleet) {
  let set = fleetKeySets.get(sim);
  if (set === undefined) {
    set = { operator: keyPair(), agent: keyPair(), gateway: keyPair() };
    fleetKeySets.set(sim, set);
  }
  return set;
}

export function lifecycleHarness(
  server: TestRedis,
  redis: Redis,
  sim: SimFleet,
  options: LifecycleOptions = {},
): Lifecycle {
  const fleet: FleetDeps = {
    ...sim.fleet,
    deployer: options.deployer ? options.deployer(sim.fleet.deployer) : sim.fleet.deployer,
    ...options.fleet,
  };
  const types = new JobTypes(
    jobTypes({
      redis,
      registry: async () => (await sim.registry.read()).registry,
      memory: sim.memory,
      fleet,
      ...options.types,
    }),
  );
  const connection = { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null };
  const keys = fleetKeys(sim);
  const signers = {
    operator: { keyId: 'operator:ops', key: keys.operator.privateKey },
    agent: { keyId: 'agent:clawdinator-1', key: keys.agent.privateKey },
    gateway: { keyId: 'gateway', key: keys.gateway.privateKey },
    // The workers' own key signs the schedules' jobs (and each save of step results).
    schedule: testStepSigner,
  };
  const known = new Map(Object.values(signers).map((s) => [s.keyId, createPublicKey(s.key)]));
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection,
      redis: server.client(),
      types,
      publicKey: async (id) => known.get(id) ?? null,
      policy: { policy: options.policy ?? {}, redis, agentRequestsPerHour: options.agentRequestsPerHour ?? 3 },
      log: options.log ?? createLogger('silent'),
      stepSigner: testStepSigner,
    },
    { ...lifecycleSettings, ...options.settings },
  );
  const queue = new Queue(FLEET_QUEUE, { connection });
  const enqueuers = new Map<string, Enqueuer>();
  const enqueuer = (who: keyof typeof signers) => {
    let e = enqueuers.get(who);
    if (e === undefined) {
      e = new Enqueuer(connection, server.client(), types, signers[who], { retryDelayMs: TEST_RETRY_DELAY_MS });
      enqueuers.set(who, e);
    }
    return e;
  };
  async function finished(jobId: string): Promise<Job<Envelope>> {
    // Retried failures wait out BullMQ's backoff (5 s, then 10 s) before their last attempt.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const state = await queue.getJobState(jobId);
      if (state === 'completed' || state === 'failed') return (await queue.getJob(jobId)) as Job<Envelope>;
      if (Date.now() > deadline) throw new Error(`${jobId} did not finish (state ${state})`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  const requestId = options.requestId ?? ((type, name, n) => `req-${type}-${name}-${n}`);
  return {
    types,
    queue,
    keys,
    signers,
    enqueuer,
    finished,
    worker,
    async run(type, data, principal = OPERATOR) {
      const { jobId } = await enqueuer(principal.kind === 'agent' ? 'agent' : 'operator').enqueue({
        type,
        data,
        principal,
        requestId: requestId(type, data.name, nextRequest(sim)),
      });
      return finished(jobId);
    },
    async close() {
      // Started up first: BullMQ's start-up commands on a connection closed mid-way reject unhandled.
      await queue.waitUntilReady().catch(() => {});
      await queue.close();
      for (const e of [...enqueuers.values()].reverse()) await e.close();
      await worker.close();
    },
  };
}

export interface LifecycleSuite {
  readonly server: TestRedis;
  /** This test's client (the data base flushed before it). */
  readonly redis: Redis;
  /** This test's fleet, new for each test. */
  readonly sim: SimFleet;
  /** A harness on this test's fleet, closed after the test (before the fleet). */
  harness(options?: LifecycleOptions): Lifecycle;
  /** Something else the test started, closed after it: the last started, the first closed. */
  defer(close: () => Promise<void> | void): void;
  /** Closes what the test started now, keeping its fleet: another worker can start on it. */
  closeStarted(): Promise<void>;
}

/**
 * Registers the hooks of a lifecycle test file: one redis-server for the file; for each test
 * a flushed data base and a new simulated fleet; whatever the test started closed after it.
 */
export function lifecycleSuite(fleet: SimFleetOptions = {}): LifecycleSuite {
  let server: TestRedis | undefined;
  let redis: Redis | undefined;
  let sim: SimFleet | undefined;
  const started: (() => Promise<void> | void)[] = [];
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`${what} is only there inside a test`);
    return value;
  };
  const closeStarted = async () => {
    for (const close of started.splice(0).reverse()) await close();
  };
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    redis = need(server, 'the redis-server').client();
    await redis.flushall();
    sim = simFleet(redis, fleet);
  });
  afterEach(async () => {
    await closeStarted();
    sim?.close();
    sim = undefined;
  });
  return {
    get server() {
      return need(server, 'the redis-server');
    },
    get redis() {
      return need(redis, 'the client');
    },
    get sim() {
      return need(sim, 'the fleet');
    },
    harness(options = {}) {
      const h = lifecycleHarness(this.server, this.redis, this.sim, options);
      started.push(() => h.close());
      return h;
    },
    defer: (close) => started.push(close),
    closeStarted,
  };
}
