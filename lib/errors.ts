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
  if (err instanceof Error) return scrubTokens(firstLine(err.message) || err.name);
  return scrubTokens(firstLine(String(err)));
}

function firstLine(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.trim();
}

// ── errors in logs ───────────────────────────────────────────────────────────────────────
//
// Errors of HTTP clients carry what they sent: discord.js's DiscordAPIError and HTTPError
// keep the request URL (an interaction's callback or webhook URL holds its token:
// /interactions/<id>/<token>/callback, /webhooks/<app>/<token>/…) and the request body;
// pino's default serializer copies every enumerable field. Every error that reaches a log
// goes through serializeError instead (lib/log.ts installs it for the `err` key): a fixed set
// of fields, tokens replaced, bodies never.

const TOKEN_PATTERNS: [RegExp, string][] = [
  // An interaction's token: /interactions/<id>/<token>/callback
  [/(\/interactions\/[^/\s?#]+\/)[^/\s?#]+/g, '$1[token]'],
  // A webhook's (and an interaction's follow-up webhook's) token: /webhooks/<app id>/<token>
  [/(\/webhooks\/[^/\s?#]+\/)[^/\s?#]+/g, '$1[token]'],
  // An Authorization header's value, wherever it was quoted (tokens are long; words are not).
  [/\b(Bot|Bearer)\s+[A-Za-z0-9._~+/=-]{16,}/g, '$1 [token]'],
];

/** The text with every token this project knows the shape of replaced by `[token]`. */
export function scrubTokens(text: string): string {
  let out = text;
  for (const [pattern, replacement] of TOKEN_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** What a log line keeps of an error. */
export interface SerializedError {
  type: string;
  message: string;
  code?: string | number;
  status?: number;
  method?: string;
  /** The request's path (no origin, no query), tokens replaced. */
  path?: string;
  stack?: string;
  cause?: SerializedError;
}

function pathOf(url: unknown): string | undefined {
  if (typeof url !== 'string' || url === '') return undefined;
  let path = url;
  try {
    path = new URL(url).pathname;
  } catch {
    path = url.split(/[?#]/, 1)[0] ?? '';
  }
  return scrubTokens(path).slice(0, 300);
}

/**
 * The one way an error is put in a log (pino's `err` serializer and every `{ err }`): name,
 * message and stack with tokens replaced, code, status, method and the request path with
 * tokens replaced. Request bodies, headers and response bodies are never kept. A string (an
 * error line said elsewhere) is scrubbed the same way.
 */
export function serializeError(err: unknown, depth = 0): SerializedError | string {
  if (typeof err === 'string') return scrubTokens(err);
  if (!(err instanceof Error)) return scrubTokens(String(err));
  const e = err as Error & Record<string, unknown>;
  const out: SerializedError = { type: scrubTokens(String(e.name || 'Error')), message: scrubTokens(e.message) };
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code;
  if (typeof e.status === 'number') out.status = e.status;
  if (typeof e.method === 'string') out.method = e.method.slice(0, 10);
  const path = pathOf(e.url);
  if (path !== undefined) out.path = path;
  if (typeof e.stack === 'string') out.stack = scrubTokens(e.stack);
  if (e.cause !== undefined && depth < 3) {
    const cause = serializeError(e.cause, depth + 1);
    out.cause = typeof cause === 'string' ? { type: 'cause', message: cause } : cause;
  }
  return out;
}
