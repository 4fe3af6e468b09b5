// A job type is a module: its name, the zod schema and version of its data, who may ask for
// it, and its processor. Adding one is a file in jobs/types/ and a line in jobs/types/index.ts.
import type { z } from 'zod';
import type { Logger } from '../../lib/log.js';
import type { ApprovalExpectation, ApprovalRead } from './approval.js';
import type { Principal, ReplyTarget } from './envelope.js';
import type { Signer } from './queues.js';
import type { Steps } from './steps.js';

export interface JobContext<D> {
  jobId: string;
  data: D;
  principal: Principal;
  requestId: string;
  reply?: ReplyTarget;
  steps: Steps;
  /**
   * The workers' key (key id `schedule`): signs what this job publishes (events, a pending
   * confirmation); its public half verifies heartbeats (heartbeat.ts).
   */
  signer: Signer;
  log: Logger;
  /** Progress as data (step, percent, message); the gateways render it. */
  progress(message: string, percent?: number): Promise<void>;
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
  /** Agents may ask for this type, for peers only. */
  agentAllowed?: boolean;
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
   * rollout): a retry of it goes through the same confirmation as a new request.
   */
  destructive?: boolean;
  run(ctx: JobContext<z.output<S>>): Promise<unknown>;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds job types of every data shape
export type AnyJobType = JobType<any>;
