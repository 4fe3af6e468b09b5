// The agent's GitHub token on a host (scheduled every 45 minutes on that host's own queue,
// so that host's worker mints and writes it for itself: the files live on the host; the
// agent may ask for an early one, for its own host only: `clawdinator request gh-refresh`). It asks
// for a token that outlives the next run by a margin, so the files never hold one that
// expires before the next refresh (jobs/github/agent-token.ts). The result names the expiry
// and the files, never the token.
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';
import { RefusedError } from '../../lib/errors.js';
import type { JobType } from '../engine/job-type.js';
import type { GitHubJobDeps } from '../github/setup.js';

export const GITHUB_TOKEN = 'github-token';
/** A token must outlive the next refresh by this much. */
export const TOKEN_MARGIN_MS = 5 * 60_000;

const dataSchema = z.object({ host: instanceName }).strict();

export function githubTokenJob(deps: { github?: GitHubJobDeps }): JobType<typeof dataSchema> {
  return {
    name: GITHUB_TOKEN,
    version: 1,
    schema: dataSchema,
    permission: 'github-token',
    scheduled: true,
    // The agent's `clawdinator-gh-refresh` (mid-batch, before its token runs out): signed with
    // its key, over its host's request socket, for its own host only; counted in its hourly rate.
    agentAllowed: 'own-host',
    hostLocal: true,
    instanceOf: (d) => d.host,
    attempts: 1,
    async run(ctx) {
      const token = deps.github?.agentToken;
      if (token === undefined || token.host !== ctx.data.host) {
        throw new RefusedError(`refused: this worker does not write ${ctx.data.host}'s GitHub token`);
      }
      // The agent asks for a new token now (one a minute at most); the schedule for one that
      // outlives its next run.
      const result =
        ctx.principal.kind === 'agent'
          ? await token.tokens.refreshNow()
          : await token.tokens.ensure(token.refreshMs + TOKEN_MARGIN_MS);
      return { summary: result.summary, expiresAt: result.expiresAt, minted: result.minted };
    },
  };
}
