// The org sync (scheduled every 15 minutes on the fleet queue): the organization's open pull
// requests and issues into `github/prs.md` and `github/issues.md` of the shared memory
// (jobs/github/org-sync.ts). One leader upserts the schedule, so the fleet makes one run per
// period whatever the number of workers. A worker without the GitHub settings has nothing to
// sync: the run says so and succeeds (a failure every 15 minutes would only be noise).
import { z } from 'zod';
import type { JobType } from '../engine/job-type.js';
import type { GitHubJobDeps } from '../github/setup.js';

export const GITHUB_SYNC = 'github-sync';
export const GITHUB_SYNC_EVERY_MS = 15 * 60_000;

const dataSchema = z.object({}).strict();

export function githubSyncJob(deps: { github?: GitHubJobDeps }): JobType<typeof dataSchema> {
  return {
    name: GITHUB_SYNC,
    version: 1,
    schema: dataSchema,
    permission: 'github-sync',
    scheduled: true,
    // The next run is the retry: a rate limit or an outage waits for the next period.
    attempts: 1,
    async run() {
      const sync = deps.github?.sync;
      if (sync === undefined) {
        return { summary: 'GitHub sync not configured here (CLAWDINATOR_GITHUB_ORG and the GitHub App settings)' };
      }
      const result = await sync();
      return { summary: result.summary, requests: result.requests, written: result.written };
    },
  };
}
