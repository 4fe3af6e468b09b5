// Secrets out of text that leaves the control plane (a job's log in Redis, a job's final
// message): by value where the caller knows them (a key a job just made, a secret it read),
// and by pattern for the kinds that have one. A second line of defence: the first is that no
// secret value is ever passed to a command's output or an error. Lines come one at a time
// (terraform's output as it streams), so a PEM block is followed across lines.

export const REDACTED = '[redacted]';

/** Values shorter than this are not redacted by value: they would blank out ordinary words. */
const MIN_VALUE_LENGTH = 8;

const PATTERNS: [RegExp, string][] = [
  // AWS access key ids and secret access keys (the key = value forms of config and env files).
  [/\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, REDACTED],
  [
    /(aws_secret_access_key|secretaccesskey|aws_session_token|sessiontoken)(["'\s:=]+)[A-Za-z0-9/+=]{16,}/gi,
    `$1$2${REDACTED}`,
  ],
  // GitHub tokens (installation, OAuth, personal, fine-grained).
  [/\bgh[pousr]_[A-Za-z0-9]{20,}\b/g, REDACTED],
  [/\bgithub_pat_[A-Za-z0-9_]{20,}\b/g, REDACTED],
  // Discord bot tokens: three base64url parts.
  [/\b[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,40}\b/g, REDACTED],
  // JWTs (a GitHub App's, an STS web identity's).
  [/\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b/g, REDACTED],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, `$1 ${REDACTED}`],
  // A password in a URL (redis://:pw@host, https://user:pw@host).
  [/([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]+@/gi, `$1${REDACTED}@`],
  // key = value, key: value, "key": "value" for the names secrets go by.
  [
    /(\b(?:password|passwd|secret|token|auth_token|api_key|apikey|private_key|client_secret)\b["']?\s*[:=]\s*["']?)[^\s"',;]{4,}/gi,
    `$1${REDACTED}`,
  ],
];

const PEM_BEGIN = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
const PEM_END = /-----END [A-Z0-9 ]*PRIVATE KEY-----/;

/** Redacts one text (several lines at once are fine) by known values and patterns. */
export function redactText(text: string, known: Iterable<string> = []): string {
  let out = text;
  for (const value of known) {
    if (value.length >= MIN_VALUE_LENGTH) out = out.split(value).join(REDACTED);
  }
  // A whole PEM private key inside one text.
  out = out.replace(
    /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g,
    REDACTED,
  );
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/**
 * A redactor for a stream of lines: known values (each line of a multi-line value too) and
 * patterns, and every line between a PEM private key's BEGIN and END.
 */
export class LineRedactor {
  private readonly known = new Set<string>();
  private inPem = false;

  /** A secret value this stream must never show. */
  add(value: string): void {
    if (value.length >= MIN_VALUE_LENGTH) this.known.add(value);
    for (const line of value.split('\n')) {
      const trimmed = line.trim();
      if (trimmed.length >= MIN_VALUE_LENGTH) this.known.add(trimmed);
    }
  }

  /** A whole text (a final message), without touching the stream's PEM state. */
  text(text: string): string {
    return redactText(text, this.known);
  }

  line(text: string): string {
    if (this.inPem) {
      if (PEM_END.test(text)) this.inPem = false;
      return REDACTED;
    }
    if (PEM_BEGIN.test(text) && !PEM_END.test(text)) {
      this.inPem = true;
      return redactText(text.replace(/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*$/, REDACTED), this.known);
    }
    return redactText(text, this.known);
  }
}
