// Resumable steps: a job is a sequence of named steps; each step's result is saved into the
// job (job.updateData) before the next starts, and a retried or resumed job skips the steps
// already done. A step's side effect must be idempotent by itself (a worker can die between
// the effect and the save): pass a client token or look up what an earlier attempt made.
//
// Long waits do not hold a worker: `waitFor` checks once, and when not ready saves the
// state and re-delays the job (BullMQ's step-job pattern: moveToDelayed + DelayedError).
//
// The saved results decide what a resumed job skips and which ids it acts on (an instance, a
// plan, an approval's expiry), so they are signed with the workers' key each time they are
// saved, bound to the job id and the request's nonce; the worker checks that signature before
// a resumed job runs (`verifyStepState`), as it checks the request's.
import type { KeyObject } from 'node:crypto';
import { DelayedError, type Job, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { signPayload, verifyPayload } from '../signing.js';
import type { Envelope } from './envelope.js';
import { updateOpenJobArgs } from './journal.js';
import { keys } from './keys.js';
import type { Signer } from './queues.js';

export class JobCancelled extends UnrecoverableError {
  constructor(jobId: string) {
    super(`cancelled: ${jobId} was cancelled`);
    this.name = 'JobCancelled';
  }
}

export interface WaitOptions {
  pollMs: number;
  timeoutMs: number;
  /** Said when the deadline passes. */
  timeoutMessage: string;
}

/** What the step signature covers: the steps of this job, for this request only. */
function stepPayload(jobId: string, nonce: string, steps: Record<string, unknown>) {
  return { jobId, nonce, steps };
}

/**
 * Whether a job's saved steps were saved by a worker holding the workers' key: true for a job
 * with no saved steps yet. `publicKey` is the workers' public key.
 */
export function verifyStepState(job: Job, envelope: Envelope, publicKey: KeyObject): boolean {
  const steps = envelope.steps ?? {};
  if (Object.keys(steps).length === 0) return true;
  if (envelope.stepsSignature === undefined) return false;
  return verifyPayload(stepPayload(job.id as string, envelope.signed.nonce, steps), envelope.stepsSignature, publicKey);
}

export class Steps {
  private readonly saved: Record<string, unknown>;

  constructor(
    private readonly job: Job<Envelope>,
    private readonly token: string | undefined,
    private readonly redis: Redis,
    /** The workers' key: every save is signed with it. */
    private readonly signer: Signer,
    private readonly onStep: (name: string) => Promise<void> = async () => {},
  ) {
    this.saved = { ...(job.data.steps ?? {}) };
  }

  /** Results saved so far (a copy). */
  get results(): Record<string, unknown> {
    return { ...this.saved };
  }

  done(name: string): boolean {
    return Object.hasOwn(this.saved, name);
  }

  /** Runs `fn` unless the step already completed, then saves its result before going on. */
  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (this.done(name)) return this.saved[name] as T;
    await this.checkCancelled();
    await this.onStep(name);
    const result = await fn();
    await this.save(name, result === undefined ? null : result);
    return result;
  }

  /**
   * Waits for `check` to return a value without holding the worker: when not ready, the
   * job is re-delayed by `pollMs` and the processor runs again from the top (completed
   * steps are skipped). Gives up after `timeoutMs` from the first check.
   */
  async waitFor<T>(name: string, check: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
    if (this.done(name)) return this.saved[name] as T;
    await this.checkCancelled();
    const startKey = `${name}:waiting-since`;
    const since = typeof this.saved[startKey] === 'number' ? (this.saved[startKey] as number) : Date.now();
    // Said before the look, so what the look itself reports (an import's percent) is the
    // progress that stays on screen while the job waits.
    await this.onStep(name);
    const value = await check();
    if (value !== undefined) {
      await this.save(name, value);
      return value;
    }
    if (Date.now() - since > options.timeoutMs) throw new UnrecoverableError(options.timeoutMessage);
    if (this.saved[startKey] === undefined) await this.save(startKey, since);
    await this.job.moveToDelayed(Date.now() + options.pollMs, this.token);
    throw new DelayedError();
  }

  async checkCancelled(): Promise<void> {
    if ((await this.redis.exists(keys.cancel(this.job.id as string))) === 1)
      throw new JobCancelled(this.job.id as string);
  }

  private async save(name: string, value: unknown): Promise<void> {
    this.saved[name] = value;
    const steps = { ...this.saved };
    const payload = stepPayload(this.job.id as string, this.job.data.signed.nonce, steps);
    const stepsSignature = signPayload(payload, this.signer.key);
    const data = { ...this.job.data, steps, stepsSignature };
    await this.job.updateData(data);
    // The journal's copy: a job removed later is finalized from what its steps say it made.
    const scheduled = this.job.data.signed.jobId === '*';
    await this.redis.eval(
      ...updateOpenJobArgs(this.job.id as string, this.job.queueName, JSON.stringify(data), !scheduled),
    );
  }
}
