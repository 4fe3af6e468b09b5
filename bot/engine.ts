// The gateway's side of the job engine: claiming interactions across gateways, keeping
// interaction tokens (never in job data) for the relay, and enqueueing signed jobs.
import type { KeyObject } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { CancelOutcome, JobAdmin, JobDetail, JobFilter, JobSummary, RetryPlan } from '../jobs/engine/admin.js';
import { type ApprovalButton, type DecideOutcome, recordDecision } from '../jobs/engine/approval.js';
import type { Principal, ReplyTarget } from '../jobs/engine/envelope.js';
import { FLEET_QUEUE, keys } from '../jobs/engine/keys.js';
import type { EnqueueResult, Enqueuer, Signer } from '../jobs/engine/queues.js';
import { readStrayOffer, restoreStrayOffer, takeStrayOffer, type VerifiedOffer } from '../jobs/engine/stray-offer.js';
import { publicHalf, signPayload, verifyPayload } from '../jobs/signing.js';
import type { Actor } from '../lib/actor.js';
import type { AuthorizationPolicy } from '../lib/authorize.js';
import type { Claim } from './dispatch.js';

/** An interaction token lives 15 minutes; keep it a little less so an edit never races its expiry. */
export const INTERACTION_TOKEN_TTL_MS = 14 * 60 * 1000;

/** First gateway to claim an interaction id handles it; the others drop it without replying. */
export function redisClaim(redis: Redis, ttlSeconds = 3600): Claim {
  return async (id) => (await redis.set(keys.claim(id), '1', 'EX', ttlSeconds, 'NX')) === 'OK';
}

export interface StoredToken {
  appId: string;
  token: string;
}

/**
 * A record the gateways keep in Redis for each other, signed with the gateway's key over what
 * it says and the key it sits under: one forged, altered or moved by a Redis writer reads as
 * absent (the relay then posts to the channel instead of editing), never as another
 * interaction's token or another message to overwrite.
 */
class SignedRecords<T extends object> {
  private readonly publicKey: KeyObject;

  constructor(
    private readonly redis: Redis,
    private readonly signer: Signer,
    /** What the records are, in the signed payload: one kind's record never passes for another's. */
    private readonly kind: string,
  ) {
    this.publicKey = publicHalf(signer.key);
  }

  encode(id: string, value: T): string {
    return JSON.stringify({ ...value, signature: signPayload({ kind: this.kind, id, value }, this.signer.key) });
  }

  /** The record under `key` for `id`, if it verifies; `pick` keeps the fields of T (and checks them). */
  async read(key: string, id: string, pick: (raw: Record<string, unknown>) => T | null): Promise<T | null> {
    const raw = await this.redis.get(key);
    if (raw === null) return null;
    try {
      const parsed = JSON.parse(raw) as Record<string, unknown>;
      const value = pick(parsed);
      if (value === null || typeof parsed.signature !== 'string') return null;
      return verifyPayload({ kind: this.kind, id, value }, parsed.signature, this.publicKey) ? value : null;
    } catch {
      return null;
    }
  }
}

/** Interaction tokens in Redis, expiring with the token, so any gateway can edit the reply. */
export class TokenStore {
  private readonly records: SignedRecords<StoredToken>;

  constructor(
    private readonly redis: Redis,
    /** The gateway's key: signs each record, and its public half verifies them. */
    signer: Signer,
    private readonly ttlMs = INTERACTION_TOKEN_TTL_MS,
  ) {
    this.records = new SignedRecords(redis, signer, 'interaction-token');
  }

  async save(interactionId: string, value: StoredToken): Promise<void> {
    const record = this.records.encode(interactionId, { appId: value.appId, token: value.token });
    await this.redis.set(keys.interactionToken(interactionId), record, 'PX', this.ttlMs);
  }

  async get(interactionId: string): Promise<StoredToken | null> {
    return this.records.read(keys.interactionToken(interactionId), interactionId, (v) =>
      typeof v.appId === 'string' && typeof v.token === 'string' ? { appId: v.appId, token: v.token } : null,
    );
  }
}

export function discordPrincipal(actor: Actor): Principal {
  if (actor.guildId === null) throw new Error('no principal for a DM');
  return {
    kind: 'discord',
    userId: actor.userId,
    userName: actor.userName.slice(0, 100) || actor.userId,
    roles: actor.roles,
    guildId: actor.guildId,
    channelId: actor.channelId,
  };
}

/** What command handlers use to start jobs. */
export interface BotJobs {
  enqueue(request: {
    type: string;
    data: unknown;
    actor: Actor;
    requestId: string;
    reply: ReplyTarget;
  }): Promise<EnqueueResult>;
  /**
   * Records a human's answer to an agent's retire or replace waiting in the ops channel,
   * signed with the gateway's key (the worker verifies it). Absent without that key.
   */
  decide?(press: ApprovalButton & { actor: Actor; at: number; customId: string }): Promise<DecideOutcome>;
  /**
   * The health sweep's signed offers to clean up a stray (stray-offer.ts), verified with the
   * workers' public key. Absent without it.
   */
  strays?: StrayOffers;
}

export interface StrayOffers {
  /** The offer for `target`, if it verifies; null otherwise. */
  read(target: string): Promise<VerifiedOffer | null>;
  /** The first confirmed press takes it: false when another did, or it changed since it was read. */
  take(offer: VerifiedOffer): Promise<boolean>;
  /** Back, when its job could not be queued. */
  restore(offer: VerifiedOffer): Promise<void>;
}

/**
 * `approvals`: what signs and stores an answer to an agent's request (the gateway's own key),
 * and the workers' public key, which the job's pending record (and a stray's offer) must verify against.
 */
export function botJobs(
  enqueuer: Enqueuer,
  approvals?: { redis: Redis; signer: Signer; workersKey: KeyObject },
): BotJobs {
  const jobs: BotJobs = {
    enqueue: ({ type, data, actor, requestId, reply }) =>
      enqueuer.enqueue({ type, data, principal: discordPrincipal(actor), requestId, reply }),
  };
  if (approvals !== undefined) {
    const { redis, workersKey } = approvals;
    jobs.strays = {
      read: (target) => readStrayOffer(redis, target, workersKey),
      take: (offer) => takeStrayOffer(redis, offer),
      restore: (offer) => restoreStrayOffer(redis, offer),
    };
    jobs.decide = async ({ actor, ...press }) => {
      const by = discordPrincipal(actor);
      if (by.kind !== 'discord') throw new Error('unreachable');
      // Agents' retires and replaces run on the fleet queue.
      const job = await enqueuer.queue(FLEET_QUEUE).getJob(press.jobId);
      const outcome = await recordDecision(approvals.redis, approvals.signer, approvals.workersKey, job, {
        ...press,
        by,
      });
      if (outcome.outcome === 'recorded')
        await new JobMessages(approvals.redis, approvals.signer).answered(press.jobId);
      return outcome;
    };
  }
  return jobs;
}

/** The ops-channel message that asked an agent's question: later events of that job edit it. */
export interface JobMessage {
  channelId: string;
  messageId: string;
  /** True once a human answered (before that, progress must not replace the buttons). */
  answered: boolean;
}

/** Kept as long as an approval: past any job that could still be waiting. */
const JOB_MESSAGE_TTL_SECONDS = 2 * 86_400;

export class JobMessages {
  private readonly records: SignedRecords<JobMessage>;

  constructor(
    private readonly redis: Redis,
    /** The gateway's key, as for TokenStore: a forged record would point the relay at another message. */
    signer: Signer,
  ) {
    this.records = new SignedRecords(redis, signer, 'job-message');
  }

  async save(jobId: string, message: { channelId: string; messageId: string }): Promise<void> {
    const value: JobMessage = { channelId: message.channelId, messageId: message.messageId, answered: false };
    await this.redis.set(keys.jobMessage(jobId), this.records.encode(jobId, value), 'EX', JOB_MESSAGE_TTL_SECONDS);
  }

  /**
   * Set by the gateway that recorded the signed answer — not read from the answer's key,
   * where a forged write would let progress replace the buttons before a human answered.
   */
  async answered(jobId: string): Promise<void> {
    const message = await this.get(jobId);
    if (message === null) return;
    const value = { ...message, answered: true };
    await this.redis.set(keys.jobMessage(jobId), this.records.encode(jobId, value), 'KEEPTTL');
  }

  async get(jobId: string): Promise<JobMessage | null> {
    return this.records.read(keys.jobMessage(jobId), jobId, (v) =>
      typeof v.channelId === 'string' && typeof v.messageId === 'string' && typeof v.answered === 'boolean'
        ? { channelId: v.channelId, messageId: v.messageId, answered: v.answered }
        : null,
    );
  }
}

/** What /jobs uses to see and control jobs. */
export interface BotJobAdmin {
  list(filter: JobFilter): Promise<JobSummary[]>;
  show(id: string): Promise<JobDetail | null>;
  cancel(id: string, actor: Actor): Promise<{ outcome: CancelOutcome; jobId: string }>;
  /** What a retry by `actor` would ask for: the original verified, `actor`'s policy allowing it. */
  planRetry(id: string, actor: Actor): Promise<RetryPlan>;
  /** `confirmed`: the actor pressed the confirmation a destructive type needs. */
  retry(
    id: string,
    actor: Actor,
    requestId: string,
    reply: ReplyTarget,
    options?: { confirmed?: boolean },
  ): Promise<EnqueueResult>;
}

/** `policy`: the gateway's authorization policy, which a retrier's new request is held to. */
export function botJobAdmin(enqueuer: Enqueuer, admin: JobAdmin, policy: AuthorizationPolicy): BotJobAdmin {
  return {
    list: (filter) => admin.list(filter, 15),
    show: (id) => admin.show(id),
    cancel: (id, actor) => admin.cancel(id, `${actor.userName} (Discord ${actor.userId})`),
    planRetry: (id, actor) => admin.planRetry(id, discordPrincipal(actor), { policy }),
    retry: (id, actor, requestId, reply, options = {}) =>
      admin.retry(id, enqueuer, discordPrincipal(actor), requestId, reply, { policy, confirmed: options.confirmed }),
  };
}
