// The simulated world's fault registry: "the next N times this happens, it fails". Every
// simulated operation consults it — the cloud's API calls (by service, by named step such as
// `run-instances`, or by exact AWS operation name), the simulated deployer's plan and apply,
// the sandbox's host heartbeats — so a user can watch a failure, its message and its clean-up
// (`/sim fail apply times:5`), and tests can put a failure exactly where they want it.
// Later parts add their own names with `define` (the image job's `import`, the deploy's
// `switch`).
import { UsageError } from '../../lib/errors.js';

export interface Fault {
  /** The fault name or AWS operation it was armed for. */
  target: string;
  /** AWS error code a failing API call answers with; a default per service otherwise. */
  code?: string;
  /** What the failure says (a terraform error, a command's output). */
  message?: string;
}

interface Armed {
  remaining: number;
  code?: string;
  message?: string;
}

/** The names every simulated world knows, with what each makes fail. */
export const BUILTIN_FAULTS: Record<string, string> = {
  plan: 'the plan of a member stack (terraform plan)',
  apply: 'the apply of a member stack (terraform apply)',
  'run-instances': 'EC2 RunInstances (the launch terraform makes)',
  ssm: 'every SSM call (SendCommand, GetCommandInvocation, DescribeInstanceInformation)',
  heartbeat: 'simulated hosts writing their worker heartbeat (one skipped write per time)',
  s3: 'every S3 call',
  secrets: 'every Secrets Manager call',
  iam: 'every IAM call (a member role or instance profile looked up, created or deleted)',
  import: 'ImportSnapshot and the polling of its task',
};

/** An AWS operation name (PascalCase), which may be armed directly as well. */
const OPERATION = /^[A-Z][A-Za-z0-9]{2,63}$/;
const MAX_TIMES = 1000;

export class FaultRegistry {
  private readonly known = new Map(Object.entries(BUILTIN_FAULTS));
  private readonly armed = new Map<string, Armed>();

  /** Adds a fault name (idempotent). */
  define(name: string, description: string): void {
    this.known.set(name, description);
  }

  /** The next `times` occurrences of `target` fail. Unknown names are refused, listing the known. */
  arm(target: string, options: { times?: number; code?: string; message?: string } = {}): void {
    const times = options.times ?? 1;
    if (!Number.isInteger(times) || times < 1 || times > MAX_TIMES) {
      throw new UsageError(`times must be a whole number from 1 to ${MAX_TIMES}, not ${times}`);
    }
    if (!this.known.has(target) && !OPERATION.test(target)) {
      throw new UsageError(
        `no fault named ${JSON.stringify(target.slice(0, 60))}: one of ${[...this.known.keys()].join(', ')}, or an AWS operation name such as TerminateInstances`,
      );
    }
    if (options.code !== undefined && !/^[A-Za-z][A-Za-z0-9.]{1,80}$/.test(options.code)) {
      throw new UsageError(`code must be an AWS error code such as AccessDeniedException`);
    }
    const current = this.armed.get(target);
    this.armed.set(target, {
      remaining: (current?.remaining ?? 0) + times,
      code: options.code ?? current?.code,
      message: options.message ?? current?.message,
    });
  }

  /**
   * The first of `targets` that is armed, spending one of its times; undefined when none is.
   * Call it where the operation happens, once per occurrence.
   */
  take(...targets: string[]): Fault | undefined {
    for (const target of targets) {
      const armed = this.armed.get(target);
      if (armed === undefined) continue;
      armed.remaining--;
      if (armed.remaining <= 0) this.armed.delete(target);
      const fault: Fault = { target };
      if (armed.code !== undefined) fault.code = armed.code;
      if (armed.message !== undefined) fault.message = armed.message;
      return fault;
    }
    return undefined;
  }

  /** Every known name with its description and how many failures are still armed. */
  list(): { name: string; description: string; remaining: number }[] {
    const names = new Set([...this.known.keys(), ...this.armed.keys()]);
    return [...names].map((name) => ({
      name,
      description: this.known.get(name) ?? 'AWS operation',
      remaining: this.armed.get(name)?.remaining ?? 0,
    }));
  }

  /** Disarms one target, or everything. */
  clear(target?: string): void {
    if (target === undefined) this.armed.clear();
    else this.armed.delete(target);
  }
}
