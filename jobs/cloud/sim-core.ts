// What every service of the simulated cloud shares: the clock and timings, AWS-shaped ids,
// the call recorder, the fault registry and the optional IAM authorizer. Every simulated API
// call goes through `call()` exactly once, before it changes anything: it is recorded with
// what IAM would evaluate, then fails if a fault is armed for it or the authorizer denies one
// of its actions — as AWS fails a call before acting on it.
import { type Clock, realClock } from './clock.js';
import { CloudError } from './errors.js';
import { Arns, type AuthRequest, CallRecorder, type SimCallRecord, type SimService } from './sim-calls.js';
import { FaultRegistry } from './sim-faults.js';

/** Simulated durations, in milliseconds of the sim's clock. */
export interface SimTimings {
  /** `pending` → `running`. */
  instanceBootMs: number;
  /** `running` → the SSM agent `Online` (the host has booted and bootstrapped). */
  ssmOnlineMs: number;
  /** `shutting-down` → `terminated`. */
  instanceShutdownMs: number;
  /** Import task `active` → `completed` (a failing one fails halfway). */
  importMs: number;
  /** Registered image `pending` → `available`. */
  imageAvailableMs: number;
  /** SSM invocation `InProgress` → done, unless the command handler says otherwise. */
  commandMs: number;
  /** A host's detached switch (nixos-rebuild switch and its health check) → its result file. */
  switchMs: number;
}

/** Roughly what AWS takes; run it on a scaled clock to watch it at a human pace. */
export const defaultSimTimings: SimTimings = {
  instanceBootMs: 30_000,
  ssmOnlineMs: 60_000,
  instanceShutdownMs: 30_000,
  importMs: 20 * 60_000,
  imageAvailableMs: 3 * 60_000,
  commandMs: 10_000,
  switchMs: 90_000,
};

/** Every transition at once: for measuring orchestration overhead alone. */
export const instantSimTimings: SimTimings = {
  instanceBootMs: 0,
  ssmOnlineMs: 0,
  instanceShutdownMs: 0,
  importMs: 0,
  imageAvailableMs: 0,
  commandMs: 0,
  switchMs: 0,
};

/**
 * Decides whether `principal` may do one action of a call (the IAM test plugs the synthesized
 * policies in here). Without one, everything is allowed.
 */
export type SimAuthorizer = (principal: string, request: AuthRequest, operation: string) => boolean | Promise<boolean>;

/** The error code each service answers a denial with, as AWS does. */
const DENIED_CODE: Record<SimService, string> = {
  ec2: 'UnauthorizedOperation',
  s3: 'AccessDenied',
  ssm: 'AccessDeniedException',
  secrets: 'AccessDeniedException',
  iam: 'AccessDenied',
};

/** The code of an injected failure that names none: the service's own internal error. */
const FAULT_CODE: Record<SimService, string> = {
  ec2: 'InternalError',
  s3: 'InternalError',
  ssm: 'InternalServerError',
  secrets: 'InternalServiceError',
  iam: 'ServiceFailure',
};

/** Named faults that cover one operation, beside the service's own name and the operation. */
const STEP_FAULTS: Record<string, string> = {
  RunInstances: 'run-instances',
  ImportSnapshot: 'import',
  DescribeImportSnapshotTasks: 'import',
};

export interface SimCoreOptions {
  clock?: Clock;
  timings?: Partial<SimTimings>;
  account?: string;
  region?: string;
  authorize?: SimAuthorizer;
  /** Records kept for the IAM test (older ones are dropped); counts are never dropped. */
  recordLimit?: number;
}

export class SimCore {
  readonly clock: Clock;
  readonly timings: SimTimings;
  readonly arns: Arns;
  readonly recorder: CallRecorder;
  readonly faults = new FaultRegistry();
  authorize: SimAuthorizer | null;
  private serial = 0;

  constructor(options: SimCoreOptions) {
    this.clock = options.clock ?? realClock;
    this.timings = { ...defaultSimTimings, ...options.timings };
    this.arns = new Arns(options.account ?? '123456789012', options.region ?? 'eu-central-1');
    this.authorize = options.authorize ?? null;
    this.recorder = new CallRecorder(options.recordLimit);
  }

  /**
   * One API call: recorded, then failed when a fault is armed for it (by operation name, the
   * service's name or its step's name) or when the authorizer denies one of its actions.
   * `resource` is what the error line names.
   */
  async call(
    principal: string,
    service: SimService,
    operation: string,
    resource: string,
    requests: AuthRequest[],
  ): Promise<SimCallRecord> {
    const record = this.recorder.add({ at: this.clock.now(), principal, service, operation, requests });
    const step = STEP_FAULTS[operation];
    const fault = this.faults.take(operation, service, ...(step === undefined ? [] : [step]));
    if (fault !== undefined) {
      const code = fault.code ?? FAULT_CODE[service];
      record.error = code;
      throw new CloudError({
        operation,
        resource,
        code,
        ...(fault.message === undefined ? {} : { detail: fault.message }),
        ...(fault.code === undefined ? { httpStatus: 500 } : {}),
      });
    }
    for (const request of requests) {
      if (!(await this.allows(principal, request, operation))) {
        throw this.denied(record, operation, resource, request);
      }
    }
    return record;
  }

  /**
   * A further authorization within a call already made (BatchGetSecretValue checks each
   * secret): added to the call's record; false when denied, which the service reports its way.
   */
  async authorizeWithin(record: SimCallRecord, request: AuthRequest): Promise<boolean> {
    record.requests.push(request);
    return this.allows(record.principal, request, record.operation);
  }

  /** The denial error of `service`, recorded on the call. */
  denied(record: SimCallRecord, operation: string, resource: string, request: AuthRequest): CloudError {
    const code = DENIED_CODE[record.service];
    record.error = code;
    return new CloudError({
      operation,
      resource,
      code,
      kind: 'access-denied',
      detail: `${record.principal} is not authorized to perform ${request.action} on ${request.resource}`,
    });
  }

  private async allows(principal: string, request: AuthRequest, operation: string): Promise<boolean> {
    return this.authorize === null || (await this.authorize(principal, request, operation));
  }

  /** AWS-shaped ids (prefix + 17 hex digits), deterministic so tests can name them. */
  newId(prefix: string): string {
    this.serial++;
    return `${prefix}${this.serial.toString(16).padStart(17, '0')}`;
  }

  newCommandId(): string {
    this.serial++;
    return `00000000-0000-4000-8000-${this.serial.toString(16).padStart(12, '0')}`;
  }

  /** Sleeps until `at`; throws the timeout error when there is no time left before `deadline`. */
  async sleepUntil(at: number, deadline: number, timeout: () => CloudError): Promise<void> {
    const now = this.clock.now();
    if (now >= deadline) throw timeout();
    await this.clock.sleep(Math.max(0, at - now));
  }
}

/** The request for an action that takes no resource (`Describe*`, `List*`). */
export function anyResource(action: string, context: Record<string, string | string[]> = {}): AuthRequest {
  return { action, resource: '*', context };
}
