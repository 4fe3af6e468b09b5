// `clawdinator github token|sync`, `repos prepare` and `seed-repos` through the built binary,
// against the simulated GitHub (App JWT verified) and git http-backend behind a loopback
// server that requires the token header. The token leaves only with --print; seed-repos
// refuses root and runs as another user (nobody) end to end.
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SimOrg } from '../../jobs/github/sim.js';
import { CLI, type CliResult, runCli, tempDir } from '../support/cli.js';
import { GitHttp } from '../support/git-http.js';
import { APP_ID, INSTALLATION_ID, type OrgWorld, orgWorld } from '../support/github-org.js';

let world: OrgWorld;
let env: Record<string, string>;
let tokenDir: string;

beforeEach(async () => {
  const org = new SimOrg('openclaw');
  for (const name of ['openclaw', 'clawdinators', 'clawhub']) org.addRepo(name);
  org.addItem('clawhub', { kind: 'issue', title: 'Hello', author: 'alice', labels: [], comments: 1 });
  world = await orgWorld(org);
  const dir = tempDir('clawdinator-github-cli-');
  const keyFile = join(dir, 'app.pem');
  writeFileSync(keyFile, world.privateKeyPem, { mode: 0o600 });
  tokenDir = join(dir, 'github');
  env = {
    CLAWDINATOR_GITHUB_APP_ID: APP_ID,
    CLAWDINATOR_GITHUB_INSTALLATION_ID: INSTALLATION_ID,
    CLAWDINATOR_GITHUB_APP_KEY_FILE: keyFile,
    CLAWDINATOR_GITHUB_API_URL: world.sim.url,
    CLAWDINATOR_GITHUB_REGISTRY_REPO: 'openclaw/clawdinators',
    CLAWDINATOR_GITHUB_TOKEN_DIR: tokenDir,
    CLAWDINATOR_AGENT_GROUP: '4242',
    CLAWDINATOR_GITHUB_ORG: 'openclaw',
    CLAWDINATOR_MEMORY_DIR: world.memoryDir,
  };
});
afterEach(async () => {
  await world.stop();
});

const narrowedMints = () => world.sim.mints.filter((m) => m.body.repositories !== undefined);

describe('clawdinator github', () => {
  it('token: minted narrowed, written 0640 for the agent’s group, printed only with --print', async () => {
    const r = await runCli(['github', 'token'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `^token minted for 2 repositories, expires \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z; written to ${tokenDir}\\n$`,
      ),
    );
    const token = narrowedMints()[0]?.token as string;
    expect(narrowedMints()[0]?.body.repositories).toEqual(['openclaw', 'clawhub']);
    expect(r.stdout).not.toContain(token);
    expect(readFileSync(join(tokenDir, 'github-app.env'), 'utf8')).toContain(`GH_TOKEN=${token}\n`);
    expect(statSync(join(tokenDir, 'hosts.yml')).gid).toBe(4242);

    const envFile = join(tempDir(), 'agent.env');
    const ghDir = join(tempDir(), 'gh');
    const printed = await runCli(['github', 'token', '--print', '--write-env', envFile, '--gh-config', ghDir], { env });
    expect(printed.code).toBe(0);
    const second = narrowedMints()[1]?.token as string;
    expect(printed.stdout).toBe(`${second}\n`);
    expect(printed.stderr).toContain('token minted for 2 repositories');
    expect(readFileSync(envFile, 'utf8')).toContain(`GITHUB_TOKEN=${second}\n`);
    expect(readFileSync(join(ghDir, 'hosts.yml'), 'utf8')).toContain(`oauth_token: "${second}"`);
  });

  it('token: a wrong setting is one line, exit 2, nothing minted', async () => {
    const r = await runCli(['github', 'token'], {
      env: { ...env, CLAWDINATOR_GITHUB_AGENT_PERMISSIONS: '{"contents":"admin"}' },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "clawdinator: config: CLAWDINATOR_GITHUB_AGENT_PERMISSIONS is invalid: expected a JSON map of GitHub App permission to read or write (at contents: Invalid enum value. Expected 'read' | 'write', received 'admin')\n",
    );
    expect(world.sim.mints).toEqual([]);
  });

  it('sync: the org into the memory; again: one cheap query', async () => {
    const r = await runCli(['github', 'sync'], { env });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      'openclaw: 3 repositories, 0 open pull requests, 1 open issues; github/prs.md and github/issues.md written (2 requests)\n',
    );
    expect(readFileSync(join(world.memoryDir, 'github', 'issues.md'), 'utf8')).toContain('## openclaw/clawhub\n');
    const again = await runCli(['github', 'sync'], { env });
    expect(again.stdout).toBe('openclaw: unchanged since the last sync (1 request)\n');
  });
});

describe('clawdinator repos prepare and seed-repos', () => {
  let server: GitHttp;
  beforeEach(async () => {
    server = await new GitHttp((token, repo) => world.sim.tokenScope(token)?.repositories?.has(repo) === true).start();
    server.createRepo('openclaw/clawhub', 'main', { 'README.md': 'clawhub\n' });
  });
  afterEach(async () => {
    await server.stop();
  });

  it('prepare clones with the token header and keeps the archive; seed-repos refuses root, runs as the agent', async () => {
    const list = join(tempDir(), 'repos.tsv');
    writeFileSync(list, `clawhub\t${server.repoUrl('openclaw/clawhub')}\tmain\n`);
    const shared = tempDir('clawdinator-seeds-');
    chmodSync(shared, 0o755);
    const archive = join(shared, 'repo-seeds.tar.zst');
    const prepared = await runCli(['repos', 'prepare', '--list', list, '--out', archive, '--no-upload'], {
      env: { ...env, CLAWDINATOR_GITHUB_WEB_URL: server.url },
    });
    expect(prepared.code).toBe(0);
    expect(prepared.stdout).toMatch(new RegExp(`^prepared 1 repositories \\(\\d+ bytes\\); kept as ${archive}\\n$`));
    expect(narrowedMints().map((m) => m.body)).toEqual([
      { repositories: ['clawhub'], permissions: { contents: 'read' } },
    ]);
    expect(server.requests.length).toBeGreaterThan(0);
    expect(server.requests.every((q) => q.auth === 'ok')).toBe(true);
    const token = narrowedMints()[0]?.token as string;
    expect(prepared.stdout + prepared.stderr).not.toContain(token);
    chmodSync(archive, 0o644);

    const asRoot = await runCli(['seed-repos', '--archive', archive], { env });
    expect(asRoot.code).toBe(2);
    expect(asRoot.stderr).toBe(
      'clawdinator: refused: seed-repos runs as the agent, never as root (git would run the agent’s hooks and fsmonitor as root)\n',
    );

    // The agent: another user, its own home.
    const home = join(shared, 'home');
    mkdirSync(home);
    chownSync(home, 65534, 65534);
    const asAgent = await runAs(65534, ['seed-repos', '--archive', archive], {
      HOME: home,
      CLAWDINATOR_GITHUB_TOKEN_DIR: join(shared, 'none'),
    });
    expect(asAgent.stderr).toBe('ok clawhub: copied from the seeds\n');
    expect(asAgent.code).toBe(0);
    expect(asAgent.stdout).toBe('seed-repos: 1 of 1 repositories up to date\n');
    const readme = join(home, 'repos', 'clawhub', 'README.md');
    expect(readFileSync(readme, 'utf8')).toBe('clawhub\n');
    expect(statSync(readme).uid).toBe(65534);
    expect(existsSync(join(home, 'repos', 'clawhub', '.git'))).toBe(true);
  }, 60_000);
});

function runAs(uid: number, args: string[], extra: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      uid,
      gid: uid,
      cwd: extra.HOME,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...extra },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
