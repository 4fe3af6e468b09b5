// A human's answer to an agent's destructive request (retire, replace). The job asks in the
// ops channel with two buttons whose ids name the job; a press, by any human the
// authorization policy allows that command, is recorded by the gateway as a **signed**
// approval under a key for that job, and the waiting job goes on only once it verifies that
// signature with the gateway's public key. A write to Redis alone cannot approve anything.
//
// The buttons themselves come from a **pending record** the job writes and signs with the
// workers' key before it asks (`clawdinator:pending:<jobId>`: what it confirms, for whom, by
// which policy key, where, until when, the buttons' ids and labels). The confirm event only
// refers to it; the relay renders buttons from the record alone, and a press counts only if
// it is one of the record's buttons, in the record's channel, before its expiry. An event
// carries no buttons, so a forged one cannot put a button in front of anyone.
//
// The buttons are stateless, like the human flow's: `<action>:<yes|no>:<jobId>:<expiresAt>`
// (seconds), so any gateway handles a press. At most 100 characters: a job id is at most
// 72 (type, '-', a request id of at most 64), which fits.
import type { KeyObject } from 'node:crypto';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { type AuthorizationPolicy, authorize } from '../../lib/authorize.js';
import { instanceName } from '../../lib/config.js';
import { parseStored } from '../../lib/json.js';
import { signPayload, verifyPayload } from '../signing.js';
import { envelopeSchema, principalSchema, replySchema, requestIdSchema } from './envelope.js';
import { keys } from './keys.js';
import type { Signer } from './queues.js';

export type ApprovalAction = 'retire' | 'replace';
export type ApprovalDecision = 'confirm' | 'cancel';

const discordPrincipal = principalSchema.options[0];

export const approvalSchema = z
  .object({
    jobId: z.string().max(120),
    requestId: requestIdSchema,
    action: z.enum(['retire', 'replace']),
    name: instanceName,
    decision: z.enum(['confirm', 'cancel']),
    /** Who pressed, as the gateway saw them: the worker re-checks the policy on it. */
    by: discordPrincipal,
    /** When the press was made (ms). */
    at: z.number().int().positive(),
    /** The confirmation's expiry (seconds), as the job asked it. */
    expiresAt: z.number().int().positive(),
  })
  .strict();
export type Approval = z.output<typeof approvalSchema>;

const storedSchema = z
  .object({ approval: approvalSchema, keyId: z.literal('gateway'), signature: z.string().max(200) })
  .strict();

/** The answer is kept a day past the expiry: long enough for any resumed job to read it. */
const KEEP_SECONDS = 86_400;

// ── the buttons ───────────────────────────────────────────────────────────────────────

export interface ApprovalButton {
  action: ApprovalAction;
  decision: ApprovalDecision;
  jobId: string;
  expiresAt: number;
}

const ANSWER = { confirm: 'yes', cancel: 'no' } as const;

export function approvalButtonId(b: ApprovalButton): string {
  return `${b.action}:${ANSWER[b.decision]}:${b.jobId}:${b.expiresAt}`;
}

/** An agent-confirmation button's parts; null for any other id (the human flow's, say). */
export function parseApprovalButton(customId: string): ApprovalButton | null {
  const parts = customId.split(':');
  if (parts.length !== 4) return null;
  const [action, answer, jobId, expires] = parts as [string, string, string, string];
  if (action !== 'retire' && action !== 'replace') return null;
  if (answer !== 'yes' && answer !== 'no') return null;
  if (!/^[a-z][a-z0-9-]{0,40}-[A-Za-z0-9_-]{1,64}$/.test(jobId) || !/^\d{1,12}$/.test(expires)) return null;
  return { action, decision: answer === 'yes' ? 'confirm' : 'cancel', jobId, expiresAt: Number(expires) };
}

// ── the pending record: what the buttons are, signed by the job ───────────────────────

const buttonSchema = z
  .object({
    id: z.string().max(100),
    label: z.string().max(80),
    style: z.enum(['primary', 'secondary', 'success', 'danger']),
  })
  .strict();

export const pendingSchema = z
  .object({
    jobId: z.string().max(120),
    requestId: requestIdSchema,
    action: z.enum(['retire', 'replace']),
    /** The member the action is about. */
    name: instanceName,
    /** The agent that asked. */
    askedBy: instanceName,
    /** The policy key a presser must be allowed (the command of the action). */
    permission: z.enum(['retire', 'replace']),
    /** Where the question is asked: a press elsewhere answers nothing. */
    channelId: replySchema.shape.channelId,
    /** Seconds. */
    expiresAt: z.number().int().positive(),
    buttons: z.array(buttonSchema).min(1).max(5),
  })
  .strict();
export type Pending = z.output<typeof pendingSchema>;

const storedPendingSchema = z
  .object({ pending: pendingSchema, keyId: z.literal('schedule'), signature: z.string().max(200) })
  .strict();

/** The job's question, signed with the workers' key, kept as long as an answer to it. */
export async function writePending(redis: Redis, signer: Signer, pending: Pending): Promise<void> {
  const signed = { pending, keyId: signer.keyId };
  const value = JSON.stringify({ ...signed, signature: signPayload(signed, signer.key) });
  const ttl = Math.max(60, pending.expiresAt - Math.floor(Date.now() / 1000)) + KEEP_SECONDS;
  await redis.set(keys.pending(pending.jobId), value, 'EX', ttl);
}

/**
 * The job's question, verified with the workers' public key; null when missing, unsigned,
 * forged, for another job, or when any of its buttons is not an answer to this very question
 * (another job's, another action's, another expiry's, or the human flow's `retire:confirm:…`).
 */
export async function readPending(redis: Redis, jobId: string, workersKey: KeyObject): Promise<Pending | null> {
  const raw = await redis.get(keys.pending(jobId));
  if (raw === null) return null;
  const stored = parseStored(storedPendingSchema, raw);
  if (stored === null) return null;
  const { pending, keyId, signature } = stored;
  if (!verifyPayload({ pending, keyId }, signature, workersKey)) return null;
  if (pending.jobId !== jobId || pending.permission !== pending.action) return null;
  const own = pending.buttons.every((b) => {
    const parsed = parseApprovalButton(b.id);
    return (
      parsed !== null &&
      parsed.jobId === jobId &&
      parsed.action === pending.action &&
      parsed.expiresAt === pending.expiresAt
    );
  });
  return own ? pending : null;
}

// ── the gateway's side ────────────────────────────────────────────────────────────────

export type DecideOutcome =
  | { outcome: 'recorded'; host: string; name: string }
  | { outcome: 'answered'; by: string }
  | { outcome: 'gone' };

/** States in which a job can still be waiting for its answer. */
const LIVE = new Set(['waiting', 'delayed', 'active', 'prioritized', 'waiting-children']);

/**
 * Records a press: the button must be one of the job's signed pending record (verified with
 * the workers' public key), pressed in its channel before its expiry; the job must be an
 * agent's request of that action, still waiting for this very confirmation (the saved expiry
 * matches the button's); the first answer wins.
 */
export async function recordDecision(
  redis: Redis,
  signer: Signer,
  workersKey: KeyObject,
  job: Job | undefined,
  press: ApprovalButton & { by: z.output<typeof discordPrincipal>; at: number; customId: string },
): Promise<DecideOutcome> {
  const pending = await readPending(redis, press.jobId, workersKey);
  if (
    pending === null ||
    pending.action !== press.action ||
    pending.channelId !== press.by.channelId ||
    pending.expiresAt !== press.expiresAt ||
    press.at > pending.expiresAt * 1000 ||
    !pending.buttons.some((b) => b.id === press.customId)
  ) {
    return { outcome: 'gone' };
  }
  if (job === undefined) return { outcome: 'gone' };
  const envelope = envelopeSchema.safeParse(job.data);
  if (!envelope.success) return { outcome: 'gone' };
  const { signed, steps } = envelope.data;
  const name = z.object({ name: instanceName }).safeParse(signed.data);
  const asked = z.object({ expiresAt: z.number() }).safeParse(steps?.[ASKED_STEP]);
  if (
    signed.type !== press.action ||
    signed.principal.kind !== 'agent' ||
    !name.success ||
    !asked.success ||
    asked.data.expiresAt !== press.expiresAt
  ) {
    return { outcome: 'gone' };
  }
  const existing = await readStored(redis, press.jobId);
  if (existing !== null) return { outcome: 'answered', by: existing.by.userName };
  if (steps?.[WAIT_STEP] !== undefined || !LIVE.has(await job.getState())) return { outcome: 'gone' };
  const approval: Approval = {
    jobId: press.jobId,
    requestId: signed.requestId,
    action: press.action,
    name: name.data.name,
    decision: press.decision,
    by: press.by,
    at: press.at,
    expiresAt: press.expiresAt,
  };
  const stored = { approval, keyId: signer.keyId, signature: signPayload(approval, signer.key) };
  const ttl = Math.max(60, press.expiresAt - Math.floor(press.at / 1000)) + KEEP_SECONDS;
  const set = await redis.set(keys.approval(press.jobId), JSON.stringify(stored), 'EX', ttl, 'NX');
  if (set !== 'OK') {
    const other = await readStored(redis, press.jobId);
    return { outcome: 'answered', by: other?.by.userName ?? 'someone else' };
  }
  return { outcome: 'recorded', host: signed.principal.host, name: name.data.name };
}

/** The stored answer, unverified: only to tell a second presser who answered first. */
async function readStored(redis: Redis, jobId: string): Promise<Approval | null> {
  const raw = await redis.get(keys.approval(jobId));
  if (raw === null) return null;
  try {
    const parsed = storedSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data.approval : null;
  } catch {
    return null;
  }
}

// ── the worker's side ─────────────────────────────────────────────────────────────────

/** The names of the job steps that ask and wait: the gateway reads the first from the job. */
export const ASKED_STEP = 'confirmation-asked';
export const WAIT_STEP = 'confirmation';

export interface ApprovalExpectation {
  jobId: string;
  requestId: string;
  action: ApprovalAction;
  name: string;
  expiresAt: number;
}

export interface ApprovalTrust {
  publicKey(keyId: string): Promise<KeyObject | null>;
  policy: AuthorizationPolicy;
}

export type ApprovalRead = { approval: Approval } | { ignored: string } | null;

const DELETE_IF_SAME = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * The verified answer for this job, null while there is none. An answer that does not
 * verify (unsigned, signed by another key, for another request, after the expiry, by someone
 * the policy does not allow) is ignored and removed, so a real press can still follow.
 */
export async function readApproval(
  redis: Redis,
  expected: ApprovalExpectation,
  trust: ApprovalTrust,
): Promise<ApprovalRead> {
  const key = keys.approval(expected.jobId);
  const raw = await redis.get(key);
  if (raw === null) return null;
  const why = await verify(raw, expected, trust);
  if (typeof why === 'string') {
    await redis.eval(DELETE_IF_SAME, 1, key, raw);
    return { ignored: why };
  }
  return { approval: why };
}

async function verify(raw: string, expected: ApprovalExpectation, trust: ApprovalTrust): Promise<Approval | string> {
  const parsed = parseStored(storedSchema, raw);
  if (parsed === null) return 'malformed';
  const { approval, signature } = parsed;
  const key = await trust.publicKey('gateway');
  if (key === null || !verifyPayload(approval, signature, key)) return 'bad signature';
  const same =
    approval.jobId === expected.jobId &&
    approval.requestId === expected.requestId &&
    approval.action === expected.action &&
    approval.name === expected.name &&
    approval.expiresAt === expected.expiresAt;
  if (!same) return 'for another request';
  if (approval.at > approval.expiresAt * 1000) return 'answered after the expiry';
  // The gateway checked the presser; the worker decides again, as it does for every job.
  const decision = authorize(trust.policy, approval.action, approval.by);
  if (!decision.allowed) return `not allowed: ${decision.reason}`;
  return approval;
}
