// `clawdinator worker`: runs the processors of every job type (the fleet queue and this
// host's own queue), keeps the fleet's schedules (upserted by one leader at a time) and this
// host's own (its agent's GitHub token refresh, when the GitHub App is configured), and
// publishes this host's heartbeat. On SIGTERM it stops taking jobs, lets running steps reach
// a save point, and closes its connections.
import { hostname } from 'node:os';
import { Queue } from 'bullmq';
import { Command } from 'commander';
import { auditTrailFromConfig } from '../jobs/audit.js';
import { Imds, imdsEndpoint } from '../jobs/bootstrap/identity.js';
import { startHeartbeat } from '../jobs/engine/heartbeat.js';
import { hostFacts, INSTANCE_ID_UNAVAILABLE } from '../jobs/engine/host-facts.js';
import { FLEET_QUEUE, hostQueue, keys } from '../jobs/engine/keys.js';
import { JobTypes } from '../jobs/engine/queues.js';
import { fleetSchedules, upsertSchedules } from '../jobs/engine/schedulers.js';
import { connectionFrom, publicKeys, registryReader, signerFrom } from '../jobs/engine/setup.js';
import { startWorker } from '../jobs/engine/worker.js';
import { githubJobDeps, hostSchedules, tokenAtStart } from '../jobs/github/setup.js';
import { createRedis } from '../jobs/redis.js';
import { jobTypes } from '../jobs/types/index.js';
import { loadConfig } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { stopRequested } from '../lib/signals.js';
import { version } from '../lib/version.js';
import { MemoryStore } from '../memory/store.js';
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
      const github = githubJobDeps(config.hostName, memory, {}, log);
      const fleet = await fleetDeps(log);
      if (fleet === undefined)
        log.warn('CLAWDINATOR_BOOTSTRAP_BUCKET or CLAWDINATOR_STATE_BUCKET unset: lifecycle jobs will fail');
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
        }),
      );
      const signer = signerFrom(config);
      // The same definitions on every host: the leader upserts them, every worker admits their runs by them.
      const schedules = fleetSchedules({ healthSweepMs: config.healthSweepSeconds * 1000 });
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
        schedules,
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
      const heartbeat = startHeartbeat({
        redis,
        signer,
        host: config.hostName,
        instanceId: opts.instanceId ?? INSTANCE_ID_UNAVAILABLE,
        version,
        revision: opts.revision ?? 'unknown',
        facts: hostFacts({
          instanceId: opts.instanceId,
          revision: opts.revision,
          imds: new Imds(imdsEndpoint(config.imdsUrl)),
          buildInfoFile: config.buildInfoFile,
          memoryDir: config.memoryDir,
          onUnavailable: (reason) =>
            log.warn({ reason }, 'instance id unavailable: the heartbeat says so until IMDS answers'),
        }),
        ttlSeconds: config.heartbeatTtlSeconds,
        activeJobs: () => workers.reduce((n, w) => n + w.active, 0),
        onError: (err) => log.warn({ err }, 'heartbeat failed'),
      });
      const fleetQueue = new Queue(FLEET_QUEUE, { connection });
      const ownQueue = new Queue(hostQueue(config.hostName), { connection });
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
