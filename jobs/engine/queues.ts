// Adding jobs: validate the data with the type's schema, sign the request, take the
// member's lock, and add it with BullMQ deduplication keyed by the request (interaction) id,
// so the same interaction delivered twice, or to two gateways, makes one job.

import type { KeyObject } from 'node:crypto';
import { type JobsOptions, Queue } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { UsageError } from '../../lib/errors.js';
import { newNonce, signPayload } from '../signing.js';
import {
  type Envelope,
  expectedKeyId,
  type Principal,
  type ReplyTarget,
  requestIdSchema,
  type SignedRequest,
} from './envelope.js';
import type { AnyJobType } from './job-type.js';
import { type OpenJobArgs, openJobArgs } from './journal.js';
import { FLEET_QUEUE, hostQueue } from './keys.js';
import { acquireInstanceLock, releaseInstanceLock } from './locks.js';

export interface Signer {
  keyId: string;
  key: KeyObject;
}

/** Failed jobs are kept for inspection, bounded, so Redis memory does not grow without end. */
export const RETENTION: Pick<JobsOptions, 'removeOnComplete' | 'removeOnFail'> = {
  removeOnComplete: { age: 7 * 24 * 3600, count: 1000 },
  removeOnFail: { age: 30 * 24 * 3600, count: 1000 },
};

export class JobTypes {
  private readonly byName: Map<string, AnyJobType>;
  constructor(types: AnyJobType[]) {
    this.byName = new Map(types.map((t) => [t.name, t]));
  }
  get(name: string): AnyJobType | undefined {
    return this.byName.get(name);
  }
  all(): AnyJobType[] {
    return [...this.byName.values()];
  }
}

export function queueNameFor(type: AnyJobType, data: unknown): string {
  if (!type.hostLocal) return FLEET_QUEUE;
  const host = type.instanceOf?.(data);
  if (host === undefined) throw new UsageError(`${type.name}: host-local job without a host`);
  return hostQueue(host);
}

export interface EnqueueRequest {
  type: string;
  data: unknown;
  principal: Principal;
  requestId: string;
  reply?: ReplyTarget;
}

export interface EnqueueResult {
  jobId: string;
  queue: string;
}

export function jobIdFor(type: string, requestId: string): string {
  return `${type}-${requestId}`;
}

export function signRequest(signer: Signer, request: Omit<SignedRequest, 'keyId' | 'issuedAt' | 'nonce'>): Envelope {
  const signed: SignedRequest = { ...request, keyId: signer.keyId, issuedAt: Date.now(), nonce: newNonce() };
  return { signed, signature: signPayload(signed, signer.key) };
}

/** The first retry's delay on a fleet (see Enqueuer's options). */
export const RETRY_DELAY_MS = 5000;

export class Enqueuer {
  private readonly queues = new Map<string, Queue>();
  private journalBatch: OpenJobArgs[] = [];
  private journalTimer: NodeJS.Timeout | undefined;
  private journalWrites: Promise<void> = Promise.resolve();

  constructor(
    private readonly connection: RedisOptions,
    private readonly redis: Redis,
    private readonly types: JobTypes,
    private readonly signer: Signer,
    /**
     * The first retry's delay (BullMQ's exponential backoff doubles it): 5 s on a fleet, where
     * a retry waits out a throttled or briefly unreachable service; the fast sandbox and the
     * tests take less, as they take zero cloud delays.
     */
    private readonly options: { retryDelayMs?: number } = {},
  ) {}

  queue(name: string): Queue {
    let q = this.queues.get(name);
    if (q === undefined) {
      q = new Queue(name, { connection: this.connection });
      this.queues.set(name, q);
    }
    return q;
  }

  async enqueue(req: EnqueueRequest): Promise<EnqueueResult> {
    const { type, data } = this.check(req.type, req.data, req.requestId);
    if (expectedKeyId(req.principal) !== this.signer.keyId) {
      throw new UsageError(`this process signs as ${this.signer.keyId} and cannot ask as ${req.principal.kind}`);
    }
    const envelope = signRequest(this.signer, {
      type: type.name,
      jobId: jobIdFor(type.name, req.requestId),
      schema: type.version,
      data,
      principal: req.principal,
      requestId: req.requestId,
      reply: req.reply,
    });
    return this.add(type, data, envelope);
  }

  /**
   * Adds a request signed elsewhere, as it is: an agent's, relayed by its host's gateway
   * (bot/request-socket.ts), which checked the signature; the worker verifies it again. The
   * same checks as `enqueue` run on it, and its job id must be the one its request id makes.
   */
  async enqueueSigned(envelope: Pick<Envelope, 'signed' | 'signature'>): Promise<EnqueueResult> {
    const { signed } = envelope;
    const { type, data } = this.check(signed.type, signed.data, signed.requestId);
    if (signed.schema !== type.version) {
      throw new UsageError(
        `${type.name}: signed for schema version ${signed.schema}, this gateway runs ${type.version}`,
      );
    }
    if (signed.jobId !== jobIdFor(type.name, signed.requestId)) {
      throw new UsageError(`${type.name}: the job id must be ${jobIdFor(type.name, signed.requestId)}`);
    }
    if (signed.keyId !== expectedKeyId(signed.principal))
      throw new UsageError('the key id does not match the principal');
    return this.add(type, data, { signed, signature: envelope.signature });
  }

  /** The type, the request id and the data checked; the data as the type's schema parses it. */
  private check(typeName: string, raw: unknown, requestId: string): { type: AnyJobType; data: unknown } {
    const type = this.types.get(typeName);
    if (type === undefined) throw new UsageError(`unknown job type "${typeName}"`);
    if (!requestIdSchema.safeParse(requestId).success) {
      throw new UsageError('request id: letters, digits, - and _ only (at most 64)');
    }
    const parsed = type.schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new UsageError(`${type.name}: invalid ${issue?.path.join('.') || 'data'}: ${issue?.message ?? 'invalid'}`);
    }
    return { type, data: parsed.data };
  }

  /** Takes the member's lock and adds the job, deduplicated by its request id. */
  private async add(type: AnyJobType, data: unknown, envelope: Envelope): Promise<EnqueueResult> {
    const { jobId, requestId } = envelope.signed;
    const queueName = queueNameFor(type, data);
    const queue = this.queue(queueName);
    const instance = type.instanceOf?.(data);
    if (instance !== undefined) await acquireInstanceLock(this.redis, queue, instance, jobId);
    let added: { id?: string };
    try {
      added = await queue.add(type.name, envelope, {
        jobId,
        deduplication: { id: requestId },
        attempts: type.attempts ?? 3,
        backoff: { type: 'exponential', delay: this.options.retryDelayMs ?? RETRY_DELAY_MS },
        ...RETENTION,
      });
    } catch (err) {
      if (instance !== undefined) await releaseInstanceLock(this.redis, instance, jobId);
      throw err;
    }
    // A request merged into another job by its request id has no job of its own to journal
    // (nor to hold the member's lock); the same request again (BullMQ keeps the job it has
    // under this id) keeps the first entry.
    if (added.id !== jobId) {
      if (instance !== undefined) await releaseInstanceLock(this.redis, instance, jobId);
    } else {
      this.journal(openJobArgs(jobId, queueName, envelope));
    }
    return { jobId, queue: queueName };
  }

  /**
   * Journals an added job (finalize.ts: a removed job's data is gone from BullMQ) in the next
   * batch, written JOURNAL_BATCH_MS after its first entry, all in one pipeline. Not awaited by
   * the enqueue, and not right after the add: a write beside the job's pickup delays its start
   * (every command is a write to a socket and a wake of Redis; measured: ≈ 0.08× of the
   * job-start row's p99 ratio), and a job that ends within the batch is never journaled
   * (OPEN_JOB finds it finalized). A removal before its entry is written is finalized by the
   * sweep (the entry is written all the same, the job is then missing from its queue); the
   * first step save writes an entry not written yet (journal.ts). A batch that fails is tried
   * once more.
   */
  private journal(args: OpenJobArgs): void {
    this.journalBatch.push(args);
    this.journalTimer ??= setTimeout(() => void this.flushJournal(), JOURNAL_BATCH_MS);
  }

  /** Writes the journal entries gathered so far; resolves once they are written (or given up). */
  flushJournal(): Promise<void> {
    clearTimeout(this.journalTimer);
    this.journalTimer = undefined;
    const batch = this.journalBatch.splice(0);
    if (batch.length > 0) {
      this.journalWrites = this.journalWrites.then(async () => {
        const failed = await writeJournal(this.redis, batch);
        if (failed.length > 0) await writeJournal(this.redis, failed);
      });
    }
    return this.journalWrites;
  }

  async close(): Promise<void> {
    await this.flushJournal();
    const queues = [...this.queues.values()];
    await startedUp(queues);
    await Promise.all(queues.map((q) => q.close()));
  }
}

/** How long the enqueuer gathers journal entries before it writes them (see Enqueuer.journal). */
export const JOURNAL_BATCH_MS = 50;

/** Writes journal entries in one pipeline; returns those whose write failed. */
async function writeJournal(redis: Redis, batch: OpenJobArgs[]): Promise<OpenJobArgs[]> {
  const pipeline = redis.pipeline();
  for (const args of batch) pipeline.eval(...args);
  const results = await pipeline.exec().catch(() => null);
  return batch.filter((_, i) => results?.[i]?.[0] !== null);
}

/** How long a close waits for connections still starting up (see startedUp). */
const STARTUP_GRACE_MS = 5000;

/**
 * Waits (a few seconds at most: Redis may be down) until BullMQ components have connected.
 * One closed while its connection still starts up is disconnected, and the start-up commands
 * BullMQ sent without awaiting them reject unhandled ("Connection is closed"), which crashes
 * a process that treats unhandled rejections as fatal: a worker or queue stopped right after
 * it started (a gateway refusing its settings, a test) waits for them first.
 */
export async function startedUp(components: { waitUntilReady(): Promise<unknown> }[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, STARTUP_GRACE_MS);
  });
  try {
    await Promise.race([Promise.allSettled(components.map((c) => c.waitUntilReady())), grace]);
  } finally {
    clearTimeout(timer);
  }
}
