// A job type is a module: its name, the zod schema and version of its data, who may ask for
// it, and its processor. Adding one is a file in jobs/types/ and a line in jobs/types/index.ts.
import type { z } from 'zod';
import type { Logger } from '../../lib/log.js';
import type { ApprovalExpectation, ApprovalRead } from './approval.js';
import type { Principal, ReplyTarget } from './envelope.js';
import type { Signer } from './queues.js';
import type { Steps } from './steps.js';

/** What a processor uses of its steps; a job that runs another's steps inline scopes them (scoped-steps.ts). */
export type StepRunner = Pick<Steps, 'run' | 'waitFor' | 'done' | 'results' | 'checkCancelled'>;

export interface JobContext<D> {
  jobId: string;
  data: D;
  principal: Principal;
  requestId: string;
  reply?: ReplyTarget;
  steps: StepRunner;
  /**
   * The workers' key (key id `schedule`): signs what this job publishes (events, a pending
   * confirmation); its public half verifies heartbeats (heartbeat.ts).
   */
  signer: Signer;
  log: Logger;
  /**
   * Progress as data (message, percent, and the stage it belongs to, which the gateways may
   * draw, e.g. a rebuild's stage list); the gateways render it.
   */
  progress(message: string, percent?: number, step?: string): Promise<void>;
  /**
   * A line of command output (terraform, SSM) for the job's log in Redis, where `jobs show`
   * reads it: redacted and bounded (job-log.ts). Never a plan's values. Given by the worker.
   */
  output?(line: string): void;
  /** A secret value this job knows (a key it made): never shown in its log or messages. */
  secret?(value: string): void;
  /**
   * A human's signed answer to this job's confirmation request, verified with the gateway's
   * public key and the policy (see approval.ts). Given by the worker.
   */
  readApproval?(expected: Omit<ApprovalExpectation, 'jobId' | 'requestId'>): Promise<ApprovalRead>;
}

export interface JobType<S extends z.ZodTypeAny = z.ZodTypeAny> {
  name: string;
  /** Schema version of `data`; a worker leaves versions it does not know to one that does. */
  version: number;
  schema: S;
  /** The permission key re-checked by the worker for Discord users, e.g. "spawn". */
  permission: string;
  /** Created by the workers' own schedulers (the only types a schedule principal may run). */
  scheduled?: boolean;
  /**
   * Agents may ask for this type: `true` for peers only (a fleet action, never about itself);
   * 'own-host' for its own host only (a host-local request: its GitHub token's early refresh).
   */
  agentAllowed?: boolean | 'own-host';
  /** The fleet member this job operates on: one operation per member at a time. */
  instanceOf?(data: z.output<S>): string | undefined;
  /** Runs on that host's own queue instead of the fleet queue. */
  hostLocal?: boolean;
  /**
   * Never deploy yourself: the job acts on the host `instanceOf` names (a retire, a replace),
   * so that host's own worker hands it to a peer's worker while a healthy one exists.
   */
  avoidOwnHost?: boolean;
  attempts?: number;
  /**
   * Destroys or replaces something that cannot be taken back (retire, replace; a fleet
   * rollout): a retry of it goes through the same confirmation as a new request. A function
   * when only some requests of the type are (a rebuild that rolls out).
   */
  destructive?: boolean | ((data: z.output<S>) => boolean);
  /**
   * The job's steps in order, for this request (an agent's retire has its confirmation steps
   * first): the finalizer names the step a job ended at, the first of these not saved.
   */
  steps?(data: z.output<S>, principal: Principal): readonly string[];
  /**
   * The job's end when it did not succeed, whatever ended it: run once by the finalizer
   * (finalize.ts) from the request and its saved steps alone — no processor state, since a
   * stall or a removal ends a job without any processor running. Undoes what the saved steps
   * say was made, writes the audit line, and returns the final message. A crash part-way runs
   * it again: each part is either idempotent or wrapped in `end.once`.
   */
  finalize?(end: JobEnd<z.output<S>>): Promise<FinalReport>;
  run(ctx: JobContext<z.output<S>>): Promise<unknown>;
}

/** What ended a job that did not succeed. */
export type EndKind = 'refused' | 'failed' | 'cancelled' | 'removed' | 'stalled';

export interface JobEnd<D> {
  jobId: string;
  data: D;
  principal: Principal;
  requestId: string;
  /** The results of the steps the job saved (verified with the workers' key; empty if not). */
  steps: Record<string, unknown>;
  /** The step it ended at: the first of the type's steps not saved ('checks' by default). */
  step: string;
  how: EndKind;
  /** The first line that says why (a refusal, terraform's error, "cancelled by …"). */
  cause: string;
  log: Logger;
  /** A line for the job's log (what an undo's terraform said), redacted as the job's own. */
  output(line: string): void;
  /** Runs `fn` once per job across resumed finalizations: its result is kept in Redis. */
  once<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export interface FinalReport {
  /** For the requester: the step, the cause, what was undone or is left, the next command. */
  message: string;
  /** Added to the job's failedReason when the processor ended it ("undone: …"). */
  undone?: string;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds job types of every data shape
export type AnyJobType = JobType<any>;
