// Which commit a request means. `rev` (a full or short sha, a branch, a tag; default the head
// of the project's branch) becomes one full commit sha before anything runs, and everything
// after uses that sha: the image built, the tags it gets, later the fast lane's deploy.
//
// A rev is hostile input (a Discord option, an agent's request, a CLI argument): it is checked
// by shape first — letters, digits and `. _ / -`, no leading `-` (an option to git or nix),
// no `..` or `@{` (git's ref arithmetic), at most 100 characters — and refused in one line
// before any lookup. Only the full 40-hex sha that GitHub answers ever reaches a command line.
import { z } from 'zod';
import { RefusedError, UsageError } from '../../lib/errors.js';
import type { GitHubInstallation } from './app.js';
import { githubError } from './errors.js';

export const REV_MAX = 100;
const REV_SHAPE = /^(?!-)(?!.*(\.\.|\/\/|@\{|\.lock$|\/$))[A-Za-z0-9._/-]+$/;
const FULL_SHA = /^[0-9a-f]{40}$/;

/** The rev as given, or a one-line UsageError saying what a rev may contain. */
export function checkRev(rev: string): string {
  if (rev.length === 0 || rev.length > REV_MAX || !REV_SHAPE.test(rev)) {
    throw new UsageError(
      `rev ${JSON.stringify(rev.length > 40 ? `${rev.slice(0, 40)}…` : rev)} is not a revision: a sha, branch or tag of letters, digits and . _ / - (at most ${REV_MAX}, not starting with -, no ..)`,
    );
  }
  return rev;
}

/** A rev in a job's data: the same rule, checked again by the worker. */
export const revSchema = z
  .string()
  .max(REV_MAX)
  .regex(REV_SHAPE, 'a sha, branch or tag of letters, digits and . _ / -');

export function isFullSha(rev: string): boolean {
  return FULL_SHA.test(rev);
}

export interface ResolvedRevision {
  /** The full commit sha. */
  sha: string;
  /** What was asked: the rev, or the branch when none was given. */
  ref: string;
}

export interface RevisionResolver {
  /** The project's `owner/name`. */
  readonly repo: string;
  /** The full commit sha of `rev`, or of the branch's head when `rev` is undefined. */
  resolve(rev: string | undefined): Promise<ResolvedRevision>;
}

/**
 * Resolves through the GitHub API as the project's App (`GET /repos/{repo}/commits/{ref}`,
 * which takes a sha, a short sha, a branch or a tag). An unknown or ambiguous rev is a
 * refusal (a retry cannot make it known); GitHub's own trouble stays retryable.
 */
export function githubResolver(options: {
  installation: GitHubInstallation;
  repo: string;
  branch: string;
}): RevisionResolver {
  const [owner, repo] = options.repo.split('/') as [string, string];
  return {
    repo: options.repo,
    async resolve(rev) {
      const ref = rev === undefined ? options.branch : checkRev(rev);
      const { octokit } = await options.installation.ready();
      let sha: unknown;
      try {
        const res = await octokit.request('GET /repos/{owner}/{repo}/commits/{ref}', { owner, repo, ref });
        sha = (res.data as { sha?: unknown }).sha;
      } catch (err) {
        const status = (err as { status?: unknown }).status;
        if (status === 404 || status === 422) {
          throw new RefusedError(`refused: ${ref} is not a commit, branch or tag of ${options.repo}`);
        }
        throw githubError(err, `resolving ${ref} in ${options.repo}`);
      }
      if (typeof sha !== 'string' || !FULL_SHA.test(sha)) {
        throw new RefusedError(`refused: GitHub gave no commit sha for ${ref} in ${options.repo}`);
      }
      return { sha, ref };
    },
  };
}

/**
 * A resolver over a fixed set of refs, for the sandbox and tests (and for a full sha when no
 * GitHub App is configured: `refs` empty, `acceptFullSha`): a branch or tag by name, a sha by
 * a unique prefix of at least 7 characters.
 */
export function staticResolver(options: {
  repo: string;
  branch: string;
  refs: Record<string, string>;
  acceptFullSha?: boolean;
}): RevisionResolver {
  return {
    repo: options.repo,
    async resolve(rev) {
      const ref = rev === undefined ? options.branch : checkRev(rev);
      const named = options.refs[ref];
      if (named !== undefined) return { sha: named, ref };
      if (options.acceptFullSha && isFullSha(ref)) return { sha: ref, ref };
      const shas = [...new Set(Object.values(options.refs))];
      const matches = /^[0-9a-f]{7,40}$/.test(ref) ? shas.filter((s) => s.startsWith(ref)) : [];
      if (matches.length === 1) return { sha: matches[0] as string, ref };
      if (rev === undefined && !options.acceptFullSha) {
        throw new RefusedError(`refused: branch ${ref} of ${options.repo} is unknown`);
      }
      const without = options.acceptFullSha && Object.keys(options.refs).length === 0;
      throw new RefusedError(
        without
          ? `refused: ${ref} is not a full commit sha, and resolving branches, tags or short shas needs the GitHub App settings (CLAWDINATOR_GITHUB_APP_ID …)`
          : `refused: ${ref} is not a commit, branch or tag of ${options.repo}`,
      );
    },
  };
}
