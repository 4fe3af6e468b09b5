// GitHub's errors as the project's one-line errors, apart from Octokit: the modules that only
// check or translate (revision.ts, used by the gateway's /deploy and /rebuild-ami) must not load
// the whole Octokit stack into every gateway and worker process.
import { type ClawError, ConfigError, OperationError, RefusedError } from '../../lib/errors.js';

/** GitHub refused for a reason no retry fixes (credentials, permission, protection): final. */
export class GitHubRefusedError extends RefusedError {}

/** What an Octokit error says, without tokens, headers or request ids. */
export interface GitHubFailure {
  status: number;
  /** GitHub's message on one line, at most 200 characters, anything token-like removed. */
  message: string;
}

/** The status and message of an Octokit RequestError, or null for anything else. */
export function githubFailure(err: unknown): GitHubFailure | null {
  if (err === null || typeof err !== 'object') return null;
  const status = (err as { status?: unknown }).status;
  if (typeof status !== 'number') return null;
  const data = (err as { response?: { data?: unknown } }).response?.data;
  const raw =
    data !== null && typeof data === 'object' && typeof (data as { message?: unknown }).message === 'string'
      ? (data as { message: string }).message
      : String((err as { message?: unknown }).message ?? '');
  return { status, message: clean(raw) };
}

/**
 * One line for a failed GitHub call: `what` names the operation and repository. `final` maps
 * a status to the sentence that says cause and fix; those become GitHubRefusedError (a retry
 * cannot help). 5xx, 429 and network trouble stay OperationError (retried by the job).
 */
export function githubError(err: unknown, what: string, final: Partial<Record<number, string>> = {}): ClawError {
  if (err instanceof OperationError || err instanceof RefusedError || err instanceof ConfigError) return err;
  const failure = githubFailure(err);
  if (failure === null) {
    const code = (err as { code?: unknown } | null)?.code;
    return new OperationError(`GitHub: ${what} failed: ${typeof code === 'string' ? code : 'no answer'}`);
  }
  const said = failure.message ? `: ${failure.message}` : '';
  // A 403 can also be a rate limit the throttling plugin gave up on: that one passes.
  if ((failure.status === 403 && /rate limit/i.test(failure.message)) || failure.status === 429) {
    return new OperationError(`GitHub: ${what} failed: rate limited (HTTP ${failure.status}), try again later`);
  }
  const fix = final[failure.status];
  if (fix !== undefined)
    return new GitHubRefusedError(`GitHub: ${what} refused (HTTP ${failure.status}${said}): ${fix}`);
  if (failure.status === 401) {
    return new GitHubRefusedError(
      `GitHub: ${what} refused (HTTP 401${said}): check the GitHub App settings (CLAWDINATOR_GITHUB_APP_ID, CLAWDINATOR_GITHUB_APP_KEY_FILE, CLAWDINATOR_GITHUB_INSTALLATION_ID)`,
    );
  }
  return new OperationError(`GitHub: ${what} failed (HTTP ${failure.status}${said})`);
}

// A message GitHub wrote could in principle echo something sent; tokens and JWTs are cut out.
const TOKEN_LIKE = /\b(gh[opsu]_[A-Za-z0-9_]{8,}|github_pat_[A-Za-z0-9_]{8,}|eyJ[A-Za-z0-9_-]{8,}(\.[A-Za-z0-9_-]+)*)/g;

export function clean(message: string): string {
  // GitHub puts the reason on later lines ("Repository rule violations found\n\nChanges must
  // be made through a pull request."): kept, on one line.
  const line = message.replace(/\s+/g, ' ').replace(TOKEN_LIKE, '[redacted]').trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}
