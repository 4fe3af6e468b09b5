// Renders the workers' events in Discord. The gateways read the notification stream as one
// consumer group, so each event is rendered once. While the interaction token lives (kept
// in Redis by the gateway that took the interaction), the reply is edited in place; after
// that — or if that gateway restarted — results, alerts and confirmations are posted to the
// channel as normal messages. Progress after the token expired is dropped: a channel
// should not fill with progress bars.
//
// An agent's question (a confirm event) is a channel message; the relay remembers it for
// its job, and once a human answered, the job's progress and result edit that message.
//
// Results always land: when the message an event would edit is gone (deleted, 404 Unknown
// Message) or cannot be edited any more (token expired, 401/50027), the event is posted to
// the channel instead (for an agent's request, the ops channel its question was in). Posts
// carry a nonce derived from the job and the event with `enforce_nonce`, so the same event
// rendered twice — by two gateways, or again after one died before acknowledging it — makes
// one message: Discord returns the first.
import { createHash } from 'node:crypto';
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

/**
 * The nonce of an event's channel post (Discord: at most 25 characters): the same for every
 * gateway that renders it. A job has one result, so a result's nonce is its job's; other
 * events are told apart by their time and text.
 */
export function postNonce(event: JobEvent): string {
  const which = event.kind === 'result' ? '' : `${event.at}\0${event.text}`;
  return createHash('sha256')
    .update(`${event.jobId ?? ''}\0${event.kind}\0${which}`)
    .digest('base64url')
    .slice(0, 25);
}

/** An edit that failed for good: Discord answered it with a client error (gone, expired, refused). */
function editGone(err: unknown): boolean {
  const status = (err as { status?: unknown }).status;
  return typeof status === 'number' && status >= 400 && status < 500;
}

export async function renderToDiscord(
  event: JobEvent,
  options: RelayOptions,
): Promise<'edited' | 'posted' | 'dropped'> {
  const now = options.now?.() ?? Date.now();
  const reply = renderEvent(event, now);
  const interactionId = event.reply?.interactionId;
  const stored = interactionId ? await options.tokens.get(interactionId) : null;
  const { messages } = options;
  const asked = !stored && event.jobId && messages && event.kind !== 'confirm' ? await messages.get(event.jobId) : null;
  // Before the answer, only the result (the expiry, say) replaces the question's buttons.
  const edit = stored
    ? () =>
        options.rest.patch(Routes.webhookMessage(stored.appId, stored.token, '@original'), {
          body: body(reply),
          auth: false,
        })
    : asked && (event.kind !== 'progress' || asked.answered)
      ? () => options.rest.patch(Routes.channelMessage(asked.channelId, asked.messageId), { body: body(reply) })
      : undefined;
  if (edit !== undefined) {
    try {
      await edit();
      return 'edited';
    } catch (err) {
      if (!editGone(err)) throw err;
      options.log.info({ jobId: event.jobId, err: errorLine(err) }, 'relay: the message is gone; posting instead');
    }
  }
  if (event.kind === 'progress') return 'dropped';
  const channel = asked?.channelId ?? event.reply?.channelId ?? options.opsChannelId;
  if (channel === undefined) return 'dropped';
  const posted = (await options.rest.post(Routes.channelMessages(channel), {
    body: { ...body(reply), nonce: postNonce(event), enforce_nonce: true },
  })) as { id?: unknown };
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
