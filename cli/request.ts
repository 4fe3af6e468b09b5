// `clawdinator request <action> <name>`: an agent's way to ask for a fleet action. It signs
// with the host's agent key (CLAWDINATOR_JOB_KEY_ID=agent:<host>), so the workers apply the
// agent policy: peers only, never itself, within the hourly rate; a replace or retire asked
// by an agent waits for a human's confirmation in the ops channel. The request is queued
// and this command returns; its outcome is posted to the ops channel.
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { Enqueuer, JobTypes } from '../jobs/engine/queues.js';
import { connectionFrom, registryReader, signerFrom } from '../jobs/engine/setup.js';
import { createRedis } from '../jobs/redis.js';
import { jobTypes } from '../jobs/types/index.js';
import { instanceName, loadConfig } from '../lib/config.js';
import { ConfigError, UsageError } from '../lib/errors.js';

const ACTIONS = ['spawn', 'replace', 'retire'] as const;

export function command(): Command {
  return new Command('request')
    .description('ask the fleet for an action on a peer, as this host’s agent (spawn, replace, retire)')
    .argument('<action>', ACTIONS.join(' | '))
    .argument('<name>', 'the peer, e.g. clawdinator-3')
    .action(async (action: string, name: string) => {
      if (!(ACTIONS as readonly string[]).includes(action))
        throw new UsageError(`unknown action "${action}": ${ACTIONS.join(', ')}`);
      if (!instanceName.safeParse(name).success)
        throw new UsageError(`"${name}" is not a fleet name (clawdinator-[a-z0-9-])`);
      const config = loadConfig([
        'redisUrl',
        'redisPasswordFile',
        'jobSigningKeyFile',
        'jobKeyId',
        'fleetRegistryPath',
        'fleetRegistryBackend',
        'opsChannelId',
      ]);
      if (!config.jobKeyId.startsWith('agent:')) {
        throw new ConfigError(
          'config: CLAWDINATOR_JOB_KEY_ID must be agent:<host> for a request (it is signed as this host’s agent)',
        );
      }
      const host = config.jobKeyId.slice('agent:'.length);
      const connection = connectionFrom(config);
      const redis = createRedis(connection);
      // Only enqueues: never reads the registry, and the agent's user cannot read the App key.
      const registry = registryReader(config, { lazyKey: true });
      const enqueuer = new Enqueuer(connection, redis, new JobTypes(jobTypes({ redis, registry })), signerFrom(config));
      try {
        const result = await enqueuer.enqueue({
          type: action,
          data: { name },
          principal: { kind: 'agent', host },
          requestId: `agent-${randomBytes(9).toString('base64url')}`,
          reply: config.opsChannelId ? { channelId: config.opsChannelId } : undefined,
        });
        // A retire or replace is asked in the ops channel first: a human answers it there.
        const asks = action === 'spawn' ? '' : ', after a human confirms it there';
        process.stdout.write(`queued ${result.jobId}; the outcome goes to the ops channel${asks}\n`);
      } finally {
        await enqueuer.close();
        redis.disconnect();
      }
    });
}
