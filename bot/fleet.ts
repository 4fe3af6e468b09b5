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
import {
  connectionFrom,
  eventTrust,
  publicKeys,
  registryReader,
  signerFrom,
  workersPublicKey,
} from '../jobs/engine/setup.js';
import { doctorMember, type HostOpsDeps, memberLogs } from '../jobs/host/ops.js';
import { createRedis } from '../jobs/redis.js';
import { parsePublicKey } from '../jobs/signing.js';
import { fleetStatus } from '../jobs/status.js';
import { jobTypes } from '../jobs/types/index.js';
import { hasSetting, loadConfig, readSecretFile } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Claim } from './dispatch.js';
import { botJobAdmin, botJobs, JobMessages, redisClaim, TokenStore } from './engine.js';
import { startRelay } from './relay.js';
import type { RequestSocket } from './request-socket.js';
import type { BotDeps, HostOps } from './types.js';

/** /doctor and /logs over a cloud and the registry (the gateway's, the sandbox's). */
export function hostOps(deps: HostOpsDeps): HostOps {
  return { doctor: (name) => doctorMember(deps, name), logs: (request) => memberLogs(deps, request) };
}

export interface FleetLink {
  claim: Claim;
  tokens: TokenStore;
  /** Starts relaying events once the Discord client can talk (it needs its REST client). */
  startRelay(rest: REST): void;
  /**
   * Serves this host's agent's requests on the request socket (bot/request-socket.ts) when
   * CLAWDINATOR_AGENT_PUBLIC_KEY_FILE is set; false when it is not.
   */
  serveAgentRequests(): Promise<boolean>;
  close(): Promise<void>;
}

/** Joins the gateway to the fleet: fills `deps.jobs`, `deps.jobAdmin` and `deps.status`. */
export function joinFleet(deps: BotDeps, log: Logger): FleetLink {
  const config = loadConfig([
    'redisUrl',
    'redisPasswordFile',
    'jobSigningKeyFile',
    'jobKeyId',
    'jobPublicKeys',
    'fleetRegistryPath',
    'fleetRegistryBackend',
    'awsRegion',
    'deployerRoleArn',
    'opsChannelId',
    'instanceTypes',
    'modelPrices',
  ]);
  const connection = connectionFrom(config);
  const redis = createRedis(connection);
  const registry = registryReader(config, { log });
  const types = new JobTypes(jobTypes({ redis, registry, instanceTypes: config.instanceTypes }));
  const signer = signerFrom(config);
  // Heartbeats, the workers' events and their questions' pending records verify against it.
  const workersKey = workersPublicKey(config.jobPublicKeys);
  const enqueuer = new Enqueuer(connection, redis, types, signer);
  // Retries verify the original's signature (agents' keys from the registry).
  const admin = new JobAdmin(connection, redis, () => existingQueueNames(redis), types, {
    publicKey: publicKeys(config.jobPublicKeys, registry),
  });
  const queue = new Queue(FLEET_QUEUE, { connection });
  const cloud = createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn });
  const tokens = new TokenStore(redis, signer);
  // The gateway's key also signs a human's answer to an agent's request.
  deps.jobs = botJobs(enqueuer, { redis, signer, workersKey });
  deps.jobAdmin = botJobAdmin(enqueuer, admin, deps.policy);
  deps.status = (detail) =>
    fleetStatus({ registry, cloud, redis, workersKey, queues: [queue], prices: config.modelPrices, detail });
  deps.fleetNames = async () => Object.keys(await registry());
  // /doctor and /logs: the member's host over SSM, through the deployer role like /status.
  deps.host = hostOps({ cloud, registry });
  let relay: { stop(): Promise<void> } | undefined;
  let requests: RequestSocket | undefined;
  return {
    claim: redisClaim(redis),
    tokens,
    startRelay(rest) {
      relay = startRelay({
        redis: createRedis(connection),
        trust: eventTrust(config.jobPublicKeys, signer),
        workersKey,
        rest,
        tokens,
        messages: new JobMessages(redis, signer),
        consumer: `${hostname()}-${process.pid}`,
        opsChannelId: config.opsChannelId,
        log,
      });
    },
    async serveAgentRequests() {
      if (!hasSetting('agentPublicKeyFile')) return false;
      const settings = loadConfig([
        'hostName',
        'agentPublicKeyFile',
        'requestSocket',
        'jobMaxAgeSeconds',
        'agentRequestsPerHour',
      ]);
      const keyFile = settings.agentPublicKeyFile as string;
      const agentKey = parsePublicKey(readSecretFile(keyFile, 'CLAWDINATOR_AGENT_PUBLIC_KEY_FILE'));
      if (agentKey === null) {
        throw new ConfigError(
          `config: CLAWDINATOR_AGENT_PUBLIC_KEY_FILE names ${keyFile}, which is not an Ed25519 public key`,
        );
      }
      const { startRequestSocket } = await import('./request-socket.js');
      requests = await startRequestSocket({
        path: settings.requestSocket,
        host: settings.hostName,
        agentKey,
        enqueuer,
        types,
        redis,
        connection,
        maxAgeSeconds: settings.jobMaxAgeSeconds,
        agentRequestsPerHour: settings.agentRequestsPerHour,
        log,
      });
      return true;
    },
    async close() {
      await requests?.close();
      await relay?.stop();
      await enqueuer.close();
      await admin.close();
      await queue.close();
      redis.disconnect();
    },
  };
}
