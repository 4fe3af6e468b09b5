// The org sync against the simulated GitHub (App JWT verified, real HTTP, the production
// Octokit with its throttling plugin): the original's format, exactly; requests equal to the
// result pages; an unchanged org costs one cheap query and touches no file; archived and
// excluded repositories left out; a secondary rate limit waited for once, or ending the run
// with one clear line; the queries valid against GitHub's published schema.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { validate } from '@octokit/graphql-schema';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_PAGE_SIZES,
  ISSUES_FILE,
  ORG_QUERY,
  PRS_FILE,
  REPO_ISSUES_QUERY,
  REPO_PRS_QUERY,
  STATE_FILE,
  syncOrg,
  WATERMARK_QUERY,
} from '../../../jobs/github/org-sync.js';
import { generateOrg, SimOrg } from '../../../jobs/github/sim.js';
import { projectPath } from '../../../lib/paths.js';
import { holdFlock } from '../../support/flock.js';
import { type OrgWorld, orgWorld } from '../../support/github-org.js';

const NOW = new Date('2026-02-03T04:05:06.789Z');
const GOLDEN_PRS = projectPath('test', 'fixtures', 'github', 'org-300-prs.md');
const GOLDEN_ISSUES = projectPath('test', 'fixtures', 'github', 'org-300-issues.md');

let world: OrgWorld | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

const read = (w: OrgWorld, path: string) => readFileSync(join(w.memoryDir, path), 'utf8');
const mtime = (w: OrgWorld, path: string) => statSync(join(w.memoryDir, path)).mtimeMs;
const operations = (w: OrgWorld) => w.sim.graphqlRequests.map((r) => r.operation);

/** The 300-repository org of the issue: 120 open pull requests, 200 open issues, 10 archived. */
function bigOrg(): SimOrg {
  return generateOrg({ login: 'openclaw', repos: 300, pullRequests: 120, issues: 200, archived: 10, crowded: 60 });
}

/** The result pages of an org, counted from its data: what the sync may ask for, beside the watermark. */
function resultPages(org: SimOrg): number {
  const live = org.repos.filter((r) => !r.isArchived);
  const extra = (n: number) => Math.max(0, Math.ceil(n / DEFAULT_PAGE_SIZES.items) - 1);
  let pages = Math.ceil(live.length / DEFAULT_PAGE_SIZES.repos);
  for (const repo of live) {
    pages += extra(repo.items.filter((i) => i.open && i.kind === 'pr').length);
    pages += extra(repo.items.filter((i) => i.open && i.kind === 'issue').length);
  }
  return pages;
}

describe('org sync', () => {
  it('writes the original’s format exactly (a small org, written out by hand)', async () => {
    const org = new SimOrg('acme');
    org.addRepo('widgets');
    org.addRepo('Empty');
    org.addRepo('zeta-archived', { archived: true });
    org.addRepo('alpha');
    org.addItem('widgets', {
      kind: 'pr',
      title: 'Fix the [flaky] test',
      author: 'alice',
      labels: ['bug', 'ci'],
      reviewDecision: 'APPROVED',
      isDraft: false,
    });
    org.addItem('widgets', { kind: 'issue', title: 'Crash on start', author: null, labels: [], comments: 2 });
    org.addItem('widgets', {
      kind: 'pr',
      title: 'WIP: new API',
      author: 'bob',
      labels: [],
      reviewDecision: null,
      isDraft: true,
    });
    org.addItem('zeta-archived', { kind: 'issue', title: 'Old', author: 'carol', labels: [], comments: 0 });
    org.addItem('alpha', { kind: 'issue', title: 'Docs', author: 'carol', labels: ['docs'], comments: 0 });
    org.updateItem('widgets', 2, { comments: 3 });
    world = await orgWorld(org);

    const result = await syncOrg({
      installation: world.installation,
      memory: world.memory,
      org: 'acme',
      now: () => NOW,
    });
    expect(result).toMatchObject({ synced: true, repositories: 3, pullRequests: 2, issues: 2, requests: 2 });
    expect(read(world, PRS_FILE)).toBe(
      [
        '# Open Pull Requests (acme org)',
        '',
        'Last synced: 2026-02-03T04:05:06Z',
        '',
        '## acme/widgets',
        '',
        '- **#3** [WIP: new API](https://github.com/acme/widgets/pull/3)',
        '  - Author: @bob',
        '  - Created: 2026-01-01T00:07:00Z',
        '  - Updated: 2026-01-01T00:07:00Z',
        '  - Review: PENDING',
        '  - Draft: true',
        '  - Labels: none',
        '',
        '- **#1** [Fix the [flaky] test](https://github.com/acme/widgets/pull/1)',
        '  - Author: @alice',
        '  - Created: 2026-01-01T00:05:00Z',
        '  - Updated: 2026-01-01T00:05:00Z',
        '  - Review: APPROVED',
        '  - Draft: false',
        '  - Labels: bug, ci',
        '',
        '',
        '',
      ].join('\n'),
    );
    expect(read(world, ISSUES_FILE)).toBe(
      [
        '# Open Issues (acme org)',
        '',
        'Last synced: 2026-02-03T04:05:06Z',
        '',
        '## acme/alpha',
        '',
        '- **#1** [Docs](https://github.com/acme/alpha/issues/1)',
        '  - Author: @carol',
        '  - Created: 2026-01-01T00:09:00Z',
        '  - Updated: 2026-01-01T00:09:00Z',
        '  - Comments: 0',
        '  - Labels: docs',
        '',
        '',
        '## acme/widgets',
        '',
        '- **#2** [Crash on start](https://github.com/acme/widgets/issues/2)',
        '  - Author: @ghost',
        '  - Created: 2026-01-01T00:06:00Z',
        '  - Updated: 2026-01-01T00:10:00Z',
        '  - Comments: 3',
        '  - Labels: none',
        '',
        '',
        '',
      ].join('\n'),
    );
  });

  it('300 repositories: the golden files, requests equal to the result pages, then one cheap query', async () => {
    const org = bigOrg();
    world = await orgWorld(org);
    const live = org.repos.filter((r) => !r.isArchived);
    const openOf = (kind: 'pr' | 'issue') => live.flatMap((r) => r.items.filter((i) => i.open && i.kind === kind));
    expect([live.length, openOf('pr').length, openOf('issue').length]).toEqual([290, 120, 200]);

    const first = await syncOrg({
      installation: world.installation,
      memory: world.memory,
      org: 'openclaw',
      now: () => NOW,
    });
    if (process.env.UPDATE_GOLDEN === '1') {
      writeFileSync(GOLDEN_PRS, read(world, PRS_FILE));
      writeFileSync(GOLDEN_ISSUES, read(world, ISSUES_FILE));
    }
    expect(read(world, PRS_FILE)).toBe(readFileSync(GOLDEN_PRS, 'utf8'));
    expect(read(world, ISSUES_FILE)).toBe(readFileSync(GOLDEN_ISSUES, 'utf8'));
    // The crowded repository (60 open issues) needs one page beyond the nested one.
    const pages = resultPages(org);
    expect(pages).toBe(Math.ceil(290 / 50) + 1);
    expect(first).toMatchObject({ synced: true, requests: 1 + pages, pullRequests: 120, issues: 200 });
    expect(operations(world)).toEqual([
      'OrgWatermark',
      'OrgRepositories',
      'RepoIssues',
      ...Array(Math.ceil(290 / 50) - 1).fill('OrgRepositories'),
    ]);
    // Archived repositories are not there, nor their items.
    for (const archived of org.repos.filter((r) => r.isArchived)) {
      expect(read(world, ISSUES_FILE)).not.toContain(`## openclaw/${archived.name}\n`);
    }
    expect(read(world, ISSUES_FILE)).not.toContain('Archived leftover');

    const before = { prs: mtime(world, PRS_FILE), issues: mtime(world, ISSUES_FILE), state: mtime(world, STATE_FILE) };
    const contents = { prs: read(world, PRS_FILE), issues: read(world, ISSUES_FILE) };
    world.sim.requests.length = 0;
    const later = new Date(NOW.getTime() + 15 * 60_000);
    const second = await syncOrg({
      installation: world.installation,
      memory: world.memory,
      org: 'openclaw',
      now: () => later,
    });
    expect(second).toMatchObject({ synced: false, requests: 1, written: [] });
    expect(operations(world)).toEqual(['OrgWatermark']);
    expect({ prs: mtime(world, PRS_FILE), issues: mtime(world, ISSUES_FILE), state: mtime(world, STATE_FILE) }).toEqual(
      before,
    );
    expect({ prs: read(world, PRS_FILE), issues: read(world, ISSUES_FILE) }).toEqual(contents);

    // One issue changes: a full sync; the unchanged prs.md is not rewritten.
    const crowded = org.repo('repo-001');
    const issue = crowded.items.find((i) => i.kind === 'issue' && i.open);
    org.updateItem('repo-001', issue?.number as number, { labels: ['triaged'] });
    world.sim.requests.length = 0;
    const third = await syncOrg({
      installation: world.installation,
      memory: world.memory,
      org: 'openclaw',
      now: () => later,
    });
    expect(third).toMatchObject({ synced: true, written: [ISSUES_FILE], unchanged: [PRS_FILE] });
    expect(operations(world)).toHaveLength(1 + pages);
    expect(mtime(world, PRS_FILE)).toBe(before.prs);
    expect(read(world, ISSUES_FILE)).toContain('  - Labels: triaged\n');
  }, 60_000);

  it('leaves out excluded repositories (name or owner/name, any case)', async () => {
    const org = new SimOrg('acme');
    org.addRepo('keep');
    org.addRepo('secret');
    org.addRepo('other');
    for (const name of ['keep', 'secret', 'other']) {
      org.addItem(name, { kind: 'issue', title: `in ${name}`, author: 'alice', labels: [], comments: 0 });
    }
    world = await orgWorld(org);
    await syncOrg({
      installation: world.installation,
      memory: world.memory,
      org: 'acme',
      exclude: ['SECRET', 'acme/other'],
    });
    const issues = read(world, ISSUES_FILE);
    expect(issues).toContain('## acme/keep\n');
    expect(issues).not.toContain('secret');
    expect(issues).not.toContain('## acme/other');
  });

  it('a secondary rate limit: waited for once; a long one ends the run with one line and no loop', async () => {
    const org = new SimOrg('acme');
    org.addRepo('widgets');
    org.addItem('widgets', { kind: 'issue', title: 'x', author: 'alice', labels: [], comments: 0 });
    world = await orgWorld(org);
    await world.installation.ready();
    // retry-after 1 s (10 ms in the test's time unit): one retry, then the sync goes on.
    world.sim.secondaryLimit = { count: 1, retryAfterSeconds: 1 };
    const ok = await syncOrg({ installation: world.installation, memory: world.memory, org: 'acme' });
    expect(ok.synced).toBe(true);
    const graphql = world.sim.graphqlRequests.map((r) => `${r.operation ?? '-'} ${r.status}`);
    expect(graphql).toEqual(['- 403', 'OrgWatermark 200', 'OrgRepositories 200']);

    // retry-after 120 s: longer than a run should wait. The run ends; nothing else is asked.
    world.sim.requests.length = 0;
    world.sim.secondaryLimit = { count: 100, retryAfterSeconds: 120 };
    const failed = await syncOrg({
      installation: world.installation,
      memory: world.memory,
      org: 'acme',
      force: true,
    }).catch((err: Error) => err);
    expect(failed).toBeInstanceOf(Error);
    expect((failed as Error).message).toBe(
      'GitHub: syncing the acme org failed: rate limited (HTTP 403), try again later',
    );
    expect(world.sim.requests.map((r) => r.status)).toEqual([403]);
    expect(world.sim.secondaryLimit.count).toBe(99);
  });

  it('an unknown org is refused with the setting to check; nothing is written', async () => {
    world = await orgWorld(new SimOrg('acme'));
    const err = await syncOrg({ installation: world.installation, memory: world.memory, org: 'nobody' }).catch(
      (e: Error) => e,
    );
    expect((err as Error).message).toBe(
      "GitHub: no organization nobody visible to the App's installation: check CLAWDINATOR_GITHUB_ORG and that the App is installed on it",
    );
    expect(() => read(world as OrgWorld, PRS_FILE)).toThrow(/ENOENT/);
  });

  it('writes through the memory store’s locks: a file held by flock(1) makes the sync wait, then fail', async () => {
    const org = new SimOrg('acme');
    org.addRepo('widgets');
    world = await orgWorld(org);
    await syncOrg({ installation: world.installation, memory: world.memory, org: 'acme' });
    const held = await holdFlock(join(world.memoryDir, PRS_FILE), '-x', 30);
    try {
      org.addItem('widgets', {
        kind: 'pr',
        title: 'new',
        author: 'bob',
        labels: [],
        reviewDecision: null,
        isDraft: false,
      });
      const err = await syncOrg({ installation: world.installation, memory: world.memory, org: 'acme' }).catch(
        (e: Error) => e,
      );
      expect((err as Error).message).toBe(`lock timeout: ${PRS_FILE} stayed locked for 2 s`);
    } finally {
      await held.release();
    }
    // The watermark was not stored: the next run syncs in full and writes the new item.
    const again = await syncOrg({ installation: world.installation, memory: world.memory, org: 'acme' });
    expect(again.synced).toBe(true);
    expect(read(world, PRS_FILE)).toContain('[new]');
  });

  it('its queries are valid against GitHub’s published GraphQL schema', () => {
    for (const query of [WATERMARK_QUERY, ORG_QUERY, REPO_PRS_QUERY, REPO_ISSUES_QUERY]) {
      expect(validate(query).map(String)).toEqual([]);
    }
    // The check can fail: a field GitHub does not have is reported.
    expect(validate(ORG_QUERY.replace('isDraft', 'isDrafted')).length).toBeGreaterThan(0);
  });
});
