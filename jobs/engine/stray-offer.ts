// The health sweep's offer to end a stray: a button under its alert in the ops channel that
// leads, after a confirmation, to the stray-cleanup job. As with an agent's question
// (approval.ts), the button never comes from the event: the sweep writes a **signed offer**
// (`clawdinator:pending:stray:<target>`, signed with the workers' key: the target, what the
// clean-up does, the alert's job and channel, until when, the button) and the alert only
// names its target. The relay renders the button from the offer alone, and a press counts
// only if it is the offer's button, in the offer's channel, before its expiry. A Redis writer
// can neither put the button under another message nor offer another target: the event is
// signed, and so is the offer.
//
// Buttons are stateless, as /retire's are, so any gateway handles a press; they sit under
// /retire (the stray-cleanup job's permission), so the dispatcher admits only those the
// policy allows /retire in that channel. The alert's button: `retire:stray:<target>:<expiry>`.
// The press asks its presser to confirm (`retire:stray-yes|stray-no:<target>:<user>:<expiry>`,
// only that user, for 5 minutes); the confirm takes the offer (the first press wins) and
// queues the job, which checks everything again.
import type { KeyObject } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';
import { parseStored } from '../../lib/json.js';
import { signPayload, verifyPayload } from '../signing.js';
import { replySchema } from './envelope.js';
import { keys } from './keys.js';
import type { Signer } from './queues.js';

export const INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
/** What stray-cleanup ends: an instance of ours the registry does not know, or a member with no instance. */
export const strayTargetSchema = z.union([z.string().regex(INSTANCE_ID), instanceName]);

/** Long enough to be seen after a night; a stray is alerted once, so after that the CLI ends it. */
export const STRAY_OFFER_SECONDS = 24 * 3600;

const buttonSchema = z
  .object({
    id: z.string().max(100),
    label: z.string().max(80),
    style: z.enum(['primary', 'secondary', 'success', 'danger']),
  })
  .strict();

export const strayOfferSchema = z
  .object({
    target: strayTargetSchema,
    /** `terminate`: an instance the registry does not know; `retire`: a member EC2 has no instance of. */
    action: z.enum(['terminate', 'retire']),
    /** The instance's Name tag, shown in the confirmation (null: none). */
    instanceName: z.string().max(255).nullable(),
    /** The sweep run whose alert offers it: the alert must be that job's. */
    jobId: z.string().max(120),
    /** The ops channel the alert goes to: a press elsewhere does nothing. */
    channelId: replySchema.shape.channelId,
    /** Seconds. */
    expiresAt: z.number().int().positive(),
    buttons: z.array(buttonSchema).length(1),
  })
  .strict();
export type StrayOffer = z.output<typeof strayOfferSchema>;

const storedSchema = z
  .object({ offer: strayOfferSchema, keyId: z.literal('schedule'), signature: z.string().max(200) })
  .strict();

/** An offer that verified, with the value it was read as (taking it checks it is still that). */
export interface VerifiedOffer {
  offer: StrayOffer;
  raw: string;
}

export function strayButtonId(target: string, expiresAt: number): string {
  return `retire:stray:${target}:${expiresAt}`;
}

/** The alert button's parts; null for any other id (an agent's question, /retire's own). */
export function parseStrayButton(customId: string): { target: string; expiresAt: number } | null {
  const parts = customId.split(':');
  if (parts.length !== 4 || parts[0] !== 'retire' || parts[1] !== 'stray') return null;
  const [, , target, expires] = parts as [string, string, string, string];
  if (!strayTargetSchema.safeParse(target).success || !/^\d{1,12}$/.test(expires)) return null;
  return { target, expiresAt: Number(expires) };
}

export interface StrayConfirmButton {
  decision: 'confirm' | 'cancel';
  target: string;
  userId: string;
  expiresAt: number;
}

export function strayConfirmId(b: StrayConfirmButton): string {
  return `retire:${b.decision === 'confirm' ? 'stray-yes' : 'stray-no'}:${b.target}:${b.userId}:${b.expiresAt}`;
}

/** The confirmation's parts; null for any other id. */
export function parseStrayConfirm(customId: string): StrayConfirmButton | null {
  const parts = customId.split(':');
  if (parts.length !== 5 || parts[0] !== 'retire' || (parts[1] !== 'stray-yes' && parts[1] !== 'stray-no')) {
    return null;
  }
  const [, answer, target, userId, expires] = parts as [string, string, string, string, string];
  if (!strayTargetSchema.safeParse(target).success || !/^\d{1,20}$/.test(userId) || !/^\d{1,12}$/.test(expires)) {
    return null;
  }
  return { decision: answer === 'stray-yes' ? 'confirm' : 'cancel', target, userId, expiresAt: Number(expires) };
}

/** The sweep's side: the offer, signed with the workers' key, kept until its expiry. */
export async function writeStrayOffer(redis: Redis, signer: Signer, offer: StrayOffer): Promise<void> {
  const signed = { offer, keyId: signer.keyId };
  const value = JSON.stringify({ ...signed, signature: signPayload(signed, signer.key) });
  const ttl = Math.max(60, offer.expiresAt - Math.floor(Date.now() / 1000));
  await redis.set(keys.strayOffer(offer.target), value, 'EX', ttl);
}

/** A stray that is back (or gone for good) is offered no more. */
export async function withdrawStrayOffer(redis: Redis, target: string): Promise<void> {
  await redis.del(keys.strayOffer(target));
}

/**
 * The offer for `target`, verified with the workers' public key; null when missing,
 * unsigned, forged, filed under another target, or when its button is not this very offer's.
 */
export async function readStrayOffer(
  redis: Redis,
  target: string,
  workersKey: KeyObject,
): Promise<VerifiedOffer | null> {
  if (!strayTargetSchema.safeParse(target).success) return null;
  const raw = await redis.get(keys.strayOffer(target));
  if (raw === null) return null;
  const stored = parseStored(storedSchema, raw);
  if (stored === null) return null;
  const { offer, keyId, signature } = stored;
  if (!verifyPayload({ offer, keyId }, signature, workersKey)) return null;
  if (offer.target !== target) return null;
  if (offer.buttons.some((b) => b.id !== strayButtonId(target, offer.expiresAt))) return null;
  // An instance id is terminated, a name retired: never the other way round.
  if ((offer.action === 'terminate') !== INSTANCE_ID.test(target)) return null;
  return { offer, raw };
}

/** The buttons an alert of `jobId` in `channelId` may show for `target`'s offer: its own, or none. */
export async function offerButtons(
  redis: Redis,
  workersKey: KeyObject,
  target: string,
  jobId: string | undefined,
  channelId: string | undefined,
  now: number,
): Promise<StrayOffer['buttons']> {
  const read = await readStrayOffer(redis, target, workersKey);
  if (read === null) return [];
  const { offer } = read;
  if (offer.jobId !== jobId || offer.channelId !== channelId || now > offer.expiresAt * 1000) return [];
  return offer.buttons;
}

const DELETE_IF_SAME = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/** The first confirmed press takes the offer: true for that one, false once it is taken or changed. */
export async function takeStrayOffer(redis: Redis, read: VerifiedOffer): Promise<boolean> {
  return (await redis.eval(DELETE_IF_SAME, 1, keys.strayOffer(read.offer.target), read.raw)) === 1;
}

/** Puts a taken offer back (its job could not be queued), unless another took its place. */
export async function restoreStrayOffer(redis: Redis, read: VerifiedOffer): Promise<void> {
  const ttl = Math.max(60, read.offer.expiresAt - Math.floor(Date.now() / 1000));
  await redis.set(keys.strayOffer(read.offer.target), read.raw, 'EX', ttl, 'NX');
}
