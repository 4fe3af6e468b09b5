// `clawdinator fleet spawn NAME --local`: day 0, when no worker exists yet to run the job.
// This process is the whole engine for one job: it starts a redis-server of its own on a
// free loopback port (the sandbox's helper, files in a temporary folder removed after),
// enqueues the spawn job signed as this operator, runs it with the real worker and job
// types on the production fleet deps, prints its progress and outcome, and stops Redis.
//
// "Online" here means the new host's SSM agent is online, not its worker's heartbeat: the
// new host's worker connects to the fleet's Redis (ElastiCache, inside the VPC), never to
// this temporary one, and an operator's machine usually cannot reach the fleet's Redis.
// The job says so in its result; `clawdinator fleet status` shows the heartbeat later.
//
// The temporary Redis keeps nothing: a run interrupted between the apply and the end is
// not resumable from here (the registry entry exists, so a second run is refused); finish
// it from the fleet (`/status`, `/replace`) or by hand.
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { startSandboxRedis } from '../bot/sandbox/redis.js';
import type { FleetRegistry } from '../infra/registry.js';
import type { AmiDeps } from '../jobs/ami/deps.js';
import { type AuditTrail, auditTrailFromConfig } from '../jobs/audit.js';
import { FLEET_QUEUE } from '../jobs/engine/keys.js';
import { Enqueuer, JobTypes, type Signer } from '../jobs/engine/queues.js';
import { fileRegistry, signerFrom } from '../jobs/engine/setup.js';
import { startWorker, type WorkerSettings } from '../jobs/engine/worker.js';
import { redisOptions } from '../jobs/redis.js';
import { jobTypes } from '../jobs/types/index.js';
import type { FleetDeps } from '../jobs/types/spawn.js';
import { instanceName, loadConfig, NAME_RULE } from '../lib/config.js';
import { ConfigError, errorLine, OperationError, UsageError } from '../lib/errors.js';
import { createLogger, type Logger } from '../lib/log.js';
import { stopRequested } from '../lib/signals.js';
import { MemoryStore } from '../memory/store.js';
import { fleetDeps } from './fleet-deps.js';

export interface LocalRunDeps {
  /** The job type (the CLI offers `spawn` and `rebuild-ami`) and its data, checked by the type's schema. */
  type: string;
  data: Record<string, unknown>;
  /** This operator's signing key (key id `operator:<name>`); its public key admits the job. */
  signer: Signer;
  /** What lifecycle jobs act on (spawn); an image rebuild built here needs none. */
  fleet?: FleetDeps;
  /** The image pipeline (`ami rebuild --local`). */
  ami?: AmiDeps;
  /** ops.md and the audit; a rebuild without it records nothing. */
  memory?: MemoryStore;
  /** Where the outcome is audited; default: the journal and the memory copy. */
  audit?: AuditTrail;
  registry: () => Promise<FleetRegistry>;
  /** CLAWDINATOR_INSTANCE_TYPES (default: the built-in list). */
  instanceTypes?: readonly string[];
  log: Logger;
  /** Progress and outcome lines, as they happen. */
  print: (line: string) => void;
  timeoutMs: number;
  /** Job stall timings; the defaults suit a job that runs in this process only. */
  settings?: Partial<WorkerSettings>;
  /** The redis-server executable (tests); default from PATH. */
  redisCommand?: string;
  /** Resolves on Ctrl-C / SIGTERM: stop waiting, let the running step end, stop Redis. */
  stop?: Promise<void>;
  /** Called with the temporary Redis's pid once it answers (tests check it is gone after). */
  onRedis?: (redis: { pid: number; url: string }) => void;
}

export interface LocalRunResult {
  ok: boolean;
  jobId: string | undefined;
  /** The job's summary, or why it failed. */
  text: string;
}

const DEFAULT_SETTINGS: WorkerSettings = {
  concurrency: 1,
  lockDurationMs: 30_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 1,
  maxAgeSeconds: 300,
  deferMs: 1000,
};

const POLL_MS = 100;

export async function runLocal(deps: LocalRunDeps): Promise<LocalRunResult> {
  const { signer, print } = deps;
  if (!signer.keyId.startsWith('operator:')) throw new Error('runLocal: the signer must be an operator');
  const dir = await mkdtemp(join(tmpdir(), 'clawdinator-local-'));
  const cleanups: (() => Promise<unknown> | unknown)[] = [() => rm(dir, { recursive: true, force: true })];
  try {
    const server = await startSandboxRedis({ dir, command: deps.redisCommand });
    cleanups.push(() => server.stop());
    deps.onRedis?.({ pid: server.pid, url: server.url });
    print(`local engine: redis-server ${server.url} (temporary, stopped at the end)`);

    const connection = redisOptions({ redisUrl: server.url });
    const redis = new Redis(connection);
    cleanups.push(() => redis.disconnect());
    // The new host never reaches this Redis: its heartbeat cannot be awaited here.
    const fleet: FleetDeps | undefined = deps.fleet && { ...deps.fleet, awaitHeartbeat: false };
    const types = new JobTypes(
      jobTypes({
        redis,
        registry: deps.registry,
        memory: deps.memory,
        audit: deps.audit,
        fleet,
        instanceTypes: deps.instanceTypes,
        ami: deps.ami,
      }),
    );
    const operatorKey = createPublicKey(signer.key);
    const worker = startWorker(
      FLEET_QUEUE,
      {
        connection,
        redis,
        types,
        // Only this operator's jobs run here.
        publicKey: async (keyId) => (keyId === signer.keyId ? operatorKey : null),
        policy: { policy: {}, redis, agentRequestsPerHour: 0 },
        log: deps.log,
        // The only worker on this Redis, for this one run: a key of its own signs its step results.
        stepSigner: { keyId: 'schedule', key: generateKeyPairSync('ed25519').privateKey },
      },
      { ...DEFAULT_SETTINGS, ...deps.settings },
    );
    cleanups.push(() => worker.close());
    let said = '';
    worker.worker.on('progress', (_job: Job, progress: unknown) => {
      const message = (progress as { message?: string } | null)?.message;
      if (typeof message === 'string' && message !== said) {
        said = message;
        print(`  ${message}`);
      }
    });
    worker.worker.on('failed', (job: Job | undefined, err: Error) => {
      if (job === undefined || job.finishedOn !== undefined) return;
      print(`  attempt ${job.attemptsMade} failed (${errorLine(err)}): retrying`);
    });

    const enqueuer = new Enqueuer(connection, redis, types, signer);
    cleanups.push(() => enqueuer.close());
    const { jobId, queue: queueName } = await enqueuer.enqueue({
      type: deps.type,
      data: deps.data,
      principal: { kind: 'cli', operator: signer.keyId.slice('operator:'.length) },
      requestId: `local-${randomBytes(9).toString('base64url')}`,
    });
    print(`running ${jobId} in this process`);
    const queue = enqueuer.queue(queueName);
    const deadline = Date.now() + deps.timeoutMs;
    let interrupted = false;
    void deps.stop?.then(() => {
      interrupted = true;
    });
    for (;;) {
      const state = await queue.getJobState(jobId);
      if (state === 'completed' || state === 'failed' || state === 'unknown') {
        const job = await queue.getJob(jobId);
        if (state === 'completed') {
          const summary = (job?.returnvalue as { summary?: string } | undefined)?.summary ?? 'done';
          return { ok: true, jobId, text: summary };
        }
        return { ok: false, jobId, text: job?.failedReason || `${jobId} is gone` };
      }
      if (interrupted) {
        return {
          ok: false,
          jobId,
          text: `${jobId} interrupted while ${state}: the temporary Redis keeps nothing; see /status or fleet status before trying again`,
        };
      }
      if (Date.now() > deadline) {
        return {
          ok: false,
          jobId,
          text: `${jobId} is still ${state} after ${Math.round(deps.timeoutMs / 1000)} s: stopped (the temporary Redis keeps nothing; see /status)`,
        };
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        deps.log.warn({ err }, 'local engine: clean-up step failed');
      }
    }
  }
}

/**
 * The CLI's `fleet spawn NAME --local`: every check that needs no Redis comes first (the
 * name, the settings, the operator key, the memory folder), so a wrong one starts nothing.
 */
export async function spawnLocal(
  name: string,
  opts: { instanceType?: string; ami?: string; timeout: string },
): Promise<void> {
  if (!instanceName.safeParse(name).success) {
    throw new UsageError(`${name} is not a fleet member's name: expected ${NAME_RULE}`);
  }
  const seconds = Number(opts.timeout);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400)
    throw new UsageError('--timeout: whole seconds from 1 to 86400');
  // The buckets first, by name: without them there is nothing to spawn into.
  const config = loadConfig([
    'bootstrapBucket',
    'stateBucket',
    'jobSigningKeyFile',
    'jobKeyId',
    'fleetRegistryPath',
    'memoryDir',
    'memoryMaxBytes',
    'memoryLockWaitSeconds',
    'logLevel',
    'instanceTypes',
  ]);
  if (!config.jobKeyId.startsWith('operator:')) {
    throw new ConfigError('config: CLAWDINATOR_JOB_KEY_ID must be operator:<name> for fleet changes from the CLI');
  }
  const memoryDir = await stat(config.memoryDir).catch(() => null);
  if (memoryDir === null || !memoryDir.isDirectory()) {
    throw new ConfigError(
      `config: CLAWDINATOR_MEMORY_DIR (${config.memoryDir}) is not a directory: the spawn records its ops.md and audit lines there (clawdinator memory init)`,
    );
  }
  const stop = stopRequested();
  const signer = signerFrom(config);
  const fleet = await fleetDeps();
  if (fleet === undefined)
    throw new ConfigError('config: CLAWDINATOR_BOOTSTRAP_BUCKET and CLAWDINATOR_STATE_BUCKET are needed');
  const log = createLogger(config.logLevel);
  const memory = new MemoryStore({
    root: config.memoryDir,
    maxBytes: config.memoryMaxBytes,
    waitSeconds: config.memoryLockWaitSeconds,
  });
  const result = await runLocal({
    type: 'spawn',
    data: { name, instanceType: opts.instanceType, ami: opts.ami },
    signer,
    fleet,
    memory,
    audit: auditTrailFromConfig(memory, log),
    registry: fileRegistry(config.fleetRegistryPath),
    instanceTypes: config.instanceTypes,
    log,
    print: (line) => process.stdout.write(`${line}\n`),
    timeoutMs: seconds * 1000,
    // Listened for before Redis starts: an early Ctrl-C must still stop it (it runs in a
    // process group of its own, so the terminal's signal never reaches it).
    stop,
  });
  if (!result.ok) throw new OperationError(result.text);
  process.stdout.write(`${result.text}\n`);
}
