// The org sync: the organization's open pull requests and issues written into the shared
// memory as `github/prs.md` and `github/issues.md`, in the original's format (gh-sync.sh:
// `# Open Pull Requests (<org> org)`, `Last synced: <ISO>`, a `## owner/repo` section per
// repository with open items, entries `- **#N** [title](url)` with their details).
//
// Requests grow with result pages, not with repositories. The original listed up to 500
// repositories and ran `gh pr list` and `gh issue list` for each: 2 × repositories + pages
// requests every 15 minutes, changed or not. Here one GraphQL query walks the organization's
// repositories (ORG_PAGE per page) with their open pull requests and issues nested
// (ITEMS_PAGE each), and only a repository with more open items than one nested page costs a
// follow-up query per further page. Archived repositories are left out by the query itself.
//
// Why not the search API: `is:open org:<org>` would list items without visiting empty
// repositories, but search returns at most 1,000 results per query (an active org has more
// open items than that) and its index lags. It is used for one thing only: the watermark.
//
// An unchanged org costs one cheap query. GraphQL has no conditional requests (no 304), so a
// watermark is asked for first — the most recent push and update over the repositories, their
// count, and the most recently updated issue or pull request of the org (a search sorted by
// update, first: 1: GitHub does not promise that a repository's updatedAt moves with issue and
// pull-request activity) — and compared with the one stored beside the files
// (`github/.sync-state.json`). Equal: nothing else is asked or written. A full sync still runs
// at least every FULL_SYNC_MAX_AGE_MS, for what no watermark sees (a deleted issue).
//
// An unchanged file is not rewritten: the new content is compared with the file's, the
// `Last synced` line aside. Writes go through the memory store (flock, in place).
import { z } from 'zod';
import { OperationError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { MemoryError, type MemoryStore } from '../../memory/store.js';
import type { GitHubInstallation } from './app.js';
import { GitHubRefusedError, githubError } from './errors.js';

export const PRS_FILE = 'github/prs.md';
export const ISSUES_FILE = 'github/issues.md';
export const STATE_FILE = 'github/.sync-state.json';
/** Even with an unchanged watermark, a full sync at least this often. */
export const FULL_SYNC_MAX_AGE_MS = 6 * 3600_000;

export interface PageSizes {
  /** Repositories per page of the org query (GitHub allows 100; smaller pages avoid its 10 s timeout). */
  repos: number;
  /** Open pull requests, and open issues, nested per repository and per follow-up page. */
  items: number;
  /** Labels per item. */
  labels: number;
}

export const DEFAULT_PAGE_SIZES: PageSizes = { repos: 50, items: 50, labels: 20 };

export interface OrgSyncOptions {
  installation: GitHubInstallation;
  memory: MemoryStore;
  org: string;
  /** Repositories left out: `name` or `owner/name`, any case. */
  exclude?: string[];
  /** Ignore the watermark and sync everything. */
  force?: boolean;
  now?: () => Date;
  log?: Logger;
  pageSizes?: PageSizes;
}

export interface OrgSyncResult {
  summary: string;
  /** False: the watermark was unchanged and nothing else was asked or written. */
  synced: boolean;
  /** GraphQL requests made, the watermark included. */
  requests: number;
  repositories: number;
  pullRequests: number;
  issues: number;
  written: string[];
  unchanged: string[];
}

export interface SyncItem {
  number: number;
  title: string;
  url: string;
  author: string | null;
  createdAt: string;
  updatedAt: string;
  labels: string[];
  /** Pull requests only. */
  reviewDecision?: string | null;
  isDraft?: boolean;
  /** Issues only. */
  comments?: number;
}

export interface SyncRepo {
  nameWithOwner: string;
  pullRequests: SyncItem[];
  issues: SyncItem[];
}

// ── the queries ─────────────────────────────────────────────────────────────────────────

const PR_FIELDS = `pageInfo { hasNextPage endCursor }
  nodes { number title url author { login } createdAt updatedAt reviewDecision isDraft labels(first: $labels) { nodes { name } } }`;
const ISSUE_FIELDS = `pageInfo { hasNextPage endCursor }
  nodes { number title url author { login } createdAt updatedAt comments { totalCount } labels(first: $labels) { nodes { name } } }`;
const OPEN_NEWEST = 'states: OPEN, orderBy: { field: CREATED_AT, direction: DESC }';

export const WATERMARK_QUERY = `query OrgWatermark($org: String!, $search: String!) {
  organization(login: $org) {
    pushed: repositories(first: 1, isArchived: false, orderBy: { field: PUSHED_AT, direction: DESC }) { totalCount nodes { pushedAt } }
    updated: repositories(first: 1, isArchived: false, orderBy: { field: UPDATED_AT, direction: DESC }) { nodes { updatedAt } }
  }
  search(query: $search, type: ISSUE, first: 1) {
    issueCount
    nodes { ... on Issue { updatedAt } ... on PullRequest { updatedAt } }
  }
}`;

export const ORG_QUERY = `query OrgRepositories($org: String!, $cursor: String, $repos: Int!, $items: Int!, $labels: Int!) {
  organization(login: $org) {
    repositories(first: $repos, after: $cursor, isArchived: false, orderBy: { field: NAME, direction: ASC }) {
      pageInfo { hasNextPage endCursor }
      nodes {
        nameWithOwner
        isArchived
        pullRequests(first: $items, ${OPEN_NEWEST}) { ${PR_FIELDS} }
        issues(first: $items, ${OPEN_NEWEST}) { ${ISSUE_FIELDS} }
      }
    }
  }
}`;

export const REPO_PRS_QUERY = `query RepoPullRequests($owner: String!, $name: String!, $cursor: String, $items: Int!, $labels: Int!) {
  repository(owner: $owner, name: $name) {
    pullRequests(first: $items, after: $cursor, ${OPEN_NEWEST}) { ${PR_FIELDS} }
  }
}`;

export const REPO_ISSUES_QUERY = `query RepoIssues($owner: String!, $name: String!, $cursor: String, $items: Int!, $labels: Int!) {
  repository(owner: $owner, name: $name) {
    issues(first: $items, after: $cursor, ${OPEN_NEWEST}) { ${ISSUE_FIELDS} }
  }
}`;

// ── what comes back (parsed: a server's answer is not trusted to have the shape asked for) ──

const pageInfo = z.object({ hasNextPage: z.boolean(), endCursor: z.string().nullable() });
const baseNode = {
  number: z.number().int(),
  title: z.string(),
  url: z.string(),
  author: z.object({ login: z.string() }).nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  labels: z.object({ nodes: z.array(z.object({ name: z.string() }).nullable()) }).nullable(),
};
const prPage = z.object({
  pageInfo,
  nodes: z.array(z.object({ ...baseNode, reviewDecision: z.string().nullable(), isDraft: z.boolean() }).nullable()),
});
const issuePage = z.object({
  pageInfo,
  nodes: z.array(z.object({ ...baseNode, comments: z.object({ totalCount: z.number().int() }) }).nullable()),
});
type PrPage = z.output<typeof prPage>;
type IssuePage = z.output<typeof issuePage>;

const watermarkAnswer = z.object({
  organization: z
    .object({
      pushed: z.object({ totalCount: z.number(), nodes: z.array(z.object({ pushedAt: z.string().nullable() })) }),
      updated: z.object({ nodes: z.array(z.object({ updatedAt: z.string() })) }),
    })
    .nullable(),
  search: z.object({
    issueCount: z.number(),
    nodes: z.array(z.object({ updatedAt: z.string().optional() }).nullable()),
  }),
});
const orgAnswer = z.object({
  organization: z
    .object({
      repositories: z.object({
        pageInfo,
        nodes: z.array(
          z
            .object({ nameWithOwner: z.string(), isArchived: z.boolean(), pullRequests: prPage, issues: issuePage })
            .nullable(),
        ),
      }),
    })
    .nullable(),
});
const repoPrsAnswer = z.object({ repository: z.object({ pullRequests: prPage }).nullable() });
const repoIssuesAnswer = z.object({ repository: z.object({ issues: issuePage }).nullable() });

const stateSchema = z.object({
  version: z.literal(1),
  org: z.string(),
  watermark: z.string(),
  /** When the last full sync ran (ms). */
  fullAt: z.number(),
});

// ── the sync ────────────────────────────────────────────────────────────────────────────

export async function syncOrg(options: OrgSyncOptions): Promise<OrgSyncResult> {
  const { memory, org } = options;
  const now = options.now ?? (() => new Date());
  const sizes = options.pageSizes ?? DEFAULT_PAGE_SIZES;
  const { octokit } = await options.installation.ready();
  let requests = 0;
  const what = `syncing the ${org} org`;
  const ask = async <S extends z.ZodTypeAny>(query: string, vars: Record<string, unknown>, schema: S) => {
    requests++;
    let data: unknown;
    try {
      data = await octokit.graphql(query, vars);
    } catch (err) {
      throw graphqlError(err, what, org);
    }
    const parsed = schema.safeParse(data);
    if (!parsed.success) throw new OperationError(`GitHub: ${what} failed: an answer of unexpected shape`);
    return parsed.data as z.output<S>;
  };

  const mark = await ask(WATERMARK_QUERY, { org, search: `org:${org} sort:updated-desc` }, watermarkAnswer);
  if (mark.organization === null) throw noOrg(org);
  const watermark = JSON.stringify([
    mark.organization.pushed.totalCount,
    mark.organization.pushed.nodes[0]?.pushedAt ?? null,
    mark.organization.updated.nodes[0]?.updatedAt ?? null,
    mark.search.issueCount,
    mark.search.nodes[0]?.updatedAt ?? null,
  ]);
  const at = now();
  const state = await readState(memory);
  const fresh =
    state !== null &&
    state.org === org &&
    state.watermark === watermark &&
    state.fullAt <= at.getTime() &&
    at.getTime() - state.fullAt < FULL_SYNC_MAX_AGE_MS;
  if (!options.force && fresh && (await exists(memory, PRS_FILE)) && (await exists(memory, ISSUES_FILE))) {
    options.log?.info({ org, requests }, 'github sync: org unchanged');
    return {
      summary: `${org}: unchanged since the last sync (${requests} request)`,
      synced: false,
      requests,
      repositories: 0,
      pullRequests: 0,
      issues: 0,
      written: [],
      unchanged: [PRS_FILE, ISSUES_FILE],
    };
  }

  const excluded = new Set((options.exclude ?? []).map((e) => e.toLowerCase()));
  const skip = (nameWithOwner: string) =>
    excluded.has(nameWithOwner.toLowerCase()) || excluded.has((nameWithOwner.split('/')[1] ?? '').toLowerCase());
  const repos: SyncRepo[] = [];
  let cursor: string | null = null;
  do {
    const page: z.output<typeof orgAnswer> = await ask(
      ORG_QUERY,
      { org, cursor, repos: sizes.repos, items: sizes.items, labels: sizes.labels },
      orgAnswer,
    );
    if (page.organization === null) throw noOrg(org);
    const { repositories } = page.organization;
    for (const node of repositories.nodes) {
      if (node === null || node.isArchived || skip(node.nameWithOwner)) continue;
      const [owner, name] = node.nameWithOwner.split('/') as [string, string];
      const more = { owner, name, items: sizes.items, labels: sizes.labels };
      const pullRequests = await allPages(node.pullRequests, prItem, async (after) => {
        const answer = await ask(REPO_PRS_QUERY, { ...more, cursor: after }, repoPrsAnswer);
        if (answer.repository === null) throw gone(node.nameWithOwner);
        return answer.repository.pullRequests;
      });
      const issues = await allPages(node.issues, issueItem, async (after) => {
        const answer = await ask(REPO_ISSUES_QUERY, { ...more, cursor: after }, repoIssuesAnswer);
        if (answer.repository === null) throw gone(node.nameWithOwner);
        return answer.repository.issues;
      });
      repos.push({ nameWithOwner: node.nameWithOwner, pullRequests, issues });
    }
    cursor = repositories.pageInfo.hasNextPage ? repositories.pageInfo.endCursor : null;
  } while (cursor !== null);

  const written: string[] = [];
  const unchanged: string[] = [];
  for (const [path, content] of [
    [PRS_FILE, renderPullRequests(org, repos, at)],
    [ISSUES_FILE, renderIssues(org, repos, at)],
  ] as const) {
    if (await writeIfChanged(memory, path, content)) written.push(path);
    else unchanged.push(path);
  }
  // Last, so a sync that failed half-way is done again in full next time.
  const next: z.output<typeof stateSchema> = { version: 1, org, watermark, fullAt: at.getTime() };
  await memory.write(STATE_FILE, `${JSON.stringify(next)}\n`);

  const pullRequests = repos.reduce((n, r) => n + r.pullRequests.length, 0);
  const issues = repos.reduce((n, r) => n + r.issues.length, 0);
  const changes = written.length === 0 ? 'files unchanged' : `${written.join(' and ')} written`;
  const summary = `${org}: ${repos.length} repositories, ${pullRequests} open pull requests, ${issues} open issues; ${changes} (${requests} requests)`;
  options.log?.info({ org, requests, repositories: repos.length, pullRequests, issues, written }, 'github sync done');
  return { summary, synced: true, requests, repositories: repos.length, pullRequests, issues, written, unchanged };
}

/** The nested first page, then follow-up pages while GitHub says there are more. */
async function allPages<P extends PrPage | IssuePage>(
  first: P,
  toItem: (node: NonNullable<P['nodes'][number]>) => SyncItem,
  next: (after: string) => Promise<P>,
): Promise<SyncItem[]> {
  const items: SyncItem[] = [];
  let page: P = first;
  for (;;) {
    for (const node of page.nodes) if (node !== null) items.push(toItem(node as NonNullable<P['nodes'][number]>));
    if (!page.pageInfo.hasNextPage || page.pageInfo.endCursor === null) return items;
    page = await next(page.pageInfo.endCursor);
  }
}

type PrNode = NonNullable<PrPage['nodes'][number]>;
type IssueNode = NonNullable<IssuePage['nodes'][number]>;

function baseItem(node: PrNode | IssueNode): SyncItem {
  return {
    number: node.number,
    title: node.title,
    url: node.url,
    author: node.author?.login ?? null,
    createdAt: node.createdAt,
    updatedAt: node.updatedAt,
    labels: (node.labels?.nodes ?? []).flatMap((l) => (l === null ? [] : [l.name])),
  };
}

function prItem(node: PrNode): SyncItem {
  return { ...baseItem(node), reviewDecision: node.reviewDecision, isDraft: node.isDraft };
}

function issueItem(node: IssueNode): SyncItem {
  return { ...baseItem(node), comments: node.comments.totalCount };
}

// ── the files ───────────────────────────────────────────────────────────────────────────

/** `2026-01-31T12:00:00Z`, as `date -u +%Y-%m-%dT%H:%M:%SZ`. */
export function syncTime(at: Date): string {
  return at.toISOString().replace(/\.\d+Z$/, 'Z');
}

export function renderPullRequests(org: string, repos: SyncRepo[], at: Date): string {
  return render(`# Open Pull Requests (${org} org)`, repos, at, 'pullRequests', (pr) => [
    `  - Review: ${pr.reviewDecision ?? 'PENDING'}`,
    `  - Draft: ${pr.isDraft === true}`,
  ]);
}

export function renderIssues(org: string, repos: SyncRepo[], at: Date): string {
  return render(`# Open Issues (${org} org)`, repos, at, 'issues', (issue) => [`  - Comments: ${issue.comments ?? 0}`]);
}

function render(
  title: string,
  repos: SyncRepo[],
  at: Date,
  which: 'pullRequests' | 'issues',
  details: (item: SyncItem) => string[],
): string {
  let out = `${title}\n\nLast synced: ${syncTime(at)}\n\n`;
  // The same order whatever order the server answered in: repositories by name, items newest first.
  const sorted = [...repos].sort((a, b) => compare(a.nameWithOwner.toLowerCase(), b.nameWithOwner.toLowerCase()));
  for (const repo of sorted) {
    const items = [...repo[which]].sort((a, b) => compare(b.createdAt, a.createdAt) || b.number - a.number);
    if (items.length === 0) continue;
    out += `## ${repo.nameWithOwner}\n\n`;
    for (const item of items) {
      const lines = [
        `- **#${item.number}** [${item.title}](${item.url})`,
        // GitHub shows a deleted account as "ghost".
        `  - Author: @${item.author ?? 'ghost'}`,
        `  - Created: ${item.createdAt}`,
        `  - Updated: ${item.updatedAt}`,
        ...details(item),
        `  - Labels: ${item.labels.length === 0 ? 'none' : item.labels.join(', ')}`,
      ];
      out += `${lines.join('\n')}\n\n`;
    }
    out += '\n';
  }
  return out;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The content without its `Last synced` line: what decides whether a file changed. */
function comparable(content: string): string {
  return content.replace(/^Last synced: .*$/m, '');
}

async function writeIfChanged(memory: MemoryStore, path: string, content: string): Promise<boolean> {
  try {
    const current = await memory.read(path);
    if (comparable(current.content.toString('utf8')) === comparable(content)) return false;
  } catch (err) {
    if (!(err instanceof MemoryError && err.code === 'not-found')) throw err;
  }
  await memory.write(path, content);
  return true;
}

async function exists(memory: MemoryStore, path: string): Promise<boolean> {
  try {
    await memory.read(path);
    return true;
  } catch (err) {
    if (err instanceof MemoryError && err.code === 'not-found') return false;
    throw err;
  }
}

/** The stored watermark; anything unreadable or malformed counts as none (a full sync). */
async function readState(memory: MemoryStore): Promise<z.output<typeof stateSchema> | null> {
  try {
    const { content } = await memory.read(STATE_FILE);
    const parsed = stateSchema.safeParse(JSON.parse(content.toString('utf8')));
    return parsed.success ? parsed.data : null;
  } catch (err) {
    if (err instanceof MemoryError && err.code === 'busy') throw err;
    return null;
  }
}

function noOrg(org: string): GitHubRefusedError {
  return new GitHubRefusedError(
    `GitHub: no organization ${org} visible to the App's installation: check CLAWDINATOR_GITHUB_ORG and that the App is installed on it`,
  );
}

function gone(repo: string): OperationError {
  return new OperationError(`GitHub: ${repo} went away during the sync; the next sync starts again`);
}

/** GraphQL's own errors (HTTP 200 with `errors`) and HTTP errors, as one line each. */
function graphqlError(err: unknown, what: string, org: string): Error {
  // @octokit/graphql's GraphqlResponseError: HTTP 200 whose body has `errors`.
  const errors = (err as { name?: unknown; errors?: unknown } | null)?.errors;
  if ((err as { name?: unknown } | null)?.name === 'GraphqlResponseError' && Array.isArray(errors)) {
    const first = errors[0] as { type?: string; message?: string } | undefined;
    if (first?.type === 'NOT_FOUND' && /organization/i.test(first.message ?? '')) return noOrg(org);
    if (first?.type === 'RATE_LIMITED') {
      return new OperationError(`GitHub: ${what} failed: GraphQL rate limit exhausted, try again after its reset`);
    }
    const message = (first?.message ?? 'GraphQL error').replace(/\s+/g, ' ').slice(0, 200);
    return new OperationError(`GitHub: ${what} failed: ${message}`);
  }
  // The throttling plugin's own error when it gave up on a GraphQL RATE_LIMITED answer.
  if (err instanceof Error && err.message === 'GraphQL Rate Limit Exceeded') {
    return new OperationError(`GitHub: ${what} failed: GraphQL rate limit exhausted, try again after its reset`);
  }
  return githubError(err, what, {
    403: 'the App’s installation may not read this org’s repositories, issues or pull requests (Metadata, Issues and Pull requests: read)',
  });
}
