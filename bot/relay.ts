// Renders the workers' events in Discord. The gateways read the notification stream as one
// consumer group, so each event is rendered once. While the interaction token lives (kept
// in Redis by the gateway that took the interaction), the reply is edited in place; after
// that — or if that gateway restarted — results, alerts and confirmations are posted to the
// channel as normal messages. Progress after the token expired is dropped: a channel
// should not fill with progress bars.
//
// An agent's question (a confirm event) is a channel message; the relay remembers it for
// its job, and once a human answered, the job's progress and result edit that message.
import { type REST, Routes } from 'discord.js';
import type { Redis } from 'ioredis';
import { consumeEvents, type JobEvent } from '../jobs/engine/notify.js';
import { errorLine } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { JobMessages, TokenStore } from './engine.js';
import { renderEvent } from './progress.js';
import type { Reply } from './types.js';

export interface RelayOptions {
  /** A dedicated connection: the consumer blocks on it. */
  redis: Redis;
  rest: REST;
  tokens: TokenStore;
  /** The messages that asked a job's question; without it, every later event is a new message. */
  messages?: JobMessages;
  consumer: string;
  opsChannelId?: string;
  log: Logger;
  now?: () => number;
  blockMs?: number;
}

function body(reply: Reply) {
  const components =
    reply.buttons && reply.buttons.length > 0
      ? [
          {
            type: 1,
            components: reply.buttons.map((b) => ({
              type: 2,
              custom_id: b.id,
              label: b.label,
              style: { primary: 1, secondary: 2, success: 3, danger: 4 }[b.style],
            })),
          },
        ]
      : [];
  return { content: reply.content ?? '', components, allowed_mentions: { parse: [] } };
}

export async function renderToDiscord(
  event: JobEvent,
  options: RelayOptions,
): Promise<'edited' | 'posted' | 'dropped'> {
  const now = options.now?.() ?? Date.now();
  const reply = renderEvent(event, now);
  const interactionId = event.reply?.interactionId;
  const stored = interactionId ? await options.tokens.get(interactionId) : null;
  if (stored) {
    await options.rest.patch(Routes.webhookMessage(stored.appId, stored.token, '@original'), {
      body: body(reply),
      auth: false,
    });
    return 'edited';
  }
  const { messages } = options;
  const asked = event.jobId && messages && event.kind !== 'confirm' ? await messages.get(event.jobId) : null;
  // Before the answer, only the result (the expiry, say) replaces the question's buttons.
  if (asked && (event.kind !== 'progress' || asked.answered)) {
    await options.rest.patch(Routes.channelMessage(asked.channelId, asked.messageId), { body: body(reply) });
    return 'edited';
  }
  if (event.kind === 'progress') return 'dropped';
  const channel = event.reply?.channelId ?? options.opsChannelId;
  if (channel === undefined) return 'dropped';
  const posted = (await options.rest.post(Routes.channelMessages(channel), { body: body(reply) })) as { id?: unknown };
  if (event.kind === 'confirm' && event.jobId && messages && typeof posted?.id === 'string') {
    await messages.save(event.jobId, { channelId: channel, messageId: posted.id });
  }
  return 'posted';
}

export function startRelay(options: RelayOptions): { stop(): Promise<void> } {
  return consumeEvents(
    options.redis,
    { consumer: options.consumer, blockMs: options.blockMs },
    async (event) => {
      await renderToDiscord(event, options);
    },
    (err) => options.log.warn({ err: errorLine(err) }, 'relay: event not rendered'),
  );
}
