// Job types and an engine harness for the engine tests: the production engine code with
// test job types whose side effects are recorded in Redis, so a test can count them.
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { type Heartbeat, signedHeartbeat } from '../../jobs/engine/heartbeat.js';
import type { AnyJobType, JobType } from '../../jobs/engine/job-type.js';
import { keys } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes, type Signer } from '../../jobs/engine/queues.js';
import { startWorker, type WorkerDeps, type WorkerSettings } from '../../jobs/engine/worker.js';
import { publicHalf } from '../../jobs/signing.js';
import type { AuthorizationPolicy } from '../../lib/authorize.js';
import { createLogger } from '../../lib/log.js';

export const EFFECTS = 'test:effects';
/** Retries in tests wait this long first (a fleet waits 5 s): the retry, not the wait, is tested. */
export const TEST_RETRY_DELAY_MS = 200;

/** Two steps around a pause; each step's side effect is a line in a Redis list. */
export const twoStep: JobType<z.ZodObject<{ name: z.ZodString; pauseMs: z.ZodNumber }>> = {
  name: 'two-step',
  version: 1,
  schema: z.object({
    name: z.string().regex(/^clawdinator-[a-z0-9-]+$/),
    pauseMs: z.number().int().min(0).max(60_000),
  }),
  permission: 'spawn',
  agentAllowed: true,
  instanceOf: (d) => d.name,
  attempts: 3,
  async run(ctx) {
    await ctx.steps.run('first', async () => {
      await effects().rpush(EFFECTS, `first:${ctx.jobId}:${process.pid}`);
      return { at: Date.now() };
    });
    await ctx.steps.run('pause', async () => {
      await effects().rpush(EFFECTS, `pause-start:${ctx.jobId}:${process.pid}`);
      await new Promise((r) => setTimeout(r, ctx.data.pauseMs));
      return null;
    });
    await ctx.steps.run('second', async () => {
      await effects().rpush(EFFECTS, `second:${ctx.jobId}:${process.pid}`);
      return null;
    });
    return { summary: `${ctx.data.name} done` };
  },
};

let effectsClient: Redis | undefined;
export function setEffectsClient(r: Redis): void {
  effectsClient = r;
}
function effects(): Redis {
  if (effectsClient === undefined) throw new Error('effects client not set');
  return effectsClient;
}

/** Waits via re-delays (no worker slot held) until a Redis key exists. */
export const waitForKey: JobType<z.ZodObject<{ key: z.ZodString; pollMs: z.ZodNumber }>> = {
  name: 'wait-for-key',
  version: 1,
  schema: z.object({ key: z.string().regex(/^test:[a-z0-9-]+$/), pollMs: z.number().int().min(10).max(60_000) }),
  permission: 'status',
  async run(ctx) {
    const value = await ctx.steps.waitFor('key', async () => (await effects().get(ctx.data.key)) ?? undefined, {
      pollMs: ctx.data.pollMs,
      timeoutMs: 60_000,
      timeoutMessage: 'gave up waiting',
    });
    await effects().rpush(EFFECTS, `waited:${value}`);
    return { summary: `got ${value}` };
  },
};

/** The same steps, declared destructive: a retry of it must be confirmed. */
export const destroyStep: AnyJobType = { ...twoStep, name: 'destroy-step', destructive: true };

export const testTypes: AnyJobType[] = [twoStep, waitForKey, destroyStep];

export function keyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

/**
 * The workers' key in tests (it signs saved step results). Made from a fixed seed so that
 * worker processes started by a test share it without passing it around; a test key only.
 */
export const testStepSigner: Signer = {
  keyId: 'schedule',
  key: createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, 7)]),
    format: 'der',
    type: 'pkcs8',
  }),
};

/** The workers' public key in tests: heartbeats, workers' events and pending records verify with it. */
export const testWorkersKey = publicHalf(testStepSigner.key);

/** Writes a host's heartbeat as its worker would: signed with the workers' key, with a TTL. */
export async function writeHeartbeat(
  redis: Redis,
  fields: { host: string; instanceId: string } & Partial<Heartbeat>,
  ttlSeconds = 60,
  signer: Signer = testStepSigner,
): Promise<void> {
  const at = Date.now();
  const heartbeat: Heartbeat = { version: 't', revision: 'r', startedAt: at, activeJobs: 0, at, ...fields };
  await redis.set(keys.heartbeat(fields.host), signedHeartbeat(heartbeat, signer, ttlSeconds), 'EX', ttlSeconds);
}

export const fastSettings: WorkerSettings = {
  concurrency: 4,
  lockDurationMs: 1000,
  stalledIntervalMs: 500,
  maxStalledCount: 3,
  maxAgeSeconds: 300,
  deferMs: 200,
};

/**
 * For workers running lifecycle jobs: those synthesize a stack in-process, which holds the
 * event loop for longer than `fastSettings`' 1 s lock on a loaded machine, and a job whose
 * lock lapses is run a second time alongside the first (a stall these tests do not test).
 */
export const lifecycleSettings: WorkerSettings = { ...fastSettings, lockDurationMs: 10_000, stalledIntervalMs: 5000 };

export interface Harness {
  gateway: Signer;
  operator: Signer;
  agents: Record<string, Signer>;
  keys: Record<string, KeyObject>;
  types: JobTypes;
  deps: (redis: Redis, connection: { host: string; port: number }, policy?: AuthorizationPolicy) => WorkerDeps;
}

export function harness(): Harness {
  const gw = keyPair();
  const op = keyPair();
  const agent2 = keyPair();
  const agent3 = keyPair();
  const keys: Record<string, KeyObject> = {
    gateway: gw.publicKey,
    'operator:ops': op.publicKey,
    'agent:clawdinator-2': agent2.publicKey,
    'agent:clawdinator-3': agent3.publicKey,
  };
  const types = new JobTypes(testTypes);
  return {
    gateway: { keyId: 'gateway', key: gw.privateKey },
    operator: { keyId: 'operator:ops', key: op.privateKey },
    agents: {
      'clawdinator-2': { keyId: 'agent:clawdinator-2', key: agent2.privateKey },
      'clawdinator-3': { keyId: 'agent:clawdinator-3', key: agent3.privateKey },
    },
    keys,
    types,
    deps: (redis, connection, policy = {}) => ({
      connection: { ...connection, maxRetriesPerRequest: null },
      redis,
      types,
      publicKey: async (id) => keys[id] ?? null,
      policy: { policy, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
    }),
  };
}

export function enqueuer(
  redis: Redis,
  connection: { host: string; port: number },
  types: JobTypes,
  signer: Signer,
): Enqueuer {
  return new Enqueuer({ ...connection, maxRetriesPerRequest: null }, redis, types, signer, {
    retryDelayMs: TEST_RETRY_DELAY_MS,
  });
}

export { startWorker };
