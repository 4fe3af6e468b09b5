// Repo seeds end to end: bare repositories served by the real `git http-backend` behind a
// loopback server that requires the token header (git ignores http.extraHeader for file://);
// tokens minted by the simulated GitHub, narrowed read-only to the listed repositories;
// cloned, packed, unpacked into ~/repos, updated on a second run with a local change stashed
// and a local commit kept. Every git started is recorded by a PATH wrapper: the token is in no
// argument, no log line, no file of the archive.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type GitAuth,
  parseReposList,
  prepareSeeds,
  type RepoSeed,
  readReposList,
  seedAuth,
  seedRepos,
} from '../../../jobs/github/repos.js';
import { SimOrg } from '../../../jobs/github/sim.js';
import { projectPath } from '../../../lib/paths.js';
import { tempDir } from '../../support/cli.js';
import { GitHttp } from '../../support/git-http.js';
import { type OrgWorld, orgWorld } from '../../support/github-org.js';

let world: OrgWorld;
let server: GitHttp;
let argvLog: string;
let logged: string[];
const savedPath = process.env.PATH;

beforeAll(() => {
  // A `git` first on PATH that records its arguments, then runs the real one.
  const bin = tempDir('clawdinator-git-wrap-');
  argvLog = join(bin, 'argv.log');
  writeFileSync(argvLog, '');
  const real = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
  writeFileSync(join(bin, 'git'), `#!/bin/sh\nprintf '%s\\n' "git $*" >> '${argvLog}'\nexec ${real} "$@"\n`);
  chmodSync(join(bin, 'git'), 0o755);
  process.env.PATH = `${bin}:${savedPath}`;
});
afterAll(() => {
  process.env.PATH = savedPath;
});

beforeEach(async () => {
  const org = new SimOrg('openclaw');
  for (const name of ['alpha', 'beta', 'gamma']) org.addRepo(name);
  world = await orgWorld(org);
  // The git host takes a token GitHub minted, for the repositories that token names.
  server = await new GitHttp((token, repo) => {
    const scope = world.sim.tokenScope(token);
    return scope !== null && (scope.repositories === null || scope.repositories.has(repo));
  }).start();
  server.createRepo('openclaw/alpha', 'main', { 'README.md': 'alpha v1\n' });
  server.createRepo('openclaw/beta', 'dev', { 'beta.txt': 'beta on dev\n' });
  logged = [];
});
afterEach(async () => {
  await server.stop();
  await world.stop();
});

function seeds(): RepoSeed[] {
  return parseReposList(
    `# test list\nalpha\t${server.repoUrl('openclaw/alpha')}\t\nbeta\t${server.repoUrl('openclaw/beta')}\tdev\n`,
  );
}

async function auth(): Promise<GitAuth> {
  const a = await seedAuth(world.installation, seeds(), server.url);
  if (a === undefined) throw new Error('no token');
  return a;
}

const log = (line: string) => logged.push(line);
const git = (dir: string, ...args: string[]) =>
  execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** Every byte of every file under `dir`, for a search. */
function allBytes(dir: string): string {
  let out = '';
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out += readFileSync(join(entry.parentPath, entry.name)).toString('latin1');
  }
  return out;
}

function secretsIn(text: string, a: GitAuth): string[] {
  const basic = Buffer.from(`x-access-token:${a.token}`).toString('base64');
  return [a.token, basic].filter((s) => text.includes(s));
}

describe('repo seeds', () => {
  it('prepare with a read-only narrowed token as a header; seed; update with local work kept', async () => {
    const a = await auth();
    const narrowed = world.sim.mints.find((m) => m.body.repositories !== undefined);
    expect(narrowed?.body).toEqual({ repositories: ['alpha', 'beta'], permissions: { contents: 'read' } });

    const first = await prepareSeeds({ seeds: seeds(), workDir: tempDir(), auth: a, log });
    expect(server.requests.length).toBeGreaterThan(0);
    expect(server.requests.every((r) => r.auth === 'ok')).toBe(true);
    const unpacked = tempDir();
    execFileSync('tar', ['--zstd', '-xf', first.archive, '-C', unpacked]);
    expect(readdirSync(unpacked).sort()).toEqual(['alpha', 'beta', 'repos.tsv']);
    expect(secretsIn(allBytes(unpacked), a)).toEqual([]);

    const home = tempDir();
    const repos = join(home, 'repos');
    const seeded = await seedRepos({ reposDir: repos, archive: first.archive, list: '/nonexistent', log });
    expect(seeded).toEqual([
      { name: 'alpha', ok: true, what: 'copied from the seeds' },
      { name: 'beta', ok: true, what: 'copied from the seeds' },
    ]);
    expect(readFileSync(join(repos, 'alpha', 'README.md'), 'utf8')).toBe('alpha v1\n');
    expect(git(join(repos, 'beta'), 'symbolic-ref', '--short', 'HEAD')).toBe('dev');
    expect(git(join(repos, 'alpha'), 'remote', 'get-url', 'origin')).toBe(server.repoUrl('openclaw/alpha'));
    // Nothing but the repositories is left in ~/repos (the staging went).
    expect(readdirSync(repos).sort()).toEqual(['alpha', 'beta']);

    // The agent works: a local commit, then an uncommitted change and a new file.
    const alpha = join(repos, 'alpha');
    writeFileSync(join(alpha, 'notes.md'), 'committed locally\n');
    git(alpha, 'add', 'notes.md');
    git(alpha, '-c', 'user.name=agent', '-c', 'user.email=a@example.com', 'commit', '--quiet', '-m', 'local work');
    const localCommit = git(alpha, 'rev-parse', 'HEAD');
    writeFileSync(join(alpha, 'README.md'), 'alpha v1\nlocal edit\n');
    writeFileSync(join(alpha, 'scratch.txt'), 'untracked\n');
    // Upstream moves on.
    const upstream = server.commit('openclaw/alpha', 'main', { 'README.md': 'alpha v2\n', 'NEW.md': 'new\n' }, 'v2');

    const second = await prepareSeeds({ seeds: seeds(), workDir: tempDir(), auth: a, log });
    const updated = await seedRepos({
      reposDir: repos,
      archive: second.archive,
      list: '/nonexistent',
      now: () => new Date('2026-03-04T05:06:07Z'),
      log,
    });
    expect(updated).toEqual([
      {
        name: 'alpha',
        ok: true,
        what: 'updated; local changes stashed; local commits kept on main-local-20260304-050607',
      },
      { name: 'beta', ok: true, what: 'updated' },
    ]);
    expect(git(alpha, 'rev-parse', 'HEAD')).toBe(upstream);
    expect(git(alpha, 'symbolic-ref', '--short', 'HEAD')).toBe('main');
    expect(readFileSync(join(alpha, 'README.md'), 'utf8')).toBe('alpha v2\n');
    expect(git(alpha, 'status', '--porcelain')).toBe('');
    expect(git(alpha, 'stash', 'list')).toMatch(/^stash@\{0\}: On main: clawdinator seed-repos 2026-03-04T05:06:07Z$/);
    expect(git(alpha, 'stash', 'show', '-p')).toContain('+local edit');
    expect(git(alpha, 'stash', 'show', '--include-untracked', '--name-only').split('\n').sort()).toEqual([
      'README.md',
      'scratch.txt',
    ]);
    expect(git(alpha, 'rev-parse', 'main-local-20260304-050607')).toBe(localCommit);
    expect(git(alpha, 'rev-parse', '--abbrev-ref', 'main@{upstream}')).toBe('origin/main');

    // The token: in no argument of any git started, no log line.
    const argv = readFileSync(argvLog, 'utf8');
    expect(argv).toContain(`git clone --quiet --depth 1 --single-branch -- ${server.repoUrl('openclaw/alpha')}`);
    expect(secretsIn(argv, a)).toEqual([]);
    expect(secretsIn(logged.join('\n'), a)).toEqual([]);
  }, 60_000);

  it('fails only when every repository fails; what it cannot use is left alone', async () => {
    const a = await auth();
    const { archive } = await prepareSeeds({ seeds: seeds(), workDir: tempDir(), auth: a, log });
    const repos = join(tempDir(), 'repos');
    mkdirSync(repos);
    writeFileSync(join(repos, 'alpha'), 'not a clone\n');
    const outcomes = await seedRepos({ reposDir: repos, archive, list: '/nonexistent', log });
    expect(outcomes).toEqual([
      { name: 'alpha', ok: false, what: `${join(repos, 'alpha')} exists and is not a directory: left alone` },
      { name: 'beta', ok: true, what: 'copied from the seeds' },
    ]);
    expect(readFileSync(join(repos, 'alpha'), 'utf8')).toBe('not a clone\n');

    const broken = join(tempDir(), 'repos');
    mkdirSync(join(broken, 'alpha'), { recursive: true });
    mkdirSync(join(broken, 'beta'), { recursive: true });
    await expect(seedRepos({ reposDir: broken, archive, list: '/nonexistent', log })).rejects.toThrow(
      `seed-repos: every repository failed (alpha: ${join(broken, 'alpha')} is not a git clone: left alone; beta: ${join(broken, 'beta')} is not a git clone: left alone)`,
    );
  }, 60_000);

  it('without seeds, clones from the network with the token; without it (or outside its repositories) git gets a 401', async () => {
    const list = join(tempDir(), 'repos.tsv');
    writeFileSync(
      list,
      `alpha\t${server.repoUrl('openclaw/alpha')}\t\nbeta\t${server.repoUrl('openclaw/beta')}\tdev\n`,
    );
    const missing = join(tempDir(), 'no-seeds.tar.zst');

    const none = join(tempDir(), 'repos');
    await expect(seedRepos({ reposDir: none, archive: missing, list, log })).rejects.toThrow(
      /^seed-repos: every repository failed \(alpha: git clone failed: .*terminal prompts disabled/,
    );
    expect(server.requests.some((r) => r.auth === 'missing')).toBe(true);

    // A token narrowed to alpha alone: beta is refused, alpha cloned; the run succeeds.
    const minted = await world.installation.mintNarrowed({
      repositories: ['alpha'],
      permissions: { contents: 'read' },
    });
    const a: GitAuth = { token: minted.token, webUrl: server.url };
    const repos = join(tempDir(), 'repos');
    const outcomes = await seedRepos({ reposDir: repos, archive: missing, list, auth: a, log });
    expect(outcomes.map((o) => [o.name, o.ok, o.what.split(':')[0]])).toEqual([
      ['alpha', true, 'cloned'],
      ['beta', false, 'git clone failed'],
    ]);
    expect(server.requests.some((r) => r.auth === 'refused')).toBe(true);
    expect(readFileSync(join(repos, 'alpha', 'README.md'), 'utf8')).toBe('alpha v1\n');

    // Again: the clone is fetched from the network and stays on its branch.
    const upstream = server.commit('openclaw/alpha', 'main', { 'README.md': 'alpha v3\n' }, 'v3');
    const again = await seedRepos({ reposDir: repos, archive: missing, list, auth: a, log });
    expect(again[0]).toEqual({ name: 'alpha', ok: true, what: 'updated' });
    expect(git(join(repos, 'alpha'), 'rev-parse', 'HEAD')).toBe(upstream);
    expect(secretsIn(readFileSync(argvLog, 'utf8'), a)).toEqual([]);
    expect(secretsIn(logged.join('\n'), a)).toEqual([]);
    expect(secretsIn(allBytes(repos), a)).toEqual([]);
  }, 60_000);

  it('repos.tsv: the original’s list by default; a bad line is one line naming it', async () => {
    const defaults = await readReposList(projectPath('workspace', 'repos.tsv'));
    expect(defaults.map((s) => s.name)).toEqual([
      'openclaw',
      'nix-openclaw',
      'clawdinators',
      'clawhub',
      'nix-steipete-tools',
      'clawkeeper',
    ]);
    expect(defaults[5]).toEqual({ name: 'clawkeeper', url: 'https://github.com/openclaw/ClawKeeper.git', branch: '' });
    const bad: [string, string][] = [
      ['../x\thttps://github.com/o/x.git', 'repos.tsv line 1: "../x" is not a directory name (letters, digits, . _ -)'],
      ['x\thttp://github.com/o/x.git', 'repos.tsv line 1: x: the URL must be https://'],
      [
        'x\thttps://me:pw@github.com/o/x.git',
        'repos.tsv line 1: x: no credentials in the URL (the token is passed to git as a header)',
      ],
      ['x\tnot a url', 'repos.tsv line 1: x: the URL is not a URL'],
      [
        'x\thttps://github.com/o/x.git\t--upload-pack=evil',
        'repos.tsv line 1: x: "--upload-pack=evil" is not a branch name',
      ],
      [
        'x\thttps://github.com/o/x.git\tmain\textra',
        'repos.tsv line 1: expected name, URL and branch separated by tabs',
      ],
      ['x\thttps://github.com/o/x.git\n# c\nX\thttps://github.com/o/y.git', 'repos.tsv line 3: X is listed twice'],
    ];
    for (const [text, message] of bad) expect(() => parseReposList(text)).toThrow(message);
  });
});
