// The notification stream: workers never talk to Discord. They append events (progress,
// result, alert, confirmation request) to one Redis stream; the gateways read it as one
// consumer group, so each event is rendered once, by whichever gateway gets it.
//
// Every event is signed by whoever publishes it — a worker with the workers' key (`schedule`),
// the gateway with its key or an operator with theirs for a cancel — over all of its fields:
// the job, the reply target (channel, interaction), the kind, the text, the time and a
// per-event id. The consumer verifies it against the control plane's public keys before
// anything is rendered (never an agent's key: an agent asks through the gateway and is never
// heard directly), so a Redis writer can neither make one up nor move a signed one to another
// channel or job. A signed event XADDed again is a replay: the consumer records each event id
// with the stream id it first arrived under (SET NX, a TTL beyond the events' maximum age);
// the same id under another stream entry is dropped. The stream id itself cannot be signed:
// XADD assigns it after the publisher signed, and publishers on many hosts cannot choose ids
// that stay monotonic. An event older than its maximum age is dropped too, so a replay after
// its record expired is refused by age.
//
// Events carry no buttons: a confirmation refers to a pending record the job signed
// (approval.ts: readPending), which the renderer reads and verifies itself.
import type { KeyObject } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { newNonce, signPayload, verifyPayload } from '../signing.js';
import { replySchema } from './envelope.js';
import { keys } from './keys.js';
import type { Signer } from './queues.js';

// Not strict: a newer publisher may add a field during a rolling deploy. The signature is
// checked over the event as it was read, all its fields, before this schema picks the known ones.
export const jobEventSchema = z.object({
  /** Unique per event: what a replay is recognized by. */
  id: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  kind: z.enum(['progress', 'result', 'alert', 'confirm']),
  jobId: z.string().max(120).optional(),
  type: z.string().max(60).optional(),
  reply: replySchema.optional(),
  text: z.string().max(4000),
  step: z.string().max(100).optional(),
  percent: z.number().min(0).max(100).optional(),
  ok: z.boolean().optional(),
  startedAt: z.number().optional(),
  /**
   * An alert's offer: the target of the health sweep's signed stray-cleanup offer
   * (stray-offer.ts), whose button the relay shows once the offer verifies. Never a button.
   */
  offer: z.string().max(60).optional(),
  at: z.number(),
});
export type JobEvent = z.output<typeof jobEventSchema>;
/** What a publisher gives: the id and the time are added when it is signed. */
export type EventInput = Omit<JobEvent, 'id' | 'at'>;

const storedSchema = z.object({
  event: z.record(z.unknown()),
  keyId: z.string().max(80),
  signature: z.string().max(200),
});

/** An event that verified, with the key that signed it. */
export interface VerifiedEvent {
  event: JobEvent;
  keyId: string;
  /** The stream entry it arrived as. */
  streamId: string;
}

const MAX_EVENTS = 10_000;
export const GATEWAY_GROUP = 'gateways';
/** Older events are dropped: a gateway outage longer than this loses its backlog's messages. */
export const MAX_EVENT_AGE_MS = 24 * 3600_000;
/** A publisher's clock a little ahead of the consumer's is not a forgery. */
const MAX_CLOCK_AHEAD_MS = 5 * 60_000;
/** Longer than the maximum age: a replay is caught by its record or by its age. */
const SEEN_TTL_SECONDS = 2 * 24 * 3600;

/** The payload a signature covers: every field of the event, and who signed it. */
function signedPart(event: Record<string, unknown>, keyId: string) {
  return { event, keyId };
}

/** The stream entry's value for an event, signed by `signer`. */
export function signEvent(signer: Signer, input: EventInput, now = Date.now()): string {
  const event: JobEvent = { ...input, id: newNonce(), at: now };
  // Absent optional fields are left out, as canonicalJson and JSON.stringify both do.
  return JSON.stringify({
    event,
    keyId: signer.keyId,
    signature: signPayload(signedPart(event, signer.keyId), signer.key),
  });
}

/** The XADD arguments of a signed event, for a caller that pipelines it with other commands. */
export function eventArgs(signer: Signer, event: EventInput): [string, string, string, string, string, string, string] {
  return [keys.events, 'MAXLEN', '~', String(MAX_EVENTS), '*', 'event', signEvent(signer, event)];
}

export async function publish(redis: Redis, signer: Signer, event: EventInput): Promise<void> {
  await redis.xadd(...eventArgs(signer, event));
}

/**
 * Who may publish events: the workers (`schedule`), the gateway, operators. Never an agent:
 * agents' keys are known to the workers (they verify agents' requests) but an agent has no
 * business speaking to Discord as the ops bot.
 */
export function mayPublishEvents(keyId: string): boolean {
  return keyId === 'schedule' || keyId === 'gateway' || /^operator:[a-z0-9_.-]{1,32}$/.test(keyId);
}

export interface EventTrust {
  /** The public key of a key id (the same lookup the workers use); only publishers' ids are asked. */
  publicKey(keyId: string): Promise<KeyObject | null>;
}

export type Verdict = { ok: VerifiedEvent } | { dropped: string };

// First arrival of an event id records its stream id; the same entry delivered again (a dead
// gateway's pending entry claimed by another) passes, another entry with that id does not.
const FIRST_ARRIVAL = `local seen = redis.call('GET', KEYS[1])
if not seen then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end
if seen == ARGV[1] then return 1 end
return 0`;

/** Verifies one stream entry's value: signature, publisher, shape, age, and that it is no replay. */
export async function verifyEvent(
  redis: Redis,
  trust: EventTrust,
  streamId: string,
  raw: string | undefined,
  now = Date.now(),
): Promise<Verdict> {
  let json: unknown;
  try {
    json = JSON.parse(raw ?? '');
  } catch {
    return { dropped: 'malformed' };
  }
  const stored = storedSchema.safeParse(json);
  if (!stored.success) return { dropped: 'unsigned or malformed' };
  const { event: rawEvent, keyId, signature } = stored.data;
  if (!mayPublishEvents(keyId)) return { dropped: `${keyId.slice(0, 80)} may not publish events` };
  const key = await trust.publicKey(keyId);
  if (key === null) return { dropped: `unknown key ${keyId}` };
  if (!verifyPayload(signedPart(rawEvent, keyId), signature, key)) return { dropped: 'bad signature' };
  const parsed = jobEventSchema.safeParse(rawEvent);
  if (!parsed.success) return { dropped: 'malformed' };
  const event = parsed.data;
  // The gateway and operators publish only a cancel's result; everything else is a worker's.
  if (keyId !== 'schedule' && event.kind !== 'result') return { dropped: `${keyId} may not publish ${event.kind}` };
  if (now - event.at > MAX_EVENT_AGE_MS || event.at - now > MAX_CLOCK_AHEAD_MS) return { dropped: 'stale' };
  const first = await redis.eval(FIRST_ARRIVAL, 1, keys.eventSeen(event.id), streamId, SEEN_TTL_SECONDS);
  if (first !== 1) return { dropped: 'replayed' };
  return { ok: { event, keyId, streamId } };
}

export interface ConsumerOptions {
  consumer: string;
  /** Verifies every event before it is handled; one that does not verify is dropped. */
  trust: EventTrust;
  blockMs?: number;
  /** Events left unacknowledged this long by a dead gateway are taken over. */
  claimIdleMs?: number;
}

/** Reads the stream as one member of the gateways' group until stopped. */
export function consumeEvents(
  redis: Redis,
  options: ConsumerOptions,
  handle: (event: VerifiedEvent) => Promise<void>,
  onError: (err: unknown) => void,
  /** An entry that did not verify (logged by the caller, never rendered). */
  onDropped: (streamId: string, reason: string) => void,
): { stop(): Promise<void> } {
  let running = true;
  const blockMs = options.blockMs ?? 2000;
  const claimIdleMs = options.claimIdleMs ?? 30_000;

  async function process(entries: [string, string[]][]): Promise<void> {
    for (const [id, fields] of entries) {
      let verdict: Verdict | undefined;
      try {
        verdict = await verifyEvent(redis, options.trust, id, fields[fields.indexOf('event') + 1]);
      } catch (err) {
        onError(err);
      }
      if (verdict !== undefined && 'dropped' in verdict) onDropped(id, verdict.dropped);
      if (verdict !== undefined && 'ok' in verdict) {
        try {
          await handle(verdict.ok);
        } catch (err) {
          onError(err);
        }
      }
      await redis.xack(keys.events, GATEWAY_GROUP, id);
    }
  }

  const loop = (async () => {
    await redis.xgroup('CREATE', keys.events, GATEWAY_GROUP, '$', 'MKSTREAM').catch((err: Error) => {
      if (!err.message.includes('BUSYGROUP')) throw err;
    });
    let lastClaim = 0;
    while (running) {
      try {
        if (Date.now() - lastClaim > claimIdleMs) {
          lastClaim = Date.now();
          const claimed = (await redis.xautoclaim(
            keys.events,
            GATEWAY_GROUP,
            options.consumer,
            claimIdleMs,
            '0-0',
            'COUNT',
            100,
          )) as [string, [string, string[]][]];
          await process(claimed[1].filter((e) => Array.isArray(e[1])));
        }
        const res = (await redis.xreadgroup(
          'GROUP',
          GATEWAY_GROUP,
          options.consumer,
          'COUNT',
          100,
          'BLOCK',
          blockMs,
          'STREAMS',
          keys.events,
          '>',
        )) as [string, [string, string[]][]][] | null;
        if (res) for (const [, entries] of res) await process(entries);
      } catch (err) {
        if (!running) break;
        onError(err);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  })();

  return {
    async stop() {
      running = false;
      redis.disconnect();
      await loop.catch(() => {});
    },
  };
}
