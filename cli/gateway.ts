// `clawdinator gateway`: the ops bot's Discord gateway. Runs until SIGTERM/SIGINT, then
// finishes the replies in flight and disconnects. With CLAWDINATOR_REDIS_URL it joins the
// fleet (bot/fleet.ts); without, it serves /memory alone. Joined, and with this host's agent's
// public key (CLAWDINATOR_AGENT_PUBLIC_KEY_FILE), it also serves the agent's request socket.
import { Command } from 'commander';
import { commands } from '../bot/commands/index.js';
import { botDepsFromConfig } from '../bot/deps.js';
import { attachmentOriginsFor, startGateway } from '../bot/discord/gateway.js';
import { createDispatcher } from '../bot/dispatch.js';
import { hasSetting, loadConfig, readSecretFile } from '../lib/config.js';
import { createLogger } from '../lib/log.js';
import { stopRequested } from '../lib/signals.js';

export function command(): Command {
  return new Command('gateway')
    .description('run the ops bot: log in to Discord and handle slash commands (never registers them)')
    .action(async () => {
      const stop = stopRequested();
      const config = loadConfig(['discordTokenFile', 'discordApiUrl', 'logLevel']);
      const token = readSecretFile(config.discordTokenFile, 'CLAWDINATOR_DISCORD_TOKEN_FILE');
      const log = createLogger(config.logLevel);
      const origins = attachmentOriginsFor(config.discordApiUrl);
      const deps = botDepsFromConfig(log, origins);
      const fleet = hasSetting('redisUrl') ? (await import('../bot/fleet.js')).joinFleet(deps, log) : undefined;
      // This host's agent asks for fleet actions through the gateway (it holds no Redis credential).
      await fleet?.serveAgentRequests();
      const gateway = await startGateway({
        token,
        apiUrl: config.discordApiUrl,
        dispatcher: createDispatcher(commands, deps, fleet?.claim),
        attachmentOrigins: origins,
        log,
        tokens: fleet?.tokens,
      });
      fleet?.startRelay(gateway.client.rest);
      await stop;
      await gateway.stop();
      await fleet?.close();
    });
}
