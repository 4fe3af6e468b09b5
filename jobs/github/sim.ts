// A simulated GitHub on a loopback port, for the sandbox and the tests, as jobs/cloud/sim.ts
// is the simulated cloud: the parts of GitHub the agents' tokens and the org sync use, over
// real HTTP so the production Octokit code runs unchanged against it.
//
//   POST /app/installations/:id/access_tokens   the App JWT verified (RS256 with the App's
//                                               public key, iss = App id, exp − iat ≤ 600 s);
//                                               the narrowing asked for is recorded and applied
//   GET  /app, GET /users/:login                the App's slug and its bot user
//   GET  /installation/repositories             the org's repositories (installation token)
//   POST /graphql                               the org sync's queries, answered from an
//                                               in-memory org (by operation name)
//
// Tokens expire; requests are recorded; a test can make the next requests answer a secondary
// rate limit (403 with retry-after), as GitHub does.
import { type KeyObject, randomBytes, verify } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SimItem {
  number: number;
  kind: 'pr' | 'issue';
  title: string;
  author: string | null;
  createdAt: string;
  updatedAt: string;
  labels: string[];
  open: boolean;
  reviewDecision?: string | null;
  isDraft?: boolean;
  comments?: number;
}

export interface SimRepo {
  name: string;
  isArchived: boolean;
  pushedAt: string;
  updatedAt: string;
  items: SimItem[];
}

/** An organization: repositories with their pull requests and issues, changed by tests. */
export class SimOrg {
  readonly repos: SimRepo[] = [];
  /** The org's clock: every change moves it on by a minute, so updatedAt values stay distinct. */
  private clock: number;

  constructor(
    readonly login: string,
    start = Date.parse('2026-01-01T00:00:00Z'),
  ) {
    this.clock = start;
  }

  tick(): string {
    this.clock += 60_000;
    return new Date(this.clock).toISOString().replace(/\.\d+Z$/, 'Z');
  }

  addRepo(name: string, options: { archived?: boolean } = {}): SimRepo {
    const at = this.tick();
    const repo: SimRepo = { name, isArchived: options.archived ?? false, pushedAt: at, updatedAt: at, items: [] };
    this.repos.push(repo);
    return repo;
  }

  repo(name: string): SimRepo {
    const repo = this.repos.find((r) => r.name === name);
    if (repo === undefined) throw new Error(`sim org: no repository ${name}`);
    return repo;
  }

  addItem(repoName: string, item: Omit<SimItem, 'number' | 'createdAt' | 'updatedAt' | 'open'>): SimItem {
    const repo = this.repo(repoName);
    const at = this.tick();
    const full: SimItem = { ...item, number: repo.items.length + 1, createdAt: at, updatedAt: at, open: true };
    repo.items.push(full);
    return full;
  }

  /** An edit of an item (a comment, a label, a title): its updatedAt moves, as on GitHub. */
  updateItem(repoName: string, number: number, change: Partial<Pick<SimItem, 'title' | 'labels' | 'comments'>>) {
    const item = this.item(repoName, number);
    Object.assign(item, change, { updatedAt: this.tick() });
  }

  closeItem(repoName: string, number: number): void {
    const item = this.item(repoName, number);
    item.open = false;
    item.updatedAt = this.tick();
  }

  /** GitHub's web URL of an item. */
  url(repo: SimRepo, item: SimItem): string {
    return `https://github.com/${this.login}/${repo.name}/${item.kind === 'pr' ? 'pull' : 'issues'}/${item.number}`;
  }

  private item(repoName: string, number: number): SimItem {
    const item = this.repo(repoName).items.find((i) => i.number === number);
    if (item === undefined) throw new Error(`sim org: no #${number} in ${repoName}`);
    return item;
  }
}

export interface GeneratedOrgOptions {
  login: string;
  repos: number;
  pullRequests: number;
  issues: number;
  /** Of the repositories, this many (the last ones) archived, each with an open issue. */
  archived?: number;
  /** Items put into the first repository before the rest are spread, to exceed one nested page. */
  crowded?: number;
}

/**
 * A deterministic org: `repos` repositories named repo-001…; pull requests and issues spread
 * over them with a fixed stride (so some repositories have none), a few labels, drafts and
 * review decisions, comment counts. The same options always give the same org.
 */
export function generateOrg(options: GeneratedOrgOptions): SimOrg {
  const org = new SimOrg(options.login);
  const live = options.repos - (options.archived ?? 0);
  const names = Array.from({ length: options.repos }, (_, i) => `repo-${String(i + 1).padStart(3, '0')}`);
  names.forEach((name, i) => {
    org.addRepo(name, { archived: i >= live });
  });
  const labels = [[], ['bug'], ['enhancement', 'good first issue'], ['needs review']];
  const reviews = [null, 'APPROVED', 'CHANGES_REQUESTED', 'REVIEW_REQUIRED'];
  const authors = ['alice', 'bob', 'carol', null];
  const crowded = options.crowded ?? 0;
  const total = options.pullRequests + options.issues;
  for (let n = 0; n < total; n++) {
    const isPr = n < options.pullRequests;
    const k = isPr ? n : n - options.pullRequests;
    // The first `crowded` issues go to the first repository; the rest stride over the first
    // 40 % of the live ones (several items in some, none in most, as in a real org).
    const spread = Math.max(1, Math.floor(live * 0.4));
    const repoIndex = !isPr && k < crowded ? 0 : (k * 7 + (isPr ? 3 : 5)) % spread;
    org.addItem(names[repoIndex] as string, {
      kind: isPr ? 'pr' : 'issue',
      title: isPr ? `Change ${k + 1}: tidy module ${k % 13}` : `Problem ${k + 1} in area ${k % 11}`,
      author: authors[k % authors.length] ?? null,
      labels: labels[k % labels.length] as string[],
      ...(isPr
        ? { reviewDecision: reviews[k % reviews.length] ?? null, isDraft: k % 5 === 0 }
        : { comments: (k * 3) % 7 }),
    });
  }
  for (const name of names.slice(live)) {
    org.addItem(name, { kind: 'issue', title: 'Archived leftover', author: 'alice', labels: [], comments: 0 });
  }
  return org;
}

export interface SimRequest {
  method: string;
  path: string;
  status: number;
  /** GraphQL operation name, for POST /graphql. */
  operation?: string;
  /** Why a request was refused, when it was. */
  refused?: string;
}

export interface SimMint {
  /** What the request asked for (the narrowing). */
  body: { repositories?: string[]; repository_ids?: number[]; permissions?: Record<string, string> };
  token: string;
  expiresAt: number;
}

export interface SimGitHubOptions {
  appId: string;
  installationId: string;
  /** The App's public key: JWTs are verified with it. */
  publicKey: KeyObject;
  org: SimOrg;
  slug?: string;
  botUserId?: number;
  /** What an un-narrowed token may do. */
  permissions?: Record<string, string>;
  /** How long a minted token lives (GitHub: 1 hour). */
  tokenLifetimeMs?: number;
}

export class SimGitHub {
  readonly requests: SimRequest[] = [];
  readonly mints: SimMint[] = [];
  /** The next this-many API requests answer a secondary rate limit (403) with this retry-after. */
  secondaryLimit: { count: number; retryAfterSeconds: number } = { count: 0, retryAfterSeconds: 1 };
  tokenLifetimeMs: number;
  private readonly live = new Map<string, { expiresAt: number; repositories: Set<string> | null }>();
  private server: Server | undefined;

  constructor(private readonly options: SimGitHubOptions) {
    this.tokenLifetimeMs = options.tokenLifetimeMs ?? 3_600_000;
  }

  get org(): SimOrg {
    return this.options.org;
  }

  get slug(): string {
    return this.options.slug ?? 'clawdinator';
  }

  get botUserId(): number {
    return this.options.botUserId ?? 41898282;
  }

  get url(): string {
    const address = this.server?.address() as AddressInfo | undefined;
    if (address === undefined) throw new Error('simulated GitHub not started');
    return `http://127.0.0.1:${address.port}`;
  }

  /** GraphQL requests so far. */
  get graphqlRequests(): SimRequest[] {
    return this.requests.filter((r) => r.path === '/graphql');
  }

  /** Whether a token is live, and which repositories (owner/name) it may reach (null: all). */
  tokenScope(token: string): { repositories: Set<string> | null } | null {
    const entry = this.live.get(token);
    return entry === undefined || entry.expiresAt <= Date.now() ? null : { repositories: entry.repositories };
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => this.send(req, res, 500, { message: String(err) }));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server?.closeAllConnections();
      this.server?.close(() => resolve());
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = decodeURIComponent(url.pathname);
    const body = await readBody(req);
    if (this.secondaryLimit.count > 0) {
      this.secondaryLimit.count--;
      return this.send(
        req,
        res,
        403,
        {
          message:
            'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.',
        },
        { refused: 'secondary rate limit', headers: { 'retry-after': String(this.secondaryLimit.retryAfterSeconds) } },
      );
    }
    const mint = path.match(/^\/app\/installations\/([^/]+)\/access_tokens$/);
    if (req.method === 'POST' && mint) return this.mint(req, res, mint[1] as string, body);
    if (req.method === 'GET' && path === '/app') {
      const refused = checkAppJwt(req.headers.authorization, this.options.publicKey, this.options.appId);
      if (refused !== null)
        return this.send(req, res, 401, { message: 'A JSON web token could not be decoded' }, { refused });
      return this.send(req, res, 200, { id: Number(this.options.appId), slug: this.slug, name: this.slug });
    }
    const refused = this.checkToken(req);
    if (refused !== null) return this.send(req, res, 401, { message: 'Bad credentials' }, { refused });
    const user = path.match(/^\/users\/([^/]+)$/);
    if (req.method === 'GET' && user) {
      if (user[1] !== `${this.slug}[bot]`) return this.send(req, res, 404, { message: 'Not Found' });
      return this.send(req, res, 200, { login: user[1], id: this.botUserId, type: 'Bot' });
    }
    if (req.method === 'GET' && path === '/installation/repositories') {
      const perPage = Number(url.searchParams.get('per_page') ?? 30);
      const page = Number(url.searchParams.get('page') ?? 1);
      const all = this.org.repos.map((r) => ({ name: r.name, full_name: `${this.org.login}/${r.name}` }));
      return this.send(req, res, 200, {
        total_count: all.length,
        repositories: all.slice((page - 1) * perPage, page * perPage),
      });
    }
    if (req.method === 'POST' && path === '/graphql') {
      const { status, answer, operation } = answerGraphql(this.org, body);
      return this.send(req, res, status, answer, { operation });
    }
    return this.send(req, res, 404, { message: 'Not Found' });
  }

  private mint(req: IncomingMessage, res: ServerResponse, installationId: string, raw: string) {
    const refused = checkAppJwt(req.headers.authorization, this.options.publicKey, this.options.appId);
    if (refused !== null) {
      return this.send(req, res, 401, { message: 'A JSON web token could not be decoded' }, { refused });
    }
    if (installationId !== this.options.installationId) return this.send(req, res, 404, { message: 'Not Found' });
    const body = (raw === '' ? {} : JSON.parse(raw)) as SimMint['body'];
    const granted = this.options.permissions ?? {
      metadata: 'read',
      contents: 'write',
      issues: 'write',
      pull_requests: 'write',
    };
    const permissions = body.permissions ?? granted;
    for (const [name, level] of Object.entries(permissions)) {
      const has = granted[name];
      if (has === undefined || (level === 'write' && has !== 'write')) {
        return this.send(req, res, 422, { message: `The permissions requested are not granted to this installation.` });
      }
    }
    let repositories: Set<string> | null = null;
    if (body.repositories !== undefined) {
      const known = new Set(this.org.repos.map((r) => r.name));
      if (body.repositories.some((name) => !known.has(name))) {
        return this.send(req, res, 422, {
          message:
            'There is at least one repository that does not exist or is not accessible to the parent installation.',
        });
      }
      repositories = new Set(body.repositories.map((name) => `${this.org.login}/${name}`));
    }
    const token = `ghs_${randomBytes(18).toString('base64url')}`;
    const expiresAt = Date.now() + this.tokenLifetimeMs;
    this.live.set(token, { expiresAt, repositories });
    this.mints.push({ body, token, expiresAt });
    this.send(req, res, 201, {
      token,
      expires_at: new Date(expiresAt).toISOString().replace(/\.\d+Z$/, 'Z'),
      permissions,
      repository_selection: repositories === null ? 'all' : 'selected',
      ...(repositories === null
        ? {}
        : { repositories: [...repositories].map((full) => ({ full_name: full, name: full.split('/')[1] })) }),
    });
  }

  private checkToken(req: IncomingMessage): string | null {
    const match = req.headers.authorization?.match(/^(?:token|bearer) (.+)$/i);
    if (!match) return 'no token';
    const entry = this.live.get(match[1] as string);
    if (entry === undefined) return 'unknown token';
    if (entry.expiresAt <= Date.now()) return 'expired token';
    return null;
  }

  private send(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    body: unknown,
    extra: { refused?: string; operation?: string; headers?: Record<string, string> } = {},
  ): void {
    const url = new URL(req.url ?? '/', 'http://sim');
    this.requests.push({
      method: req.method ?? '',
      path: decodeURIComponent(url.pathname),
      status,
      operation: extra.operation,
      refused: extra.refused,
    });
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...extra.headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  }
}

/** null when GitHub would accept this App JWT; otherwise why not. */
export function checkAppJwt(header: string | undefined, publicKey: KeyObject, appId: string): string | null {
  const match = header?.match(/^bearer (.+)$/i);
  if (!match) return 'no bearer JWT';
  const parts = (match[1] as string).split('.');
  if (parts.length !== 3) return 'JWT shape';
  const [h, p, s] = parts as [string, string, string];
  let head: { alg?: string };
  let claims: { iss?: unknown; iat?: unknown; exp?: unknown };
  try {
    head = JSON.parse(Buffer.from(h, 'base64url').toString());
    claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  } catch {
    return 'JWT encoding';
  }
  if (head.alg !== 'RS256') return 'JWT alg';
  if (!verify('RSA-SHA256', Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s, 'base64url'))) return 'JWT signature';
  if (String(claims.iss) !== appId) return 'JWT iss';
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number') return 'JWT iat/exp';
  // GitHub: at most 10 minutes of life; iat may be back-dated (clock drift), not in the future.
  if (claims.iat > now + 60 || claims.exp <= now || claims.exp - claims.iat > 600) return 'JWT iat/exp';
  return null;
}

// ── GraphQL ─────────────────────────────────────────────────────────────────────────────

interface GraphqlBody {
  query?: string;
  variables?: Record<string, unknown>;
}

/**
 * Answers the org sync's queries (jobs/github/org-sync.ts) from the org, by operation name:
 * OrgWatermark, OrgRepositories, RepoPullRequests, RepoIssues. Cursors are offsets.
 */
export function answerGraphql(
  org: SimOrg,
  raw: string,
): { status: number; answer: unknown; operation: string | undefined } {
  let body: GraphqlBody;
  try {
    body = JSON.parse(raw) as GraphqlBody;
  } catch {
    return { status: 400, answer: { message: 'Problems parsing JSON' }, operation: undefined };
  }
  const query = body.query ?? '';
  const vars = body.variables ?? {};
  const operation = query.match(/^\s*query\s+(\w+)/)?.[1];
  const ok = (data: unknown) => ({ status: 200, answer: { data }, operation });
  const notFound = (message: string) => ({
    status: 200,
    answer: { data: null, errors: [{ type: 'NOT_FOUND', path: ['organization'], message }] },
    operation,
  });
  const noOrg = () => notFound(`Could not resolve to an Organization with the login of '${String(vars.org)}'.`);
  const nonArchived = /isArchived:\s*false/.test(query);
  const visible = () =>
    org.repos
      .filter((r) => !(nonArchived && r.isArchived))
      .sort((a, b) => (a.name.toLowerCase() < b.name.toLowerCase() ? -1 : 1));
  const first = (name: string) => Number(vars[name]);
  switch (operation) {
    case 'OrgWatermark': {
      if (vars.org !== org.login) return noOrg();
      const repos = visible();
      const newest = (key: 'pushedAt' | 'updatedAt') =>
        repos.map((r) => r[key]).sort((a, b) => (a < b ? 1 : -1))[0] ?? null;
      const items = org.repos.flatMap((r) => r.items);
      const latest = items.map((i) => i.updatedAt).sort((a, b) => (a < b ? 1 : -1))[0];
      return ok({
        organization: {
          pushed: { totalCount: repos.length, nodes: repos.length ? [{ pushedAt: newest('pushedAt') }] : [] },
          updated: { nodes: repos.length ? [{ updatedAt: newest('updatedAt') }] : [] },
        },
        search: { issueCount: items.length, nodes: latest === undefined ? [] : [{ updatedAt: latest }] },
      });
    }
    case 'OrgRepositories': {
      if (vars.org !== org.login) return noOrg();
      const repos = visible();
      const from = offset(vars.cursor);
      const page = repos.slice(from, from + first('repos'));
      return ok({
        organization: {
          repositories: {
            pageInfo: pageInfo(from + page.length, repos.length),
            nodes: page.map((r) => ({
              nameWithOwner: `${org.login}/${r.name}`,
              isArchived: r.isArchived,
              pullRequests: itemPage(org, r, 'pr', null, first('items'), first('labels')),
              issues: itemPage(org, r, 'issue', null, first('items'), first('labels')),
            })),
          },
        },
      });
    }
    case 'RepoPullRequests':
    case 'RepoIssues': {
      const repo = vars.owner === org.login ? org.repos.find((r) => r.name === vars.name) : undefined;
      if (repo === undefined) {
        return notFound(
          `Could not resolve to a Repository with the name '${String(vars.owner)}/${String(vars.name)}'.`,
        );
      }
      const pr = operation === 'RepoPullRequests';
      const page = itemPage(org, repo, pr ? 'pr' : 'issue', vars.cursor, first('items'), first('labels'));
      return ok({ repository: pr ? { pullRequests: page } : { issues: page } });
    }
    default:
      return {
        status: 200,
        answer: { errors: [{ message: `simulated GitHub: unknown operation ${operation ?? '(none)'}` }] },
        operation,
      };
  }
}

function offset(cursor: unknown): number {
  return typeof cursor === 'string' ? Number(Buffer.from(cursor, 'base64').toString().replace('cursor:', '')) : 0;
}

function pageInfo(end: number, total: number) {
  return { hasNextPage: end < total, endCursor: end === 0 ? null : Buffer.from(`cursor:${end}`).toString('base64') };
}

function itemPage(org: SimOrg, repo: SimRepo, kind: 'pr' | 'issue', cursor: unknown, n: number, labels: number) {
  const open = repo.items
    .filter((i) => i.kind === kind && i.open)
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : b.number - a.number));
  const from = offset(cursor);
  const page = open.slice(from, from + n);
  return {
    pageInfo: pageInfo(from + page.length, open.length),
    nodes: page.map((i) => ({
      number: i.number,
      title: i.title,
      url: org.url(repo, i),
      author: i.author === null ? null : { login: i.author },
      createdAt: i.createdAt,
      updatedAt: i.updatedAt,
      labels: { nodes: i.labels.slice(0, labels).map((name) => ({ name })) },
      ...(kind === 'pr'
        ? { reviewDecision: i.reviewDecision ?? null, isDraft: i.isDraft ?? false }
        : { comments: { totalCount: i.comments ?? 0 } }),
    })),
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
