// `clawdinator fleet …`: the fleet from a terminal. `fleet status [name] [--json]` prints
// the same view as /status; `--json` prints FleetStatus (jobs/status.ts), a stable shape.
import { Queue } from 'bullmq';
import { Command } from 'commander';
import { createAwsCloud } from '../jobs/cloud/aws.js';
import { FLEET_QUEUE } from '../jobs/engine/keys.js';
import { connectionFrom, fileRegistry } from '../jobs/engine/setup.js';
import { createRedis } from '../jobs/redis.js';
import { fleetStatus, formatMember, formatStatus } from '../jobs/status.js';
import { loadConfig } from '../lib/config.js';
import { UsageError } from '../lib/errors.js';

export function command(): Command {
  const fleet = new Command('fleet').description(
    'the fleet: status (spawn, retire, replace, update come with the lifecycle jobs)',
  );
  fleet
    .command('status')
    .description('each member from the registry, EC2, SSM and its heartbeat; queue counts; next scheduled runs')
    .argument('[name]', 'one member in detail')
    .option('--json', 'print the FleetStatus JSON (see jobs/status.ts)')
    .action(async (name: string | undefined, opts: { json?: boolean }) => {
      const config = loadConfig(['redisUrl', 'redisPasswordFile', 'fleetRegistryPath', 'awsRegion', 'deployerRoleArn']);
      const connection = connectionFrom(config);
      const redis = createRedis(connection);
      const queue = new Queue(FLEET_QUEUE, { connection });
      try {
        const status = await fleetStatus({
          registry: fileRegistry(config.fleetRegistryPath),
          cloud: createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn }),
          redis,
          queues: [queue],
        });
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify(name ? status.members.filter((m) => m.name === name) : status, null, 2)}\n`,
          );
          return;
        }
        const text = name ? formatMember(status, name) : formatStatus(status);
        if (text === null) throw new UsageError(`${name} is not in the fleet registry`);
        process.stdout.write(`${text.replace(/\*\*/g, '')}\n`);
      } finally {
        await queue.close();
        redis.disconnect();
      }
    });
  return fleet;
}
