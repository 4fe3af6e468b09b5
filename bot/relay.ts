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
// Nothing is rendered that does not verify (notify.ts: signed by a worker, the gateway or an
// operator, not replayed, not stale); a dropped event is logged and never reaches Discord.
// A question's buttons come from the job's signed pending record (approval.ts), only while it
// lasts and only in the channel it names; never from the event. A stray alert's button comes
// the same way from the health sweep's signed offer (stray-offer.ts).
//
// Results always land: when the message an event would edit is gone (deleted, 404 Unknown
// Message) or cannot be edited any more (token expired, 401/50027), the event is posted to
// the channel instead (for an agent's request, the ops channel its question was in). Posts
// carry a nonce derived from the job and the event with `enforce_nonce`, so the same event
// rendered twice — a dead gateway's unacknowledged entry claimed by another, which the replay
// check lets through as the same entry — makes one message: Discord returns the first.
import { createHash, type KeyObject } from 'node:crypto';
import { type REST, Routes } from 'discord.js';
import type { Redis } from 'ioredis';
import { readPending } from '../jobs/engine/approval.js';
import { consumeEvents, type EventTrust, type JobEvent, type VerifiedEvent } from '../jobs/engine/notify.js';
import { offerButtons } from '../jobs/engine/stray-offer.js';
import type { Logger } from '../lib/log.js';
import type { JobMessages, TokenStore } from './engine.js';
import { renderEvent } from './progress.js';
import type { Button, Reply } from './types.js';

export interface RelayOptions {
  /** A dedicated connection: the consumer blocks on it. */
  redis: Redis;
  /** The control plane's public keys: what an event must verify against. */
  trust: EventTrust;
  /** The workers' public key (`schedule`): a question's pending record must verify against it. */
  workersKey: KeyObject;
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
 * gateway that renders it. A job has one result, so a result's nonce is its job's (a result
 * published again, under a new event id, is still one message); other events are told apart
 * by their signed event id.
 */
export function postNonce(event: JobEvent): string {
  const which = event.kind === 'result' ? '' : event.id;
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

/**
 * The buttons of a question posted to `channelId`: those of the job's signed pending record,
 * while it has not expired and only in the channel it names; none otherwise.
 */
export async function questionButtons(
  redis: Redis,
  workersKey: KeyObject,
  jobId: string | undefined,
  channelId: string | undefined,
  now: number,
): Promise<Button[]> {
  if (jobId === undefined) return [];
  const pending = await readPending(redis, jobId, workersKey);
  if (pending === null || pending.channelId !== channelId || now > pending.expiresAt * 1000) return [];
  return pending.buttons;
}

/**
 * An event's buttons, from signed records only: a question's from its job's pending record,
 * a stray alert's from the health sweep's offer for its target (stray-offer.ts); none else.
 */
export async function eventButtons(
  redis: Redis,
  workersKey: KeyObject,
  event: JobEvent,
  channelId: string | undefined,
  now: number,
): Promise<Button[]> {
  if (event.kind === 'confirm') return questionButtons(redis, workersKey, event.jobId, channelId, now);
  if (event.kind === 'alert' && event.offer !== undefined) {
    return offerButtons(redis, workersKey, event.offer, event.jobId, channelId, now);
  }
  return [];
}

export async function renderToDiscord(
  verified: VerifiedEvent,
  options: RelayOptions,
): Promise<'edited' | 'posted' | 'dropped'> {
  const { event } = verified;
  const now = options.now?.() ?? Date.now();
  const channel = event.reply?.channelId ?? options.opsChannelId;
  const buttons = await eventButtons(options.redis, options.workersKey, event, channel, now);
  const reply = renderEvent(event, now, buttons);
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
      // { err } goes through serializeError: a webhook URL's token never reaches the log.
      options.log.info({ jobId: event.jobId, err }, 'relay: the message is gone; posting instead');
    }
  }
  if (event.kind === 'progress') return 'dropped';
  // After an answered question, the channel it was asked in (the ops channel).
  const target = asked?.channelId ?? channel;
  if (target === undefined) return 'dropped';
  const posted = (await options.rest.post(Routes.channelMessages(target), {
    body: { ...body(reply), nonce: postNonce(event), enforce_nonce: true },
  })) as { id?: unknown };
  if (event.kind === 'confirm' && event.jobId && messages && typeof posted?.id === 'string') {
    await messages.save(event.jobId, { channelId: target, messageId: posted.id });
  }
  return 'posted';
}

export function startRelay(options: RelayOptions): { stop(): Promise<void> } {
  return consumeEvents(
    options.redis,
    { consumer: options.consumer, blockMs: options.blockMs, trust: options.trust },
    async (event) => {
      await renderToDiscord(event, options);
    },
    (err) => options.log.warn({ err }, 'relay: event not rendered'),
    (streamId, reason) => options.log.warn({ streamId, reason }, 'relay: event dropped: it does not verify'),
  );
}
