// `clawdinator worker`: runs the processors of every job type (the fleet queue and this
// host's own queue), keeps the fleet's schedules (upserted by one leader at a time) and this
// host's own (its agent's GitHub token refresh, when the GitHub App is configured), and
// publishes this host's heartbeat. On SIGTERM it stops taking jobs, lets running steps reach
// a save point, and closes its connections.
import { hostname } from 'node:os';
import { Queue } from 'bullmq';
import { Command } from 'commander';
import { amiSchedules } from '../jobs/ami/deps.js';
import { auditTrailFromConfig } from '../jobs/audit.js';
import { Imds, imdsEndpoint } from '../jobs/bootstrap/identity.js';
import { publishBuildInfo, readBuildInfoFile } from '../jobs/build-info.js';
import { startHeartbeat } from '../jobs/engine/heartbeat.js';
import { hostFacts, INSTANCE_ID_UNAVAILABLE } from '../jobs/engine/host-facts.js';
import { FLEET_QUEUE, hostQueue, keys } from '../jobs/engine/keys.js';
import { publish } from '../jobs/engine/notify.js';
import { JobTypes } from '../jobs/engine/queues.js';
import { fleetSchedules, upsertSchedules } from '../jobs/engine/schedulers.js';
import { connectionFrom, publicKeys, registryReader, signerFrom } from '../jobs/engine/setup.js';
import { startWorker } from '../jobs/engine/worker.js';
import { fastLaneSchedules } from '../jobs/fastlane/deps.js';
import { githubJobDeps, hostSchedules, tokenAtStart } from '../jobs/github/setup.js';
import { createRedis } from '../jobs/redis.js';
import { jobTypes } from '../jobs/types/index.js';
import { crossedBudget, type DayUsage, readUsage, utcDay } from '../jobs/usage.js';
import { loadConfig } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { stopRequested } from '../lib/signals.js';
import { version } from '../lib/version.js';
import { MemoryStore } from '../memory/store.js';
import { amiDeps } from './ami-deps.js';
import { fastLaneDeps } from './fastlane-deps.js';
import { fleetDeps } from './fleet-deps.js';

const SCHEDULE_CHECK_MS = 60_000;

export function command(): Command {
  return new Command('worker')
    .description('run the fleet’s jobs, schedules and this host’s heartbeat until SIGTERM')
    .option('--instance-id <id>', 'this host’s EC2 instance id, for the heartbeat (default: from IMDSv2)')
    .option('--revision <rev>', 'the deployed revision, for the heartbeat (default: the host’s build info)')
    .action(async (opts: { instanceId?: string; revision?: string }) => {
      const stop = stopRequested();
      const config = loadConfig([
        'redisUrl',
        'redisPasswordFile',
        'hostName',
        'jobSigningKeyFile',
        'jobKeyId',
        'jobPublicKeys',
        'jobMaxAgeSeconds',
        'jobLockDurationMs',
        'jobStalledIntervalMs',
        'jobMaxStalledCount',
        'jobConcurrency',
        'heartbeatTtlSeconds',
        'healthSweepSeconds',
        'opsChannelId',
        'modelPrices',
        'modelDailyBudgetUsd',
        'agentRequestsPerHour',
        'agentConfirmSeconds',
        'authorization',
        'fleetRegistryPath',
        'fleetRegistryBackend',
        'logLevel',
        'memoryDir',
        'memoryMaxBytes',
        'memoryLockWaitSeconds',
        'imdsUrl',
        'buildInfoFile',
        'instanceTypes',
      ]);
      if (config.jobKeyId !== 'schedule') {
        throw new ConfigError(
          'config: CLAWDINATOR_JOB_KEY_ID must be "schedule" for a worker (it signs the schedules)',
        );
      }
      const log = createLogger(config.logLevel).child({ host: config.hostName });
      const connection = connectionFrom(config);
      const redis = createRedis(connection);
      const registry = registryReader(config, { log });
      const memory = new MemoryStore({
        root: config.memoryDir,
        maxBytes: config.memoryMaxBytes,
        waitSeconds: config.memoryLockWaitSeconds,
      });
      // Lifecycle outcomes: the journal, s3://<bootstrap bucket>/audit/…, the memory copy.
      const audit = auditTrailFromConfig(memory, log);
      // The org sync and this host's agent token, when the GitHub App is configured here.
      const github = await githubJobDeps(config.hostName, memory, {}, log);
      const fleet = await fleetDeps(log);
      if (fleet === undefined)
        log.warn('CLAWDINATOR_BOOTSTRAP_BUCKET or CLAWDINATOR_STATE_BUCKET unset: lifecycle jobs will fail');
      const signer = signerFrom(config);
      // This host builds images for the fleet's rebuilds, and asks a peer to build for its own.
      const ami = await amiDeps({
        cloud: fleet?.cloud,
        hostName: config.hostName,
        hostJobs: { connection, signer },
        log,
      });
      if (ami === undefined)
        log.warn('CLAWDINATOR_PROJECT_REPO or CLAWDINATOR_BOOTSTRAP_BUCKET unset: image jobs will fail');
      // This host deploys its peers, and leaves its own switch to a peer's worker.
      const lane = await fastLaneDeps({ cloud: fleet?.cloud, hostName: config.hostName, log });
      if (lane === undefined) log.warn('CLAWDINATOR_PROJECT_REPO unset: deploys will fail');
      const types = new JobTypes(
        jobTypes({
          redis,
          registry,
          opsChannelId: config.opsChannelId,
          agentConfirmSeconds: config.agentConfirmSeconds,
          memory,
          audit,
          fleet,
          instanceTypes: config.instanceTypes,
          github,
          ami,
          lane,
        }),
      );
      // The same definitions on every host: the leader upserts them, every worker admits their
      // runs by them. With the weekly image prune, and the image rebuild and the self-update
      // when their crons are set.
      const schedules = [
        ...fleetSchedules({ healthSweepMs: config.healthSweepSeconds * 1000 }),
        ...amiSchedules(loadConfig(['amiPruneCron', 'amiRebuildCron'])),
        ...fastLaneSchedules(loadConfig(['selfUpdateCron'])),
      ];
      const deps = {
        connection,
        redis,
        types,
        publicKey: publicKeys(config.jobPublicKeys, registry),
        policy: { policy: config.authorization, redis, agentRequestsPerHour: config.agentRequestsPerHour },
        log,
        // Never deploy yourself: a job about this host is left to a peer's worker.
        host: { name: config.hostName, peers: async () => Object.keys(await registry()) },
        // The workers' key (CLAWDINATOR_JOB_KEY_ID=schedule) also signs each save of step results.
        stepSigner: signer,
        // Runs admitted: the fleet's schedules and this host's own (its agent's token refresh).
        schedules: [...schedules, ...hostSchedules(github)],
      };
      const settings = {
        concurrency: config.jobConcurrency,
        lockDurationMs: config.jobLockDurationMs,
        stalledIntervalMs: config.jobStalledIntervalMs,
        maxStalledCount: config.jobMaxStalledCount,
        maxAgeSeconds: config.jobMaxAgeSeconds,
        deferMs: 10_000,
      };
      const workers = [
        startWorker(FLEET_QUEUE, deps, settings),
        startWorker(hostQueue(config.hostName), deps, settings),
      ];
      const facts = hostFacts({
        instanceId: opts.instanceId,
        revision: opts.revision,
        imds: new Imds(imdsEndpoint(config.imdsUrl)),
        buildInfoFile: config.buildInfoFile,
        memoryDir: config.memoryDir,
        onUnavailable: (reason) =>
          log.warn({ reason }, 'instance id unavailable: the heartbeat says so until IMDS answers'),
      });
      // What this host was built from, for /status name: on any gateway (re-read each beat: a
      // switch changes it without restarting the worker).
      const shareBuildInfo = async () => {
        try {
          const info = await readBuildInfoFile(config.buildInfoFile);
          if (info !== null) await publishBuildInfo(redis, config.hostName, info, config.heartbeatTtlSeconds * 3);
        } catch (err) {
          log.warn({ err }, 'build info not shared');
        }
      };
      // The daily model budget: the worker, not the model proxy, posts the alert — the proxy
      // faces the agent and holds no signing key; the worker signs it with the workers' key.
      const budgetAlert = async (usage: DayUsage) => {
        const budget = config.modelDailyBudgetUsd;
        if (budget === undefined) return;
        try {
          const crossed = await crossedBudget(redis, config.hostName, usage, config.modelPrices, budget);
          if (crossed === null) return;
          log.warn({ costUsd: crossed.costUsd, budgetUsd: budget }, 'daily model budget crossed');
          await publish(redis, signer, {
            kind: 'alert',
            type: 'model-usage',
            text: `${config.hostName} spent an estimated $${(crossed.costUsd ?? 0).toFixed(2)} on models today (${usage.day} UTC), over the daily budget of $${budget.toFixed(2)}`,
            reply: config.opsChannelId === undefined ? undefined : { channelId: config.opsChannelId },
          });
        } catch (err) {
          log.warn({ err }, 'budget alert not posted');
        }
      };
      const heartbeat = startHeartbeat({
        redis,
        signer,
        host: config.hostName,
        instanceId: opts.instanceId ?? INSTANCE_ID_UNAVAILABLE,
        version,
        revision: opts.revision ?? 'unknown',
        facts: async () => {
          const [found, usage] = await Promise.all([
            facts(),
            // Today's model usage as this host's model proxy counted it; a failed read leaves it out.
            readUsage(redis, config.hostName, utcDay(Date.now())).catch(() => undefined),
            shareBuildInfo(),
          ]);
          if (usage === undefined) return found;
          await budgetAlert(usage);
          return { ...found, usage };
        },
        ttlSeconds: config.heartbeatTtlSeconds,
        activeJobs: () => workers.reduce((n, w) => n + w.active, 0),
        onError: (err) => log.warn({ err }, 'heartbeat failed'),
      });
      // The schedulers' queues, through the worker's own client (no connection of their own).
      const fleetQueue = new Queue(FLEET_QUEUE, { connection: redis });
      const ownQueue = new Queue(hostQueue(config.hostName), { connection: redis });
      const workerId = `${config.hostName}-${hostname()}-${process.pid}`;
      const schedule = async () => {
        try {
          const r = await upsertSchedules({ queue: fleetQueue, redis, signer, types, defs: schedules, workerId });
          if (r.leader) log.info({ upserted: r.upserted, verified: r.verified }, 'schedules upserted');
          // This host's own schedules (its agent's token refresh), upserted by its worker alone.
          const own = await upsertSchedules({
            queue: ownQueue,
            redis,
            signer,
            types,
            defs: hostSchedules(github),
            workerId,
            leaseKey: keys.hostSchedulerLeader(config.hostName),
          });
          if (own.upserted.length + own.removed.length > 0) {
            log.info(
              { upserted: own.upserted, removed: own.removed, verified: own.verified },
              'host schedules upserted',
            );
          }
        } catch (err) {
          log.warn({ err }, 'schedules not upserted');
        }
      };
      await schedule();
      void tokenAtStart(github, log);
      const timer = setInterval(schedule, SCHEDULE_CHECK_MS);
      log.info({ queues: [FLEET_QUEUE, hostQueue(config.hostName)] }, 'worker ready');

      await stop;
      clearInterval(timer);
      // Worker.close() waits for running jobs: steps save as they go, so a job resumes here
      // or on a peer at its last completed step.
      await Promise.all(workers.map((w) => w.close()));
      await heartbeat.stop();
      await fleetQueue.close();
      await ownQueue.close();
      redis.disconnect();
      log.info('worker stopped');
    });
}
