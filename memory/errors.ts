// The memory store's one error class: a code callers branch on, and one line for the user.
import { ClawError, EXIT_FAILED, EXIT_USAGE } from '../lib/errors.js';

export type MemoryErrorCode = 'not-found' | 'busy' | 'conflict' | 'too-large' | 'not-utf8' | 'not-a-file' | 'io';

export class MemoryError extends ClawError {
  readonly code: MemoryErrorCode;
  constructor(code: MemoryErrorCode, message: string, options?: ErrorOptions) {
    super(message, code === 'not-utf8' || code === 'not-a-file' ? EXIT_USAGE : EXIT_FAILED, options);
    this.code = code;
  }
}
