// `clawdinator sandbox`: the real gateway handlers (console adapter), the real workers and
// schedules, a Redis (its own unless CLAWDINATOR_REDIS_URL is set), the simulated cloud, and a
// local memory folder and fleet registry under one directory. What the console shows is what
// Discord would show: the handler's reply, then the job's progress and result as the relay
// renders them.
//
//   <dir>/memory/        the shared memory (memory init; kept across starts)
//   <dir>/fleet.json     the fleet registry (local-file backend, with its .history; made
//                        with clawdinator-1 on the first start, then kept and changed by jobs)
//   <dir>/keys/          the gateway's and the schedules' Ed25519 keys (new at each start, 0600)
//   <dir>/redis/         the sandbox's redis-server: log and pid file (no data is saved)
//   <dir>/cdktf.out/     the member stacks the simulated deployer synthesizes
//   <dir>/sandbox.log    the log (JSON lines)
//   <dir>/cloud.json     written at stop: the simulated cloud's instances and bucket objects
//
// GitHub is simulated too (jobs/github/sim.ts, on a loopback port, with an App key made at
// each start): the org `openclaw` is synced into the memory at start by the real org sync, so
// `/memory read path:github/prs.md` shows it, and the github-sync schedule keeps it synced.
//
// Every start builds a fresh simulated cloud from the registry: each member running and
// online (with its worker's heartbeat and host queue), the token pool's secrets, the images.
// The fleet cap and the spawn rate come from the settings (CLAWDINATOR_FLEET_MAX_SIZE, 5 by
// default; CLAWDINATOR_SPAWNS_PER_HOUR) and reach the lifecycle jobs through FleetDeps.

import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { loadInfraSettings } from '../../infra/settings.js';
import { StandInImageBuilder } from '../../jobs/ami/builder.js';
import type { AmiDeps } from '../../jobs/ami/deps.js';
import { AuditTrail } from '../../jobs/audit.js';
import { type Clock, realClock, scaledClock } from '../../jobs/cloud/clock.js';
import { createSimCloud, instantSimTimings, type SimCloud, type SimHost } from '../../jobs/cloud/sim.js';
import { SimDeployer } from '../../jobs/deploy/sim.js';
import { existingQueueNames, JobAdmin } from '../../jobs/engine/admin.js';
import { startHeartbeat } from '../../jobs/engine/heartbeat.js';
import { FLEET_QUEUE, hostQueue, keys as redisKeys } from '../../jobs/engine/keys.js';
import { consumeEvents, GATEWAY_GROUP, type JobEvent } from '../../jobs/engine/notify.js';
import { Enqueuer, JobTypes, type Signer } from '../../jobs/engine/queues.js';
import { FLEET_SCHEDULES, upsertSchedules } from '../../jobs/engine/schedulers.js';
import { eventTrust, publicKeys, registryReader } from '../../jobs/engine/setup.js';
import { startWorker, type WorkerSettings } from '../../jobs/engine/worker.js';
import { type FastLaneDeps, fastLaneSchedules } from '../../jobs/fastlane/deps.js';
import { createGitHubInstallation } from '../../jobs/github/app.js';
import { syncOrg } from '../../jobs/github/org-sync.js';
import { staticResolver } from '../../jobs/github/revision.js';
import { SimGitHub } from '../../jobs/github/sim.js';
import { doctorMember, memberLogs } from '../../jobs/host/ops.js';
import { createRedis, redisOptions } from '../../jobs/redis.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import { publicHalf } from '../../jobs/signing.js';
import { fleetStatus } from '../../jobs/status.js';
import { type JobTypeDeps, jobTypes } from '../../jobs/types/index.js';
import type { FleetDeps } from '../../jobs/types/spawn.js';
import type { Actor } from '../../lib/actor.js';
import { loadConfig } from '../../lib/config.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { version } from '../../lib/version.js';
import { initMemory } from '../../memory/init.js';
import { MemoryStore } from '../../memory/store.js';
import { commands } from '../commands/index.js';
import { ConsoleSession } from '../console/adapter.js';
import { createDispatcher } from '../dispatch.js';
import { botJobAdmin, botJobs, redisClaim } from '../engine.js';
import { renderEvent } from '../progress.js';
import { eventButtons } from '../relay.js';
import type { BotDeps, Button, Reply } from '../types.js';
import { type SandboxRedis, startSandboxRedis } from './redis.js';
import { simCommand } from './sim-command.js';
import { type JobEnd, JobTracker } from './tracker.js';
import {
  cloudSeed,
  DEFAULT_INSTANCE_TYPE,
  ensureRegistry,
  FIRST_HOST,
  memberActor,
  operatorActor,
  SANDBOX_AMI,
  SANDBOX_BRANCH,
  SANDBOX_BUCKET,
  SANDBOX_OPS_CHANNEL,
  SANDBOX_ORG,
  SANDBOX_REFS,
  SANDBOX_REPO,
  sandboxHostSecrets,
  sandboxOrg,
  sandboxPolicy,
  writeSigningKeys,
} from './world.js';

/** At 60×, a host boots in 1.5 s and a 20-minute AMI import takes 20 s. */
export const DEFAULT_SPEED = 60;
const SCHEDULE_CHECK_MS = 60_000;
const HEARTBEAT_TTL_SECONDS = 90;
const MEMORY_MAX_BYTES = 1024 * 1024;

export interface SandboxOptions {
  /** The working directory; made when missing, never removed. */
  dir: string;
  /** Every simulated transition at once (instant timings on the real clock). */
  fast?: boolean;
  /** Speed of the simulated clock when not fast. */
  speed?: number;
  /** `--as`: another identity, without the operator role. */
  as?: string;
  /** An existing Redis instead of starting redis-server. */
  redis?: { redisUrl: string; redisPasswordFile?: string };
  /** The fleet size cap the lifecycle jobs enforce (CLAWDINATOR_FLEET_MAX_SIZE, 5 by default). */
  fleetMaxSize: number;
  /** The spawn rate limit (CLAWDINATOR_SPAWNS_PER_HOUR); default 3. */
  spawnsPerHour?: number;
  /** Where console output goes (what Discord would show). */
  print: (text: string) => void;
  logLevel?: string;
  /** The redis-server executable (tests). */
  redisCommand?: string;
}

/** Why a line did not succeed: a refusal (or a handler's error), a job that failed, or a crash. */
export interface LineFailure {
  kind: 'refused' | 'failed' | 'crashed';
  text: string;
}

export interface LineResult {
  /** The handler did not refuse or fail, and every job it started succeeded. */
  ok: boolean;
  jobs: JobEnd[];
  /** What said no, when something did. */
  failures?: LineFailure[];
}

export interface Sandbox {
  readonly dir: string;
  /** Who is at the console. */
  readonly actor: Actor;
  readonly redisUrl: string;
  /** True when this sandbox started the redis-server. */
  readonly ownRedis: boolean;
  readonly cloud: SimCloud;
  readonly deps: BotDeps;
  readonly session: ConsoleSession;
  readonly registryPath: string;
  /** The simulated GitHub's URL and the org it holds. */
  readonly github: { url: string; org: string };
  /** Runs a line through the console session; with `waitMs`, waits for the jobs it started. */
  runLine(line: string, options?: { waitMs?: number }): Promise<LineResult>;
  /** Jobs started since the last runLine/waitForJobs, awaited. */
  waitForJobs(timeoutMs: number): Promise<JobEnd[]>;
  stop(): Promise<void>;
}

interface HostRuntime {
  heartbeat: { stop(): Promise<void> };
  worker: ReturnType<typeof startWorker>;
}

export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const actor = options.as === undefined ? operatorActor() : memberActor(options.as);
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const registryPath = join(dir, 'fleet.json');
  const memoryRoot = join(dir, 'memory');
  const registryAtStart = await ensureRegistry(registryPath);
  const keys = await writeSigningKeys(dir);
  await initMemory(memoryRoot);

  const logStream: WriteStream = createWriteStream(join(dir, 'sandbox.log'), { flags: 'a', mode: 0o600 });
  // A job left running at stop may still log after the file is closed: drop those lines.
  logStream.on('error', () => {});
  const log: Logger = createLogger(options.logLevel ?? 'info', logStream).child({ sandbox: process.pid });
  const cleanups: (() => Promise<void> | void)[] = [() => new Promise<void>((r) => logStream.end(() => r()))];
  const runCleanups = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn({ err }, 'sandbox: clean-up step failed');
      }
    }
    cleanups.length = 0;
  };

  try {
    let own: SandboxRedis | undefined;
    if (options.redis === undefined) {
      own = await startSandboxRedis({ dir, command: options.redisCommand });
      const started = own;
      cleanups.push(() => started.stop());
    }
    const redisUrl = own?.url ?? (options.redis?.redisUrl as string);
    const connection = redisOptions(own ? { redisUrl } : (options.redis as { redisUrl: string }));
    const redis = createRedis(connection);
    cleanups.push(() => redis.disconnect());

    const clock: Clock = options.fast ? realClock : scaledClock(options.speed ?? DEFAULT_SPEED);
    const planted = sandboxHostSecrets(randomBytes(6).toString('hex'));
    const cloud = createSimCloud({
      clock,
      timings: options.fast ? instantSimTimings : undefined,
      ...cloudSeed(registryAtStart),
      // Hosts on the image's revision; `broken` never reports after its switch; secrets their
      // journal leaked, which /logs shows redacted.
      hosts: {
        brokenRevisions: [SANDBOX_REFS.broken],
        hostSecrets: planted.secrets,
        journal: { 'clawdinator-worker': planted.leaks },
      },
    });
    cleanups.push(() => cloud.close());
    // What the script left in the simulated cloud, for a look after it ended (the cloud
    // itself lives only as long as the sandbox): instances and bootstrap objects, no secrets.
    cleanups.push(async () => {
      const instances = (await cloud.listFleetInstances()).map((i) => ({
        name: i.name,
        instanceId: i.instanceId,
        state: i.state,
      }));
      const objects = await cloud.listKeys(SANDBOX_BUCKET, '');
      await writeFile(join(dir, 'cloud.json'), `${JSON.stringify({ instances, objects }, null, 2)}\n`);
    });

    // The sandbox's registry is always its own file, whatever the settings say.
    const registry = registryReader({ fleetRegistryBackend: 'file', fleetRegistryPath: registryPath });
    const memory = new MemoryStore({ root: memoryRoot, maxBytes: MEMORY_MAX_BYTES, waitSeconds: 5 });
    // What the lifecycle jobs act on: the simulated cloud, the simulated deployer (the real
    // synth of the member's stack, made real in the sim), the registry file, the safety rails.
    const registryStore = new FileRegistryStore(registryPath);
    const fleet: FleetDeps = {
      cloud,
      deployer: new SimDeployer({
        cloud,
        registry: registryStore,
        // The defaults, whatever this machine's AWS settings say: the sandbox deploys nothing real.
        settings: loadInfraSettings({ env: {} }),
        outdir: join(dir, 'cdktf.out'),
        bucket: SANDBOX_BUCKET,
      }),
      registryStore,
      bucket: SANDBOX_BUCKET,
      region: null,
      fleetMaxSize: options.fleetMaxSize,
      spawnsPerHour: options.spawnsPerHour ?? 3,
      defaultInstanceType: DEFAULT_INSTANCE_TYPE,
      // Waits re-delay the job; poll the sim often enough to follow it at its pace.
      waits: { pollMs: options.fast ? 200 : 1000 },
    };
    // The audit as on a host: the journal (sandbox.log), one object per event in the
    // simulated bucket (audit/…, listed in cloud.json at the end), the copy in memory/audit/.
    const audit = new AuditTrail({ log, memory, bucket: SANDBOX_BUCKET, cloud: async () => cloud, host: 'sandbox' });
    // The simulated GitHub and the App's installation on it; the org synced once before the
    // first line runs (the schedule's own first run then finds it unchanged).
    const appKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const github = await new SimGitHub({
      appId: '1',
      installationId: '1',
      publicKey: appKey.publicKey,
      org: sandboxOrg(),
    }).start();
    cleanups.push(() => github.stop());
    const installation = createGitHubInstallation({
      appId: '1',
      installationId: '1',
      privateKeyPem: appKey.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
      apiUrl: github.url,
      log,
    });
    const sync = () => syncOrg({ installation, memory, org: SANDBOX_ORG, log });
    await sync();
    const schedule: Signer = { keyId: 'schedule', key: createPrivateKey(keys.schedule.privateKeyPem) };
    // The image pipeline on the simulated cloud: revs resolve among the sandbox's refs, and the
    // "build" is a clearly labelled stand-in writing a small file (no Nix here). This process's
    // fleet worker is clawdinator-1's in the story: another member builds, and it goes last.
    const ami: AmiDeps = {
      cloud,
      bucket: SANDBOX_BUCKET,
      resolver: staticResolver({ repo: SANDBOX_REPO, branch: SANDBOX_BRANCH, refs: SANDBOX_REFS }),
      builder: new StandInImageBuilder(join(dir, 'images'), cloud.faults),
      builtBy: FIRST_HOST,
      hostName: FIRST_HOST,
      hostJobs: { connection, signer: schedule },
      keep: 5,
      bootMode: 'legacy-bios',
      architecture: 'x86_64',
      waits: options.fast ? { pollMs: 200, importPollMs: 200 } : { pollMs: 1000, importPollMs: 1000 },
    };
    // The fast lane on the simulated hosts: this process's fleet worker is clawdinator-1's, so
    // its own switch goes last and waits a little for a peer's worker (none runs the fleet
    // queue here) before it switches itself.
    const lane: FastLaneDeps = {
      cloud,
      resolver: staticResolver({ repo: SANDBOX_REPO, branch: SANDBOX_BRANCH, refs: SANDBOX_REFS }),
      hostName: FIRST_HOST,
      waits: options.fast
        ? { pollMs: 500, verifyTimeoutMs: 3000, handoffMs: 2000 }
        : { pollMs: 1000, verifyTimeoutMs: 60_000, handoffMs: 10_000 },
    };
    const typeDeps: JobTypeDeps = {
      redis,
      registry,
      opsChannelId: SANDBOX_OPS_CHANNEL,
      memory,
      audit,
      fleet,
      github: { sync },
      ami,
      lane,
    };
    const types = new JobTypes(jobTypes(typeDeps));
    const gateway: Signer = { keyId: 'gateway', key: createPrivateKey(keys.gateway.privateKeyPem) };
    const workersKey = publicHalf(schedule.key);
    // The schedules, as every worker keeps them: the self-update too, when
    // CLAWDINATOR_SELF_UPDATE_CRON is set (the workers admit each one's runs by these).
    const scheduleDefs = [...FLEET_SCHEDULES, ...fastLaneSchedules(loadConfig(['selfUpdateCron']))];
    const workerDeps = {
      connection,
      redis,
      types,
      publicKey: publicKeys({ gateway: keys.gateway.publicKeyPem, schedule: keys.schedule.publicKeyPem }, registry),
      policy: { policy: sandboxPolicy, redis, agentRequestsPerHour: 3 },
      log,
      stepSigner: schedule,
      schedules: scheduleDefs,
    };
    const settings: WorkerSettings = {
      concurrency: 4,
      lockDurationMs: 30_000,
      stalledIntervalMs: 30_000,
      maxStalledCount: 5,
      maxAgeSeconds: 300,
      deferMs: options.fast ? 1000 : 10_000,
    };

    // The fleet queue's worker: this process is clawdinator-1's worker in the story.
    const fleetWorker = startWorker(FLEET_QUEUE, workerDeps, settings);
    cleanups.push(() => closeWorker(fleetWorker, log));

    // Every online host runs its own worker (its host queue) and publishes its heartbeat —
    // but an orphan (`/sim orphan`: launched outside any spawn) never bootstrapped, so none.
    const orphans = new Set<string>();
    const hosts = new Map<string, HostRuntime>();
    const stopHost = async (name: string) => {
      const runtime = hosts.get(name);
      if (runtime === undefined) return;
      hosts.delete(name);
      await closeWorker(runtime.worker, log);
      await runtime.heartbeat.stop();
    };
    // Each host's heartbeat, signed with the workers' key as a real host's worker signs its
    // own (through the fault registry's heartbeat writes), reports the revision it runs and
    // since when (as the worker reads its build info at every beat); a switch restarts the
    // worker, or leaves it down.
    const beat = (host: SimHost) =>
      startHeartbeat({
        redis: heartbeatWrites(redis, cloud),
        signer: schedule,
        host: host.name,
        instanceId: host.instanceId,
        version,
        revision: 'unknown',
        facts: async () => {
          const { revision, switchedAt } = cloud.hostRevision(host);
          return { revision, switchedAt };
        },
        ttlSeconds: HEARTBEAT_TTL_SECONDS,
        activeJobs: () =>
          (hosts.get(host.name)?.worker.active ?? 0) + (host.name === FIRST_HOST ? fleetWorker.active : 0),
        onError: (err) => log.warn({ host: host.name, err }, 'heartbeat failed'),
      });
    const onOnline = (host: SimHost) => {
      if (hosts.has(host.name) || orphans.has(host.instanceId)) return;
      const worker = startWorker(hostQueue(host.name), workerDeps, settings);
      hosts.set(host.name, { heartbeat: beat(host), worker });
      log.info({ host: host.name, instanceId: host.instanceId }, 'sandbox: host online');
    };
    const offSwitched = cloud.onHostSwitched(({ host, workerUp }) => {
      const runtime = hosts.get(host.name);
      if (runtime === undefined) return;
      const old = runtime.heartbeat;
      runtime.heartbeat = { stop: async () => {} };
      void old
        .stop()
        .then(() => {
          if (workerUp && hosts.get(host.name) === runtime) runtime.heartbeat = beat(host);
        })
        .catch((err) => log.warn({ err }, 'sandbox: heartbeat restart failed'));
    });
    cleanups.push(() => offSwitched());
    const offOnline = cloud.onHostOnline(onOnline);
    const offOffline = cloud.onHostOffline((host) => {
      void stopHost(host.name).catch((err) => log.warn({ err }, 'sandbox: host stop failed'));
    });
    cleanups.push(async () => {
      offOnline();
      offOffline();
      await Promise.all([...hosts.keys()].map(stopHost));
    });

    // The schedules, as every worker keeps them (one leader at a time; here there is one).
    const fleetQueue = new Queue(FLEET_QUEUE, { connection });
    cleanups.push(() => fleetQueue.close());
    const upsert = async () => {
      try {
        const r = await upsertSchedules({
          queue: fleetQueue,
          redis,
          signer: schedule,
          types,
          defs: scheduleDefs,
          workerId: `sandbox-${process.pid}`,
        });
        if (r.leader) log.info({ upserted: r.upserted, verified: r.verified }, 'schedules upserted');
      } catch (err) {
        log.warn({ err }, 'schedules not upserted');
      }
    };
    await upsert();
    const scheduleTimer = setInterval(upsert, SCHEDULE_CHECK_MS);
    cleanups.push(() => clearInterval(scheduleTimer));

    // The gateway's side: signed enqueues, recorded per line; the console relay.
    // --fast: a retry waits 0.2 s instead of the fleet's 5 s, as the cloud's delays are zero.
    const enqueuer = new Enqueuer(connection, redis, types, gateway, options.fast ? { retryDelayMs: 200 } : {});
    cleanups.push(() => enqueuer.close());
    const tracker = new JobTracker(async (jobId, queue) => {
      const job = await enqueuer.queue(queue).getJob(jobId);
      return job ? { state: await job.getState(), reason: job.failedReason || undefined } : null;
    });
    const deps: BotDeps = {
      memory,
      audit,
      policy: sandboxPolicy,
      log,
      attachmentOrigins: [],
      now: () => new Date(),
      // The gateway's key also signs answers to an agent's question (shown with /press ids).
      jobs: tracker.wrap(botJobs(enqueuer, { redis, signer: gateway, workersKey })),
      jobAdmin: tracker.wrapAdmin(
        botJobAdmin(
          enqueuer,
          new JobAdmin(connection, redis, () => existingQueueNames(redis), types, {
            publicKey: workerDeps.publicKey,
          }),
          sandboxPolicy,
        ),
      ),
      status: (detail) =>
        fleetStatus({
          registry,
          cloud,
          redis,
          workersKey,
          queues: [fleetQueue],
          now: () => cloud.clock.now(),
          detail,
        }),
      fleetNames: async () => Object.keys(await registry()),
      host: {
        doctor: (name) => doctorMember({ cloud, registry }, name),
        logs: (request) => memberLogs({ cloud, registry }, request),
      },
    };
    // The console has one command Discord never sees: /sim, failures and strays on purpose.
    const sim = simCommand({
      cloud,
      registry,
      ami: SANDBOX_AMI,
      instanceType: DEFAULT_INSTANCE_TYPE,
      onOrphan: (instanceId) => orphans.add(instanceId),
    });
    const dispatcher = createDispatcher([...commands, sim], deps, redisClaim(redis));
    const session = new ConsoleSession(dispatcher, actor, options.print);
    // The gateways' group exists before the first line runs, so no event of its jobs is missed.
    await redis.xgroup('CREATE', redisKeys.events, GATEWAY_GROUP, '$', 'MKSTREAM').catch((err: Error) => {
      if (!err.message.includes('BUSYGROUP')) throw err;
    });
    // As the gateway's relay: only events that verify, buttons only from a signed pending record.
    const relay = consumeEvents(
      createRedis(connection),
      {
        consumer: `sandbox-${process.pid}`,
        blockMs: 1000,
        trust: eventTrust({ gateway: keys.gateway.publicKeyPem, schedule: keys.schedule.publicKeyPem }),
      },
      async ({ event }) => {
        if (shown(event)) {
          const buttons = await eventButtons(redis, workersKey, event, event.reply?.channelId, Date.now());
          options.print(renderForConsole(event, buttons));
          session.shown(buttons.map((b) => b.id));
        }
        tracker.event(event);
      },
      (err) => log.warn({ err }, 'relay: event not rendered'),
      (streamId, reason) => log.warn({ streamId, reason }, 'relay: event dropped: it does not verify'),
    );
    cleanups.push(() => relay.stop());

    let stopped = false;
    return {
      dir,
      actor,
      redisUrl,
      ownRedis: own !== undefined,
      cloud,
      deps,
      session,
      registryPath,
      github: { url: github.url, org: SANDBOX_ORG },
      async runLine(line, runOptions = {}) {
        tracker.take();
        const handled = await session.attempt(line);
        const jobs = runOptions.waitMs === undefined ? [] : await tracker.wait(tracker.take(), runOptions.waitMs);
        // No result event (the job ended without one, or has not ended): say what is known.
        for (const end of jobs) if (end.kind === 'timeout' || end.kind === 'state') options.print(`⚠️ ${end.text}`);
        const jobsOk = jobs.every((j) => (j.kind === 'result' || j.kind === 'state' ? j.ok : j.kind === 'confirm'));
        const failures: LineFailure[] = [
          ...(handled.failure === undefined ? [] : [handled.failure]),
          ...jobs.flatMap((j): LineFailure[] =>
            (j.kind === 'result' || j.kind === 'state') && !j.ok ? [{ kind: 'failed', text: j.text }] : [],
          ),
        ];
        return { ok: handled.ok && jobsOk, jobs, ...(failures.length > 0 ? { failures } : {}) };
      },
      waitForJobs(timeoutMs) {
        return tracker.wait(tracker.take(), timeoutMs);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await runCleanups();
      },
    };
  } catch (err) {
    await runCleanups();
    throw err;
  }
}

/**
 * The simulated hosts' heartbeat writes, each one consulting the `heartbeat` fault: an armed
 * fault skips one write (as a host whose worker hangs or cannot reach Redis), so a script can
 * make a host go silent and watch the health sweep notice.
 */
function heartbeatWrites(redis: Redis, cloud: SimCloud): Redis {
  return new Proxy(redis, {
    get(target, prop) {
      if (prop === 'set') {
        return (...args: Parameters<Redis['set']>) => {
          const fault = cloud.faults.take('heartbeat');
          if (fault !== undefined)
            return Promise.reject(new Error(fault.message ?? 'heartbeat write skipped (/sim fail heartbeat)'));
          return (target.set as (...a: unknown[]) => unknown)(...args);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * Closes a worker, letting running jobs reach their next save point for a few seconds; a job
 * still running after that is left behind (BullMQ cannot force a close already under way, and
 * the sandbox's Redis keeps no data to resume it from anyway).
 */
async function closeWorker(worker: ReturnType<typeof startWorker>, log: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), 3000);
  });
  const outcome = await Promise.race([worker.close().then(() => 'closed' as const), timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') log.warn({ active: worker.active }, 'sandbox: worker stopped with jobs still running');
}

/**
 * What reaches the console: whatever the relay would render in Discord for this session —
 * replies to interactions and channel messages, alerts, confirmations. A scheduled run's
 * progress and result have no reply target and are not shown (the log has them).
 */
function shown(event: JobEvent): boolean {
  return event.kind === 'alert' || event.kind === 'confirm' || event.reply !== undefined;
}

function renderForConsole(event: JobEvent, buttons: Button[]): string {
  const reply: Reply = renderEvent(event, Date.now(), buttons);
  const lines: string[] = [];
  if (reply.content) lines.push(reply.content);
  for (const b of reply.buttons ?? []) lines.push(`[button ${b.label}] press with: /press ${b.id}`);
  return lines.join('\n');
}

/** The console's own help: the slash commands, and how buttons and forms are answered. */
export function helpText(): string {
  const width = Math.max(...commands.map((c) => c.data.name.length)) + 1;
  return [
    'Slash commands (options as name:value, values with spaces in "quotes"):',
    ...commands.map((c) => `  /${c.data.name.padEnd(width)} ${c.data.description}`),
    '  /sim fail <what> [times:N] [code:X]   the simulated world fails the next N times (console only)',
    '  /sim faults                     what can fail, and what is armed',
    '  /sim orphan <name>              an instance tagged as ours that the registry does not know',
    '  /press <button-id>              press a button that was shown',
    '  /press confirm                  press the last shown button with that word in its id',
    '  /submit <form-id> field=value   answer a form',
    '  help                            this text',
    '  exit                            stop the sandbox (Ctrl-D and Ctrl-C too)',
    'e.g. /status · /memory read path:ops.md · /memory write path:daily/notes.md content:"hello"',
  ].join('\n');
}
