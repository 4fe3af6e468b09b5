// The agent's GitHub token on a host (scheduled every 45 minutes on that host's own queue,
// so that host's worker mints and writes it for itself: the files live on the host). It asks
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
    hostLocal: true,
    instanceOf: (d) => d.host,
    attempts: 1,
    async run(ctx) {
      const token = deps.github?.agentToken;
      if (token === undefined || token.host !== ctx.data.host) {
        throw new RefusedError(`refused: this worker does not write ${ctx.data.host}'s GitHub token`);
      }
      const result = await token.tokens.ensure(token.refreshMs + TOKEN_MARGIN_MS);
      return { summary: result.summary, expiresAt: result.expiresAt, minted: result.minted };
    },
  };
}
