// The ops bot's gateway: the real discord.js client, interactions handed to the dispatcher.
// Registration is a separate step (`register-commands`), never done here. On stop, new
// interactions are ignored (another gateway of the fleet answers them) and the ones in
// flight finish their replies before the client disconnects.
import { Client, Events, GatewayIntentBits, type Interaction, Options } from 'discord.js';
import type { Logger } from '../../lib/log.js';
import type { Dispatcher } from '../dispatch.js';
import type { TokenStore } from '../engine.js';
import { invocationOf, NO_MENTIONS, responderFor } from './adapter.js';

export interface GatewayOptions {
  token: string;
  /** Discord's REST base URL; the gateway URL then comes from GET /gateway/bot. */
  apiUrl: string;
  dispatcher: Dispatcher;
  attachmentOrigins: string[];
  log: Logger;
  /** Where interaction tokens are kept for the relay, when the job engine is configured. */
  tokens?: TokenStore;
}

export interface Gateway {
  client: Client;
  stop(graceMs?: number): Promise<void>;
}

export const DISCORD_API_URL = 'https://discord.com/api';

/** Where attachments may be downloaded from: Discord's CDN, plus a configured proxy or stand-in. */
export function attachmentOriginsFor(apiUrl: string): string[] {
  const origins = ['https://cdn.discordapp.com', 'https://media.discordapp.net'];
  const own = new URL(apiUrl).origin;
  return own === new URL(DISCORD_API_URL).origin ? origins : [...origins, own];
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { dispatcher, log } = options;
  // No mentions by default too, for any message sent past the adapter (see NO_MENTIONS).
  const client = new Client({
    intents: [GatewayIntentBits.Guilds],
    rest: { api: options.apiUrl },
    allowedMentions: NO_MENTIONS,
    // No message cache: the gateway never reads one (replies are edited by interaction
    // token, the relay's messages by id over REST), and by default every reply it edits is
    // kept, 200 per channel — objects that outlive a scavenge, fill the old generation and
    // are marked on the main thread, pausing interactions for milliseconds.
    makeCache: Options.cacheWithLimits({ ...Options.DefaultMakeCacheSettings, MessageManager: 0 }),
  });
  const inFlight = new Set<Promise<void>>();
  let stopping = false;

  client.on(Events.InteractionCreate, (interaction: Interaction) => {
    if (stopping) return;
    const inv = invocationOf(interaction, options.attachmentOrigins);
    if (inv === null) return;
    const task = dispatcher
      .handle(inv, responderFor(interaction, options.tokens))
      .catch((err) => log.error({ err, interaction: interaction.id }, 'interaction failed'))
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
  });
  client.on(Events.Error, (err) => log.error({ err }, 'discord client error'));

  // Listen before login: against a fast server, ready can come before login() resolves.
  const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
  await client.login(options.token);
  await ready;
  log.info({ user: client.user?.tag, guilds: client.guilds.cache.size }, 'gateway ready');

  return {
    client,
    async stop(graceMs = 10_000) {
      stopping = true;
      const grace = new Promise((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([Promise.allSettled([...inFlight]), grace]);
      await client.destroy();
      log.info('gateway stopped');
    },
  };
}
