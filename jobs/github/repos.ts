// Repo seeds: the repositories of `workspace/repos.tsv` (name, URL, branch) cloned on the
// control plane into `repo-seeds.tar.zst` (`clawdinator repos prepare`), which the bootstrap
// bundle carries to every host, where `clawdinator seed-repos` — run AS THE AGENT — brings the
// agent's `~/repos` up to date from it. Git run by root inside a repository the agent
// controls would run the agent's hooks and `core.fsmonitor` as root; run as the agent, they
// run as whom they belong to.
//
// The token: git gets an installation token as an HTTP header through its environment
// (GIT_CONFIG_COUNT / GIT_CONFIG_KEY_n / GIT_CONFIG_VALUE_n: `http.<web URL>/.extraHeader` =
// `Authorization: Basic base64(x-access-token:<token>)`), scoped to the GitHub host's URL.
// Never in a URL (it would be stored in the clone's config), never an argument (visible in
// `ps` to every user), never a log line: git's output is redacted before it is shown.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, OperationError, UsageError } from '../../lib/errors.js';
import type { GitHubInstallation } from './app.js';

export const REPOS_LIST_FILE = 'repos.tsv';
/** Git's own time limit is none: a hung server must not hang a boot. */
const GIT_TIMEOUT_MS = 10 * 60_000;
const MAX_LIST_BYTES = 64 * 1024;

export interface RepoSeed {
  name: string;
  url: string;
  /** Empty: the remote's default branch. */
  branch: string;
}

// ── repos.tsv ───────────────────────────────────────────────────────────────────────────

const NAME = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,100}$/;
// git check-ref-format, simplified to what branch names need.
const BRANCH = /^(?!\/|-)(?!.*(\.\.|\/\/|@\{|\.lock(\/|$)|\/\.|\/$|\\))[A-Za-z0-9._/-]{1,200}$/;

/**
 * Parses repos.tsv: one repository a line, `name<TAB>url[<TAB>branch]`; blank lines and
 * `#` comments skipped. URLs are https (http only to a loopback address) without credentials.
 * The first bad line stops it with one line naming the file and the line.
 */
export function parseReposList(text: string, where = REPOS_LIST_FILE): RepoSeed[] {
  const seeds: RepoSeed[] = [];
  const names = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) return;
    const bad = (why: string) => new UsageError(`${where} line ${i + 1}: ${why}`);
    const [name = '', url = '', branch = '', ...rest] = line.split('\t');
    if (rest.length > 0) throw bad('expected name, URL and branch separated by tabs');
    if (!NAME.test(name)) throw bad(`"${name.slice(0, 40)}" is not a directory name (letters, digits, . _ -)`);
    if (names.has(name.toLowerCase())) throw bad(`${name} is listed twice`);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw bad(`${name}: the URL is not a URL`);
    }
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(parsed.hostname);
    if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) {
      throw bad(`${name}: the URL must be https://`);
    }
    if (parsed.username !== '' || parsed.password !== '') {
      throw bad(`${name}: no credentials in the URL (the token is passed to git as a header)`);
    }
    if (branch !== '' && !BRANCH.test(branch)) throw bad(`${name}: "${branch.slice(0, 40)}" is not a branch name`);
    names.add(name.toLowerCase());
    seeds.push({ name, url, branch });
  });
  return seeds;
}

export async function readReposList(path: string): Promise<RepoSeed[]> {
  let text: string;
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new UsageError(`${path} is not a file`);
      if (st.size > MAX_LIST_BYTES) throw new UsageError(`${path} is larger than ${MAX_LIST_BYTES} bytes`);
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new OperationError(`cannot read the repository list ${path} (${code})`);
  }
  return parseReposList(text, path);
}

export function formatReposList(seeds: RepoSeed[]): string {
  return seeds.map((s) => `${s.name}\t${s.url}\t${s.branch}\n`).join('');
}

// ── git with a token in its environment ─────────────────────────────────────────────────

export interface GitAuth {
  token: string;
  /** The URL the header is scoped to: https://github.com (GHES: its web URL). */
  webUrl: string;
}

/** The environment that hands git the token as a header for `webUrl` only. */
export function gitAuthEnv(auth: GitAuth | undefined): Record<string, string> {
  const env: Record<string, string> = { GIT_TERMINAL_PROMPT: '0', GCM_INTERACTIVE: 'never' };
  if (auth === undefined) return env;
  const basic = Buffer.from(`x-access-token:${auth.token}`).toString('base64');
  env.GIT_CONFIG_COUNT = '1';
  env.GIT_CONFIG_KEY_0 = `http.${auth.webUrl.replace(/\/+$/, '')}/.extraHeader`;
  env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
  return env;
}

export type GitRunner = (args: string[], options?: { cwd?: string; auth?: GitAuth }) => Promise<string>;

/** Runs git (from PATH) with the token in its environment only; failures are one redacted line. */
export const runGit: GitRunner = (args, options = {}) =>
  new Promise((resolve, reject) => {
    // A GIT_CONFIG_* of the caller's would shift our numbering: ours replace them.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^GIT_CONFIG_(COUNT|KEY_\d+|VALUE_\d+|PARAMETERS)$/.test(k)),
    );
    execFile(
      'git',
      args,
      {
        cwd: options.cwd,
        env: { ...inherited, ...gitAuthEnv(options.auth) },
        timeout: GIT_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err === null) return resolve(stdout);
        const said = redact(`${stderr}`.trim().split('\n').slice(-3).join(' / '), options.auth);
        const code = (err as { code?: unknown }).code;
        const why = said || (typeof code === 'string' ? code : `exit ${code ?? '?'}`);
        reject(new OperationError(`git ${args[0]} failed: ${why.slice(0, 300)}`));
      },
    );
  });

/** The token and its header form cut out of anything git printed. */
export function redact(text: string, auth: GitAuth | undefined): string {
  if (auth === undefined) return text;
  const basic = Buffer.from(`x-access-token:${auth.token}`).toString('base64');
  return text.split(auth.token).join('[redacted]').split(basic).join('[redacted]');
}

function authFor(url: string, auth: GitAuth | undefined): GitAuth | undefined {
  if (auth === undefined) return undefined;
  const base = `${auth.webUrl.replace(/\/+$/, '')}/`;
  return url.startsWith(base) ? auth : undefined;
}

/** `owner/name` of a repository URL under the web URL, or null for other hosts. */
export function githubRepoOf(url: string, webUrl: string): string | null {
  const base = `${webUrl.replace(/\/+$/, '')}/`;
  if (!url.startsWith(base)) return null;
  const match = url
    .slice(base.length)
    .replace(/\.git$/, '')
    .match(/^([A-Za-z0-9-]+)\/([A-Za-z0-9._-]+)\/?$/);
  return match ? `${match[1]}/${match[2]}` : null;
}

// ── prepare (the control plane) ─────────────────────────────────────────────────────────

/**
 * The token `repos prepare` clones with: read-only, narrowed to the listed repositories the
 * installation can see (others are cloned without one: public, or another host). None when
 * no listed repository is the installation's.
 */
export async function seedAuth(
  installation: Pick<GitHubInstallation, 'repositories' | 'mintNarrowed'>,
  seeds: RepoSeed[],
  webUrl: string,
): Promise<GitAuth | undefined> {
  const visible = new Set((await installation.repositories()).map((r) => r.toLowerCase()));
  const names = seeds
    .map((s) => githubRepoOf(s.url, webUrl))
    .filter((r): r is string => r !== null && visible.has(r.toLowerCase()))
    .map((r) => r.split('/')[1] as string);
  if (names.length === 0) return undefined;
  const minted = await installation.mintNarrowed({ repositories: names, permissions: { contents: 'read' } });
  return { token: minted.token, webUrl };
}

export interface PrepareOptions {
  seeds: RepoSeed[];
  /** A fresh directory of ours: the clones and the archive are made in it. */
  workDir: string;
  auth?: GitAuth;
  git?: GitRunner;
  log?: (line: string) => void;
}

/** Shallow clones of every repository, packed with the list as repo-seeds.tar.zst. */
export async function prepareSeeds(options: PrepareOptions): Promise<{ archive: string; repos: string[] }> {
  const git = options.git ?? runGit;
  const into = join(options.workDir, 'seeds');
  await mkdir(into, { recursive: true, mode: 0o700 });
  for (const seed of options.seeds) {
    const branch = seed.branch === '' ? [] : ['--branch', seed.branch];
    await git(
      ['clone', '--quiet', '--depth', '1', '--single-branch', ...branch, '--', seed.url, join(into, seed.name)],
      {
        auth: authFor(seed.url, options.auth),
      },
    ).catch((err: Error) => {
      throw new OperationError(`repos prepare: ${seed.name}: ${err.message}`);
    });
    options.log?.(`cloned ${seed.name}`);
  }
  await writeFile(join(into, REPOS_LIST_FILE), formatReposList(options.seeds), { mode: 0o644 });
  const archive = join(options.workDir, 'repo-seeds.tar.zst');
  await run('tar', ['--zstd', '-cf', archive, '-C', into, REPOS_LIST_FILE, ...options.seeds.map((s) => s.name)]);
  return { archive, repos: options.seeds.map((s) => s.name) };
}

// ── seed-repos (the agent) ──────────────────────────────────────────────────────────────

export interface SeedOptions {
  /** The agent's repos folder (~/repos). */
  reposDir: string;
  /** The archive the bootstrap staged; when missing, `list` is cloned from the network. */
  archive: string;
  /** repos.tsv for a host without seeds (the workspace's). */
  list: string;
  auth?: GitAuth;
  git?: GitRunner;
  now?: () => Date;
  log?: (line: string) => void;
}

export interface SeedOutcome {
  name: string;
  ok: boolean;
  /** cloned, copied, updated (and stashed / kept local commits), or why it failed. */
  what: string;
}

/**
 * Brings `reposDir` up to date: from the archive when there is one (new repositories moved
 * in, existing clones fetched from it and reset to their branch), else from the network with
 * the token. Local changes go into a stash and local commits onto a `<branch>-local-<time>`
 * branch before a reset. Fails only when every repository fails.
 */
export async function seedRepos(options: SeedOptions): Promise<SeedOutcome[]> {
  const git = options.git ?? runGit;
  await mkdir(options.reposDir, { recursive: true, mode: 0o755 });
  const staged = await archiveExists(options.archive);
  let staging: string | undefined;
  const outcomes: SeedOutcome[] = [];
  try {
    let seeds: RepoSeed[];
    if (staged) {
      // Beside the repos, on their file system: a new repository is moved in by one rename.
      staging = await mkdtemp(join(options.reposDir, '.seeds-'));
      await run('tar', ['--zstd', '-xf', options.archive, '-C', staging, '--no-same-owner']);
      seeds = await readReposList(join(staging, REPOS_LIST_FILE));
    } else {
      seeds = await readReposList(options.list);
    }
    for (const seed of seeds) {
      const source = staging === undefined ? undefined : join(staging, seed.name);
      try {
        const what = await seedOne(seed, source, options, git);
        outcomes.push({ name: seed.name, ok: true, what });
      } catch (err) {
        outcomes.push({ name: seed.name, ok: false, what: err instanceof Error ? err.message : String(err) });
      }
      const last = outcomes[outcomes.length - 1] as SeedOutcome;
      options.log?.(`${last.ok ? 'ok' : 'FAILED'} ${seed.name}: ${last.what}`);
    }
  } finally {
    if (staging !== undefined) await rm(staging, { recursive: true, force: true });
  }
  if (outcomes.length > 0 && outcomes.every((o) => !o.ok)) {
    throw new OperationError(
      `seed-repos: every repository failed (${outcomes.map((o) => `${o.name}: ${o.what}`).join('; ')})`.slice(0, 1000),
    );
  }
  return outcomes;
}

async function seedOne(seed: RepoSeed, source: string | undefined, options: SeedOptions, git: GitRunner) {
  const dest = join(options.reposDir, seed.name);
  const auth = authFor(seed.url, options.auth);
  const existing = await lstat(dest).catch(() => null);
  if (existing === null) {
    if (source !== undefined) {
      await rename(source, dest);
      return 'copied from the seeds';
    }
    const branch = seed.branch === '' ? [] : ['--branch', seed.branch];
    await git(['clone', '--quiet', '--depth', '1', '--single-branch', ...branch, '--', seed.url, dest], { auth });
    return 'cloned';
  }
  if (!existing.isDirectory()) throw new OperationError(`${dest} exists and is not a directory: left alone`);
  const dotGit = await lstat(join(dest, '.git')).catch(() => null);
  if (dotGit === null || !dotGit.isDirectory()) throw new OperationError(`${dest} is not a git clone: left alone`);

  // The branch: the list's, or the seed's checked-out one, or the clone's own.
  let branch = seed.branch;
  if (branch === '' && source !== undefined)
    branch = (await git(['-C', source, 'symbolic-ref', '--short', 'HEAD'])).trim();
  if (branch === '') branch = (await git(['-C', dest, 'symbolic-ref', '--short', 'HEAD'])).trim();
  const remoteRef = `refs/remotes/origin/${branch}`;
  if (source !== undefined) {
    await git([
      '-C',
      dest,
      'fetch',
      '--quiet',
      '--no-tags',
      '--update-shallow',
      source,
      `+refs/heads/${branch}:${remoteRef}`,
    ]);
  } else {
    await git(['-C', dest, 'fetch', '--quiet', '--no-tags', seed.url, `+refs/heads/${branch}:${remoteRef}`], { auth });
  }
  const notes: string[] = [];
  const stamp = (options.now?.() ?? new Date()).toISOString().replace(/\.\d+Z$/, 'Z');
  const dirty = (await git(['-C', dest, 'status', '--porcelain', '--untracked-files=normal'])).trim() !== '';
  if (dirty) {
    await git(['-C', dest, 'stash', 'push', '--include-untracked', '--quiet', '-m', `clawdinator seed-repos ${stamp}`]);
    notes.push('local changes stashed');
  }
  const local = (
    await git(['-C', dest, 'rev-parse', '--verify', '--quiet', `refs/heads/${branch}`]).catch(() => '')
  ).trim();
  if (local !== '') {
    const merged = await git(['-C', dest, 'merge-base', '--is-ancestor', local, remoteRef]).then(
      () => true,
      () => false,
    );
    if (!merged) {
      const keep = `${branch}-local-${stamp.replace(/[-:]/g, '').replace('T', '-').replace('Z', '')}`;
      await git(['-C', dest, 'branch', '--quiet', keep, local]);
      notes.push(`local commits kept on ${keep}`);
    }
  }
  await git(['-C', dest, 'checkout', '--quiet', '--force', '-B', branch, remoteRef]);
  await git(['-C', dest, 'branch', '--quiet', `--set-upstream-to=origin/${branch}`, branch]).catch(() => '');
  return ['updated', ...notes].join('; ');
}

async function archiveExists(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null);
  if (st === null) return false;
  if (!st.isFile()) throw new ConfigError(`seed-repos: ${path} is not a regular file`);
  return true;
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: GIT_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (err === null) return resolve();
      reject(
        new OperationError(`${command} failed: ${`${stderr}`.trim().split('\n').slice(-2).join(' / ').slice(0, 300)}`),
      );
    });
  });
}
