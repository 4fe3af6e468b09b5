// `clawdinator model-proxy`: the agent runtime's way to the model providers (jobs/proxy/),
// run by the control plane's user on every host. It adds the keys only that user reads,
// counts each response's tokens for this member in Redis, and posts one alert in the ops
// channel the first time a day's estimated cost crosses CLAWDINATOR_MODEL_DAILY_BUDGET_USD.
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { PROVIDER_SPECS, type ProxyRoute, startModelProxy } from '../jobs/proxy/server.js';
import { createRedis, redisOptions } from '../jobs/redis.js';
import { UsageBatcher } from '../jobs/usage.js';
import type { ProxyProvider } from '../lib/agent-config.js';
import { loadConfig, readSecretFile } from '../lib/config.js';
import { errorLine } from '../lib/errors.js';
import { createLogger } from '../lib/log.js';
import { stopRequested } from '../lib/signals.js';

/** How long usage waits in the proxy before it is written (one Redis round trip per interval). */
const USAGE_FLUSH_MS = 250;

export function command(): Command {
  return new Command('model-proxy')
    .description('serve the agent runtime’s model requests on a loopback port, adding the keys and metering usage')
    .action(async () => {
      const stop = stopRequested();
      const config = loadConfig([
        'hostName',
        'redisUrl',
        'redisPasswordFile',
        'modelProxyPort',
        'anthropicApiKeyFile',
        'openaiApiKeyFile',
        'modelUpstreams',
        'logLevel',
      ]);
      const log = createLogger(config.logLevel).child({ host: config.hostName, unit: 'model-proxy' });
      const keyFiles: Record<ProxyProvider, [string | undefined, string]> = {
        anthropic: [config.anthropicApiKeyFile, 'CLAWDINATOR_ANTHROPIC_API_KEY_FILE'],
        openai: [config.openaiApiKeyFile, 'CLAWDINATOR_OPENAI_API_KEY_FILE'],
      };
      const routes: Partial<Record<ProxyProvider, ProxyRoute>> = {};
      for (const [provider, [file, setting]] of Object.entries(keyFiles) as [
        ProxyProvider,
        [string | undefined, string],
      ][]) {
        // An optional secret the bootstrap found no value for leaves no file: that provider is
        // answered 503 until it has one (and this unit restarts).
        if (file === undefined || !existsSync(file)) {
          log.warn({ provider }, 'no key: requests for this provider are refused');
          continue;
        }
        const origin = new URL(config.modelUpstreams[provider] ?? PROVIDER_SPECS[provider].defaultOrigin);
        routes[provider] = { origin, key: readSecretFile(file, setting) };
      }

      const redis = createRedis(redisOptions(config));
      const member = config.hostName;
      const usage = new UsageBatcher({
        redis,
        member,
        flushMs: USAGE_FLUSH_MS,
        onError: (err) => log.warn({ err: errorLine(err) }, 'usage not recorded'),
      });
      const proxy = await startModelProxy({
        port: config.modelProxyPort,
        routes,
        onUsage: (u) => usage.add(u),
        onRefused: (line) => log.info({ refused: line }, 'request refused'),
      });
      log.info({ port: proxy.port, providers: Object.keys(routes) }, 'model proxy ready');
      await stop;
      await proxy.close();
      await usage.flush();
      redis.disconnect();
      log.info('model proxy stopped');
    });
}
