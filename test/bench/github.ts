// Bench row of the org sync: the 300-repository stand-in org of the tests (120 open pull
// requests, 200 open issues, 10 archived) on the simulated GitHub over loopback HTTP. The
// project's sync (the production Octokit, paced one GraphQL request a second by the
// throttling plugin, as GitHub asks of integrations) first on an empty memory, then with
// nothing changed; beside it, the original's approach against the same server in the same
// run: `gh repo list --limit 500` (pages of 100) and `gh pr list` + `gh issue list` for every
// repository, every run (unpaced, as gh runs them).
import { createGitHubInstallation } from '../../jobs/github/app.js';
import { DEFAULT_PAGE_SIZES, REPO_ISSUES_QUERY, REPO_PRS_QUERY, syncOrg } from '../../jobs/github/org-sync.js';
import { generateOrg, SimGitHub } from '../../jobs/github/sim.js';
import { initMemory } from '../../memory/init.js';
import { MemoryStore } from '../../memory/store.js';
import { tempDir } from '../support/cli.js';
import { appKeyPair } from '../support/github-standin.js';
import { ms, type Row } from './table.js';

const LIST_QUERY = `query OrgRepositories($org: String!, $cursor: String, $repos: Int!, $items: Int!, $labels: Int!) {
  organization(login: $org) { repositories(first: $repos, after: $cursor) { pageInfo { hasNextPage endCursor } nodes { nameWithOwner isArchived } } }
}`;

export async function githubSync300(): Promise<Row[]> {
  const key = appKeyPair();
  const org = generateOrg({ login: 'openclaw', repos: 300, pullRequests: 120, issues: 200, archived: 10, crowded: 60 });
  const sim = await new SimGitHub({ appId: '1', installationId: '1', publicKey: key.publicKey, org }).start();
  try {
    const installation = createGitHubInstallation({
      appId: '1',
      installationId: '1',
      privateKeyPem: key.privateKeyPem,
      apiUrl: sim.url,
    });
    const root = tempDir('clawdinator-bench-github-');
    await initMemory(root);
    const memory = new MemoryStore({ root, maxBytes: 1024 * 1024, waitSeconds: 5 });
    await installation.ready();

    const run = async () => {
      const t = performance.now();
      const result = await syncOrg({ installation, memory, org: 'openclaw' });
      return { wall: performance.now() - t, requests: result.requests, synced: result.synced };
    };
    const first = await run();
    // In production the next run is 15 minutes later: let the plugin's 1 s pacing lapse first.
    await new Promise((r) => setTimeout(r, 1100));
    const unchanged = await run();

    // The original's approach, request for request, on the same server.
    const { token } = await installation.mintNarrowed({ permissions: { metadata: 'read', issues: 'read' } });
    const ask = async (query: string, variables: Record<string, unknown>) => {
      const res = await fetch(`${sim.url}/graphql`, {
        method: 'POST',
        headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query, variables }),
      });
      return (await res.json()) as {
        data: {
          organization: {
            repositories: {
              pageInfo: { hasNextPage: boolean; endCursor: string | null };
              nodes: { nameWithOwner: string; isArchived: boolean }[];
            };
          };
        };
      };
    };
    const t = performance.now();
    let requests = 0;
    const repos: { nameWithOwner: string; isArchived: boolean }[] = [];
    let cursor: string | null = null;
    do {
      requests++;
      const page = await ask(LIST_QUERY, { org: 'openclaw', cursor, repos: 100, items: 0, labels: 0 });
      const conn = page.data.organization.repositories;
      repos.push(...conn.nodes);
      cursor = conn.pageInfo.hasNextPage ? conn.pageInfo.endCursor : null;
    } while (cursor !== null);
    for (const repo of repos.filter((r) => !r.isArchived)) {
      const [owner, name] = repo.nameWithOwner.split('/');
      for (const query of [REPO_PRS_QUERY, REPO_ISSUES_QUERY]) {
        requests++;
        await ask(query, { owner, name, cursor: null, items: 100, labels: DEFAULT_PAGE_SIZES.labels });
      }
    }
    const original = { wall: performance.now() - t, requests };

    const live = org.repos.filter((r) => !r.isArchived);
    const extra = (n: number) => Math.max(0, Math.ceil(n / DEFAULT_PAGE_SIZES.items) - 1);
    const pages =
      Math.ceil(live.length / DEFAULT_PAGE_SIZES.repos) +
      live.reduce(
        (n, r) =>
          n +
          extra(r.items.filter((i) => i.open && i.kind === 'pr').length) +
          extra(r.items.filter((i) => i.open && i.kind === 'issue').length),
        0,
      );
    const ok = first.synced && first.requests === 1 + pages && !unchanged.synced && unchanged.requests === 1;
    return [
      {
        what: 'GitHub org sync, 300-repository stand-in org (120 open PRs, 200 open issues, 10 archived), loopback',
        project: `first run ${first.requests} requests, ${ms(first.wall)} (paced 1 GraphQL request/s by the throttling plugin); unchanged ${unchanged.requests} request, ${ms(unchanged.wall)}`,
        floor: `original (gh repo list + gh pr/issue list per repo): ${original.requests} requests every run, ${ms(original.wall)} unpaced`,
        ratio: first.requests / original.requests,
        budget: `requests = result pages (1 watermark + ${pages}); unchanged: 1 cheap query`,
        ok,
      },
    ];
  } finally {
    await sim.stop();
  }
}
