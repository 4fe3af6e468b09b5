// Structured logging (pino, JSON lines on stderr: stdout belongs to command output).
// Secrets are redacted by key wherever they appear up to two levels deep, as a second line
// of defence: the first is that no secret value is ever put in a log object.
// Imported only by the parts that log, so `clawdinator memory read` does not pay for pino.
// Errors go in as `{ err }` and through serializeError (lib/errors.ts): pino's default error
// serializer would copy a DiscordAPIError's URL (an interaction token) and request body.
import { type Logger, pino } from 'pino';
import { serializeError } from './errors.js';

export const SECRET_KEYS = [
  'token',
  'password',
  'secret',
  'privateKey',
  'private_key',
  'authorization',
  'auth',
  'apiKey',
  'signature',
  'credentials',
  'sessionToken',
  'secretAccessKey',
];

const redactPaths = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

export type { Logger };

export function createLogger(
  level: string,
  destination: pino.DestinationStream = pino.destination({ fd: 2, sync: false }),
): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: redactPaths, censor: '[redacted]' },
      serializers: { err: (err: unknown) => serializeError(err) },
    },
    destination,
  );
}
