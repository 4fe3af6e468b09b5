// The project's error classes. Every error that reaches a user carries one clear line
// (`message`) and an exit code: 1 when an operation failed, 2 for a usage error
// (bad arguments, a refused path, a wrong setting). Only `cli/main.ts` turns them into
// an exit; the bot turns them into an ephemeral reply.

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export class ClawError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT_FAILED, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** Bad arguments or option values: nothing was changed. */
export class UsageError extends ClawError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT_USAGE, options);
  }
}

/** A missing or wrong setting: the process stops before doing anything. */
export class ConfigError extends ClawError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT_USAGE, options);
  }
}

/** An operation that was attempted and failed (lock timeout, conflict, I/O, cloud call). */
export class OperationError extends ClawError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT_FAILED, options);
  }
}

/** The caller is not allowed to do this; says why without revealing the policy. */
export class RefusedError extends ClawError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT_FAILED, options);
  }
}

/** One line for any thrown value: our own errors as they are, anything else by its message. */
export function errorLine(err: unknown): string {
  if (err instanceof Error) return firstLine(err.message) || err.name;
  return firstLine(String(err));
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.trim();
}
