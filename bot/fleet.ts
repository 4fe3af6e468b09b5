// The gateway joined to the fleet (when CLAWDINATOR_REDIS_URL is set): interactions claimed
// in Redis, jobs enqueued signed with the gateway's key, /jobs and /status answered, and the
// workers' events relayed to Discord. Loaded only then, so a gateway without Redis does not
// pay for BullMQ and the job engine.
import { hostname } from 'node:os';
import { Queue } from 'bullmq';
import type { REST } from 'discord.js';
import { createAwsCloud } from '../jobs/cloud/aws.js';
import { existingQueueNames, JobAdmin } from '../jobs/engine/admin.js';
import { FLEET_QUEUE } from '../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../jobs/engine/queues.js';
import { connectionFrom, registryReader, signerFrom } from '../jobs/engine/setup.js';
import { createRedis } from '../jobs/redis.js';
import { fleetStatus } from '../jobs/status.js';
import { jobTypes } from '../jobs/types/index.js';
import { loadConfig } from '../lib/config.js';
import type { Logger } from '../lib/log.js';
import type { Claim } from './dispatch.js';
import { botJobAdmin, botJobs, JobMessages, redisClaim, TokenStore } from './engine.js';
import { startRelay } from './relay.js';
import type { BotDeps } from './types.js';

export interface FleetLink {
  claim: Claim;
  tokens: TokenStore;
  /** Starts relaying events once the Discord client can talk (it needs its REST client). */
  startRelay(rest: REST): void;
  close(): Promise<void>;
}

/** Joins the gateway to the fleet: fills `deps.jobs`, `deps.jobAdmin` and `deps.status`. */
export function joinFleet(deps: BotDeps, log: Logger): FleetLink {
  const config = loadConfig([
    'redisUrl',
    'redisPasswordFile',
    'jobSigningKeyFile',
    'jobKeyId',
    'fleetRegistryPath',
    'fleetRegistryBackend',
    'awsRegion',
    'deployerRoleArn',
    'opsChannelId',
  ]);
  const connection = connectionFrom(config);
  const redis = createRedis(connection);
  const registry = registryReader(config, { log });
  const types = new JobTypes(jobTypes({ redis, registry }));
  const signer = signerFrom(config);
  const enqueuer = new Enqueuer(connection, redis, types, signer);
  const admin = new JobAdmin(connection, redis, () => existingQueueNames(redis), types);
  const queue = new Queue(FLEET_QUEUE, { connection });
  const cloud = createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn });
  const tokens = new TokenStore(redis);
  // The gateway's key also signs a human's answer to an agent's request.
  deps.jobs = botJobs(enqueuer, { redis, signer });
  deps.jobAdmin = botJobAdmin(enqueuer, admin);
  deps.status = () => fleetStatus({ registry, cloud, redis, queues: [queue] });
  deps.fleetNames = async () => Object.keys(await registry());
  let relay: { stop(): Promise<void> } | undefined;
  return {
    claim: redisClaim(redis),
    tokens,
    startRelay(rest) {
      relay = startRelay({
        redis: createRedis(connection),
        rest,
        tokens,
        messages: new JobMessages(redis),
        consumer: `${hostname()}-${process.pid}`,
        opsChannelId: config.opsChannelId,
        log,
      });
    },
    async close() {
      await relay?.stop();
      await enqueuer.close();
      await admin.close();
      await queue.close();
      redis.disconnect();
    },
  };
}
