// `clawdinator gateway`: the ops bot's Discord gateway. Runs until SIGTERM/SIGINT, then
// finishes the replies in flight and disconnects. With CLAWDINATOR_REDIS_URL it joins the
// fleet: interactions are claimed across gateways, jobs are enqueued signed with the
// gateway's key, workers' events are relayed to Discord, and /status answers.
import { hostname } from 'node:os';
import { Queue } from 'bullmq';
import { Command } from 'commander';
import { commands } from '../bot/commands/index.js';
import { botDepsFromConfig } from '../bot/deps.js';
import { attachmentOriginsFor, startGateway } from '../bot/discord/gateway.js';
import { createDispatcher } from '../bot/dispatch.js';
import { botJobAdmin, botJobs, redisClaim, TokenStore } from '../bot/engine.js';
import { startRelay } from '../bot/relay.js';
import { createAwsCloud } from '../jobs/cloud/aws.js';
import { existingQueueNames, JobAdmin } from '../jobs/engine/admin.js';
import { FLEET_QUEUE } from '../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../jobs/engine/queues.js';
import { connectionFrom, fileRegistry, signerFrom } from '../jobs/engine/setup.js';
import { createRedis } from '../jobs/redis.js';
import { fleetStatus } from '../jobs/status.js';
import { jobTypes } from '../jobs/types/index.js';
import { hasSetting, loadConfig, readSecretFile } from '../lib/config.js';
import { createLogger } from '../lib/log.js';

export function command(): Command {
  return new Command('gateway')
    .description('run the ops bot: log in to Discord and handle slash commands (never registers them)')
    .action(async () => {
      const config = loadConfig(['discordTokenFile', 'discordApiUrl', 'logLevel']);
      const token = readSecretFile(config.discordTokenFile, 'CLAWDINATOR_DISCORD_TOKEN_FILE');
      const log = createLogger(config.logLevel);
      const origins = attachmentOriginsFor(config.discordApiUrl);
      const deps = botDepsFromConfig(log, origins);
      const fleet = hasSetting('redisUrl')
        ? loadConfig([
            'redisUrl',
            'redisPasswordFile',
            'jobSigningKeyFile',
            'jobKeyId',
            'fleetRegistryPath',
            'awsRegion',
            'deployerRoleArn',
            'opsChannelId',
          ])
        : undefined;
      // Without Redis the gateway serves /memory alone; everything fleet-wide needs the engine.
      const engine = fleet && {
        connection: connectionFrom(fleet),
        registry: fileRegistry(fleet.fleetRegistryPath),
      };
      const redis = engine && createRedis(engine.connection);
      const enqueuer =
        engine &&
        redis &&
        fleet &&
        new Enqueuer(
          engine.connection,
          redis,
          new JobTypes(jobTypes({ redis, registry: engine.registry })),
          signerFrom(fleet),
        );
      const queue = engine && new Queue(FLEET_QUEUE, { connection: engine.connection });
      const tokens = redis && new TokenStore(redis);
      if (engine && redis && enqueuer && queue && fleet) {
        const cloud = createAwsCloud({ region: fleet.awsRegion, deployerRoleArn: fleet.deployerRoleArn });
        deps.jobs = botJobs(enqueuer);
        const types = new JobTypes(jobTypes({ redis, registry: engine.registry }));
        deps.jobAdmin = botJobAdmin(
          enqueuer,
          new JobAdmin(engine.connection, redis, () => existingQueueNames(redis), types),
        );
        deps.status = () => fleetStatus({ registry: engine.registry, cloud, redis, queues: [queue] });
      }

      const gateway = await startGateway({
        token,
        apiUrl: config.discordApiUrl,
        dispatcher: createDispatcher(commands, deps, redis ? redisClaim(redis) : undefined),
        attachmentOrigins: origins,
        log,
        tokens,
      });
      const relay =
        engine && tokens
          ? startRelay({
              redis: createRedis(engine.connection),
              rest: gateway.client.rest,
              tokens,
              consumer: `${hostname()}-${process.pid}`,
              opsChannelId: fleet?.opsChannelId,
              log,
            })
          : undefined;

      await new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve());
        process.once('SIGINT', () => resolve());
      });
      await gateway.stop();
      await relay?.stop();
      await enqueuer?.close();
      await queue?.close();
      redis?.disconnect();
    });
}
