// A loopback stand-in for the parts of GitHub's REST API that the project uses: minting an
// installation token (POST /app/installations/:id/access_tokens, App JWT required), the
// contents API on one repository (GET/PUT with real git blob shas and GitHub's 409 for a
// stale sha), GET branches/:branch, GET rules/branches/:branch and GET commits/:ref (a branch,
// tag, sha or short sha to its commit, as the revision resolver asks). It checks what GitHub
// checks: the App JWT is verified (RS256) with the test key pair's public key (iss = the
// App id, iat/exp sane) and repository endpoints need a live installation token with the
// right permission. Tests can protect the branch, add rules, grant only `contents: read`,
// make PUTs fail with a given status, and hold reads until several are waiting (to make a
// stale-sha race certain). Every request is recorded.
import { createHash, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkAppJwt } from '../../jobs/github/sim.js';

export interface StandinRequest {
  method: string;
  /** The path without the query. */
  path: string;
  status: number;
  /** Why a request was refused, when it was (e.g. "JWT signature"). */
  refused?: string;
}

export interface StandinCommit {
  path: string;
  message: string;
  branch: string;
  sha: string;
  content: string;
}

export interface GitHubStandinOptions {
  appId: string;
  installationId: string;
  /** The App's public key: JWTs are verified with it. */
  publicKey: KeyObject;
  /** owner/name */
  repo: string;
  branch?: string;
  files?: Record<string, string>;
  permissions?: Record<string, string>;
  /** How long a minted token lives (GitHub: 1 hour). */
  tokenLifetimeMs?: number;
}

/** An RSA key pair like a GitHub App's (PKCS#1 private key, as GitHub hands it out), made now. */
export function appKeyPair(): { privateKeyPem: string; publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKeyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), publicKey };
}

/** The git blob sha1 of a file's content: what GitHub calls the file's sha. */
export function blobSha(content: string): string {
  const body = Buffer.from(content, 'utf8');
  return createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${body.length}\0`), body]))
    .digest('hex');
}

export class GitHubStandin {
  readonly requests: StandinRequest[] = [];
  readonly commits: StandinCommit[] = [];
  /** Every token minted, in order (tests look for them in outputs). */
  readonly tokens: string[] = [];
  readonly files = new Map<string, string>();
  branch: string;
  permissions: Record<string, string>;
  tokenLifetimeMs: number;
  protectedBranch = false;
  /** Rule types active on the branch (GET rules/branches/:branch), e.g. ["pull_request"]. */
  rules: string[] = [];
  /** The next PUTs to contents answer this instead. */
  failPut: { status: number; message: string } | null = null;
  /** The next this-many repository requests answer GitHub's primary rate limit (403, reset in 1 s). */
  rateLimitNext = 0;
  /** PUTs answered with 409 because their sha was stale. */
  shaMismatches = 0;
  /** Branches and tags → commit sha, and the commits that exist (GET commits/:ref). */
  refs = new Map<string, string>();
  commitShas = new Set<string>();
  private readonly live = new Map<string, number>();
  private server: Server | undefined;
  private held: (() => void)[] = [];
  private holdUntil = 0;

  constructor(private readonly options: GitHubStandinOptions) {
    this.branch = options.branch ?? 'main';
    this.permissions = options.permissions ?? { contents: 'write', metadata: 'read' };
    this.tokenLifetimeMs = options.tokenLifetimeMs ?? 3_600_000;
    for (const [path, content] of Object.entries(options.files ?? {})) this.files.set(path, content);
  }

  get url(): string {
    const address = this.server?.address() as AddressInfo | undefined;
    if (address === undefined) throw new Error('stand-in not started');
    return `http://127.0.0.1:${address.port}`;
  }

  /** Installation tokens minted so far. */
  get mints(): number {
    return this.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/access_tokens') && r.status === 201)
      .length;
  }

  /** Holds the next contents GETs until `count` of them are waiting, then answers them all. */
  holdReads(count: number): void {
    this.holdUntil = count;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => this.send(req, res, 500, { message: String(err) }));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async stop(): Promise<void> {
    for (const release of this.held.splice(0)) release();
    await new Promise<void>((resolve) => {
      this.server?.closeAllConnections();
      this.server?.close(() => resolve());
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://standin');
    const path = decodeURIComponent(url.pathname);
    const body = await readBody(req);
    const mint = path.match(/^\/app\/installations\/([^/]+)\/access_tokens$/);
    if (req.method === 'POST' && mint) return this.mint(req, res, mint[1] as string, body);
    const [owner, repo] = this.options.repo.split('/');
    const prefix = `/repos/${owner}/${repo}/`;
    if (!path.startsWith(prefix)) return this.send(req, res, 404, { message: 'Not Found' });
    const refused = this.checkToken(req);
    if (refused !== null) return this.send(req, res, 401, { message: 'Bad credentials' }, refused);
    if (this.rateLimitNext > 0) {
      this.rateLimitNext--;
      const reset = Math.ceil(Date.now() / 1000) + 1;
      return this.send(req, res, 403, { message: 'API rate limit exceeded for installation.' }, 'rate limit', {
        'x-ratelimit-limit': '5000',
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': String(reset),
      });
    }
    const rest = path.slice(prefix.length);
    if (req.method === 'GET' && rest.startsWith('contents/')) {
      return this.getContents(req, res, rest.slice('contents/'.length), url.searchParams.get('ref'));
    }
    if (req.method === 'PUT' && rest.startsWith('contents/')) {
      return this.putContents(req, res, rest.slice('contents/'.length), JSON.parse(body || '{}'));
    }
    const branch = rest.match(/^branches\/(.+)$/);
    if (req.method === 'GET' && branch) {
      if (branch[1] !== this.branch) return this.send(req, res, 404, { message: 'Branch not found' });
      return this.send(req, res, 200, {
        name: this.branch,
        protected: this.protectedBranch,
        commit: { sha: blobSha(String(this.commits.length)) },
      });
    }
    const commit = rest.match(/^commits\/(.+)$/);
    if (req.method === 'GET' && commit) return this.getCommit(req, res, commit[1] as string);
    const rules = rest.match(/^rules\/branches\/(.+)$/);
    if (req.method === 'GET' && rules) {
      return this.send(
        req,
        res,
        200,
        this.rules.map((type) => ({ type, ruleset_source_type: 'Repository', ruleset_id: 1 })),
      );
    }
    return this.send(req, res, 404, { message: 'Not Found' });
  }

  /** What each mint asked for: a token scoped to repositories and permissions, or the installation's. */
  readonly mintRequests: { repositories?: string[]; permissions?: Record<string, string> }[] = [];

  private mint(req: IncomingMessage, res: ServerResponse, installationId: string, body: string) {
    const refused = checkAppJwt(req.headers.authorization, this.options.publicKey, this.options.appId);
    if (refused !== null) {
      return this.send(req, res, 401, { message: 'A JSON web token could not be decoded' }, refused);
    }
    if (installationId !== this.options.installationId) return this.send(req, res, 404, { message: 'Not Found' });
    const asked = (body ? JSON.parse(body) : {}) as { repositories?: string[]; permissions?: Record<string, string> };
    this.mintRequests.push(asked);
    const token = `ghs_${randomBytes(18).toString('base64url')}`;
    const expiresAt = Date.now() + this.tokenLifetimeMs;
    this.live.set(token, expiresAt);
    this.tokens.push(token);
    this.send(req, res, 201, {
      token,
      expires_at: new Date(expiresAt).toISOString().replace(/\.\d+Z$/, 'Z'),
      // A scoped token gets what was asked, as GitHub does (within what the App has).
      permissions: asked.permissions ?? this.permissions,
      repository_selection: 'selected',
    });
  }

  private checkToken(req: IncomingMessage): string | null {
    const match = req.headers.authorization?.match(/^(?:token|bearer) (.+)$/i);
    if (!match) return 'no token';
    const expires = this.live.get(match[1] as string);
    if (expires === undefined) return 'unknown token';
    if (expires <= Date.now()) return 'expired token';
    return null;
  }

  /** A ref as GitHub takes it: a branch, a tag, a full sha, or a unique prefix of one. */
  private getCommit(req: IncomingMessage, res: ServerResponse, ref: string) {
    const named = this.refs.get(ref);
    const shas = [...this.commitShas, ...this.refs.values()];
    const matches = [...new Set(shas)].filter((s) => /^[0-9a-f]{4,40}$/.test(ref) && s.startsWith(ref));
    const sha = named ?? (matches.length === 1 ? matches[0] : undefined);
    if (sha !== undefined) return this.send(req, res, 200, { sha, commit: { message: `commit ${sha.slice(0, 7)}` } });
    // GitHub answers an unknown and an ambiguous ref alike.
    return this.send(req, res, 422, { message: `No commit found for SHA: ${ref}` });
  }

  private async getContents(req: IncomingMessage, res: ServerResponse, path: string, ref: string | null) {
    if (this.permissions.contents === undefined) {
      return this.send(req, res, 403, { message: 'Resource not accessible by integration' });
    }
    if (this.holdUntil > 0) {
      const release = new Promise<void>((resolve) => this.held.push(resolve));
      if (this.held.length >= this.holdUntil) {
        this.holdUntil = 0;
        for (const r of this.held.splice(0)) r();
      }
      await release;
    }
    const content = this.files.get(path);
    if ((ref !== null && ref !== this.branch) || content === undefined) {
      return this.send(req, res, 404, { message: 'Not Found' });
    }
    // GitHub wraps the base64 at 60 characters.
    const encoded = (
      Buffer.from(content)
        .toString('base64')
        .match(/.{1,60}/g) ?? []
    ).join('\n');
    this.send(req, res, 200, {
      type: 'file',
      encoding: 'base64',
      name: path.split('/').pop(),
      path,
      size: Buffer.byteLength(content),
      sha: blobSha(content),
      content: `${encoded}\n`,
    });
  }

  private putContents(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: { message?: string; content?: string; sha?: string; branch?: string },
  ) {
    if (this.permissions.contents !== 'write') {
      return this.send(req, res, 403, { message: 'Resource not accessible by integration' });
    }
    const branch = body.branch ?? this.branch;
    if (branch !== this.branch) return this.send(req, res, 404, { message: `Branch ${branch} not found` });
    if (this.failPut !== null) return this.send(req, res, this.failPut.status, { message: this.failPut.message });
    if (this.protectedBranch) {
      return this.send(req, res, 409, {
        message: `Protected branch update failed for refs/heads/${branch}.\n\nChanges must be made through a pull request.`,
      });
    }
    if (typeof body.message !== 'string' || typeof body.content !== 'string') {
      return this.send(req, res, 422, { message: 'Invalid request.' });
    }
    const current = this.files.get(path);
    if (current !== undefined && body.sha === undefined) {
      return this.send(req, res, 422, { message: 'Invalid request.\n\n"sha" wasn\'t supplied.' });
    }
    if (current !== undefined && body.sha !== blobSha(current)) {
      this.shaMismatches++;
      return this.send(req, res, 409, { message: `${path} does not match ${body.sha}` });
    }
    const content = Buffer.from(body.content, 'base64').toString('utf8');
    this.files.set(path, content);
    const sha = blobSha(content);
    this.commits.push({ path, message: body.message, branch, sha, content });
    this.send(req, res, current === undefined ? 201 : 200, {
      content: { path, sha },
      commit: { sha: blobSha(`commit ${this.commits.length}`), message: body.message },
    });
  }

  private send(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    body: unknown,
    refused?: string,
    headers: Record<string, string> = {},
  ): void {
    const url = new URL(req.url ?? '/', 'http://standin');
    this.requests.push({ method: req.method ?? '', path: decodeURIComponent(url.pathname), status, refused });
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
