// Secrets out of text that leaves a host: journal lines (`/logs`), the switch's output tail,
// doctor's evidence. Used on the host itself (`clawdinator host redact`, which the shipped
// script pipes everything through before SSM carries it off), by the simulated hosts, and
// again by the control plane on what comes back (a second line of defence).
//
// Two ways, both needed:
//   by value    every secret the host holds (the files under the ops and agent secrets
//               dirs): the whole value and each of its lines of 8 characters or more (a PEM
//               key is many lines; a journal line may hold one of them);
//   by pattern  what a secret looks like even when the host does not hold it (a token an
//               agent printed, a key in an error message): GitHub, AWS, Discord, model
//               provider keys, PEM blocks, `password=…` and `Authorization:` values.
// A value shorter than 8 characters is not replaced by value (it would blank out ordinary
// words); a secret that short is not one.

export const REDACTED = '[redacted]';
const MIN_VALUE = 8;

/**
 * What a secret looks like, wherever it comes from. A pattern with a `keep` group keeps that
 * part (the name and separator of `password=…`) and replaces the rest.
 */
export const SECRET_PATTERNS: RegExp[] = [
  // PEM blocks, whole (a key printed in full).
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g,
  // GitHub: installation, user, OAuth, refresh and fine-grained tokens; App JWTs.
  /\b(?:gh[opsur]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,})\b/g,
  /\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/g,
  // AWS access key ids; secret keys and session tokens after their names.
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g,
  /(?<keep>(?:aws_secret_access_key|aws_session_token|secretAccessKey|sessionToken)["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{16,}/gi,
  // Discord bot tokens (id.timestamp.hmac).
  /\b[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}\b/g,
  // Model provider and Slack keys.
  /\b(?:sk-(?:ant-)?[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,})\b/g,
  // name=value and name: value for secret-sounding names; Authorization headers.
  /(?<keep>\b(?:password|passwd|secret|token|api[_-]?key|auth[_-]?token|access[_-]?token|requirepass)["']?\s*[:=]\s*["']?)[^\s"',;]{6,}/gi,
  /(?<keep>\bauthorization:\s*(?:bearer|token|basic)\s+)[A-Za-z0-9._~+/=-]{8,}/gi,
  // nix's own: `access-tokens = github.com=<token>`.
  /(?<keep>access-tokens\s*=\s*[^=\s]+=)\S+/g,
];

/** The pieces of each secret value that are replaced wherever they appear. */
export function secretPieces(values: Iterable<string>): string[] {
  const pieces = new Set<string>();
  for (const raw of values) {
    const value = raw.trim();
    if (value.length >= MIN_VALUE) pieces.add(value);
    for (const line of value.split(/\r?\n/)) {
      const t = line.trim();
      if (t.length >= MIN_VALUE && !/^-----(BEGIN|END) /.test(t)) pieces.add(t);
      // A switch's nix configuration (`access-tokens = github.com=<token> …`): each token by
      // itself, since nix's output may print one bare.
      const tokens = /^access-tokens\s*=(.*)$/.exec(t);
      for (const pair of tokens?.[1]?.trim().split(/\s+/) ?? []) {
        const token = pair.slice(pair.indexOf('=') + 1);
        if (token.length >= MIN_VALUE) pieces.add(token);
      }
    }
  }
  // Longest first: a value that contains another is replaced whole.
  return [...pieces].sort((a, b) => b.length - a.length);
}

/** A function that redacts `values` (by value) and every pattern from a text. */
export function redactor(values: Iterable<string> = []): (text: string) => string {
  const pieces = secretPieces(values);
  return (text) => {
    let out = text;
    for (const piece of pieces) out = out.split(piece).join(REDACTED);
    for (const pattern of SECRET_PATTERNS) {
      out = out.replace(pattern, (...m: unknown[]) => {
        const groups = m.at(-1) as { keep?: string } | undefined;
        return `${groups?.keep ?? ''}${REDACTED}`;
      });
    }
    return out;
  };
}

/**
 * Control characters out of a line a host sent (tabs and newlines kept): a planted escape
 * sequence must not reach a terminal or a Discord message as one.
 */
export function inertLines(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: those are what it removes
  return text.replace(/\u001b\[[0-9;?]*[A-Za-z]|[\u0000-\u0008\u000b-\u001f\u007f]/g, '');
}
