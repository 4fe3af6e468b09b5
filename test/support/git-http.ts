// Bare repositories served over loopback HTTP by the real `git http-backend` (CGI) behind a
// small node server: git ignores http.extraHeader for file:// URLs, and the header is what
// must be proven. Every request must carry `Authorization: Basic base64(x-access-token:T)`
// with a token `accept` takes for that repository; anything else is a 401, as GitHub answers.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface GitRequest {
  path: string;
  auth: 'ok' | 'missing' | 'refused';
}

const BACKEND = execFileSync('git', ['--exec-path'], { encoding: 'utf8' }).trim();

export class GitHttp {
  readonly root = mkdtempSync(join(tmpdir(), 'clawdinator-git-http-'));
  readonly requests: GitRequest[] = [];
  private server: Server | undefined;

  /** `accept(token, "owner/name")`: whether that token may read that repository. */
  constructor(private readonly accept: (token: string, repo: string) => boolean) {}

  get url(): string {
    const address = this.server?.address() as AddressInfo | undefined;
    if (address === undefined) throw new Error('git server not started');
    return `http://127.0.0.1:${address.port}`;
  }

  repoUrl(repo: string): string {
    return `${this.url}/${repo}.git`;
  }

  /** A bare repository `owner/name` whose `branch` has one commit of these files. */
  createRepo(repo: string, branch: string, files: Record<string, string>): void {
    const bare = join(this.root, `${repo}.git`);
    mkdirSync(dirname(bare), { recursive: true });
    git(['init', '--quiet', '--bare', '--initial-branch', branch, bare]);
    this.commit(repo, branch, files, 'initial');
  }

  /** Commits these files onto `branch` of the bare repository (through a scratch clone). */
  commit(repo: string, branch: string, files: Record<string, string>, message: string): string {
    const bare = join(this.root, `${repo}.git`);
    const work = mkdtempSync(join(tmpdir(), 'clawdinator-git-work-'));
    git(['init', '--quiet', '--initial-branch', branch, work]);
    try {
      git(['-C', work, 'fetch', '--quiet', bare, branch]);
      git(['-C', work, 'reset', '--quiet', '--hard', 'FETCH_HEAD']);
    } catch {
      // An empty repository: this is its first commit.
    }
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(dirname(join(work, name)), { recursive: true });
      writeFileSync(join(work, name), content);
    }
    git(['-C', work, 'add', '-A']);
    git(['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '--quiet', '-m', message]);
    git(['-C', work, 'push', '--quiet', bare, `HEAD:refs/heads/${branch}`]);
    return git(['-C', work, 'rev-parse', 'HEAD']).toString().trim();
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server?.closeAllConnections();
      this.server?.close(() => resolve());
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://git');
    const repo = url.pathname.match(/^\/([^/]+\/[^/]+)\.git\//)?.[1];
    const basic = req.headers.authorization?.match(/^Basic (.+)$/)?.[1];
    const [user, token] = basic === undefined ? [] : Buffer.from(basic, 'base64').toString().split(':');
    const auth: GitRequest['auth'] =
      basic === undefined
        ? 'missing'
        : user === 'x-access-token' && token !== undefined && repo !== undefined && this.accept(token, repo)
          ? 'ok'
          : 'refused';
    this.requests.push({ path: url.pathname, auth });
    if (auth !== 'ok') {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="GitHub"' });
      res.end();
      return;
    }
    const cgi = spawn(join(BACKEND, 'git-http-backend'), [], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: this.root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        REMOTE_USER: 'x-access-token',
        REMOTE_ADDR: '127.0.0.1',
        ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n') >= 0 ? head.indexOf('\r\n\r\n') : head.indexOf('\n\n');
      if (end < 0) return;
      const sep = head.indexOf('\r\n\r\n') >= 0 ? 4 : 2;
      const lines = head.subarray(0, end).toString().split(/\r?\n/);
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const [name, ...rest] = line.split(':');
        const value = rest.join(':').trim();
        if (name?.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else if (name) headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + sep));
      headersDone = true;
    });
    cgi.on('close', () => res.end());
  }
}

function git(args: string[]): Buffer {
  return execFileSync('git', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}
