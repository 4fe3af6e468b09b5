// The agents' tokens against the simulated GitHub (the App JWT verified with the test key
// pair's public key): narrowed at minting (repositories without the registry's, the
// configured permissions), cached and re-minted near expiry, an on-demand refresh limited to
// one mint a minute; the env file, gh's hosts.yml and config.yml and the gitconfig written
// 0640 with the agent's group (the tests run as root: a test gid), atomically, in a directory
// only the control plane may write; the token in no log line and no result.
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { type AgentTokenPolicy, AgentTokens, resolveGroup } from '../../../jobs/github/agent-token.js';
import { createGitHubInstallation } from '../../../jobs/github/app.js';
import { SimOrg } from '../../../jobs/github/sim.js';
import { ConfigError } from '../../../lib/errors.js';
import { createLogger } from '../../../lib/log.js';
import { tempDir } from '../../support/cli.js';
import { APP_ID, INSTALLATION_ID, type OrgWorld, orgWorld } from '../../support/github-org.js';
import { appKeyPair } from '../../support/github-standin.js';

const GID = 4242;
const PERMISSIONS = { metadata: 'read', contents: 'write', pull_requests: 'write', issues: 'write' } as const;

let world: OrgWorld | undefined;
afterEach(async () => {
  await world?.stop();
  world = undefined;
});

function org(): SimOrg {
  const o = new SimOrg('openclaw');
  for (const name of ['openclaw', 'clawdinators', 'clawhub', 'nix-openclaw']) o.addRepo(name);
  return o;
}

function setup(w: OrgWorld, policy: Partial<AgentTokenPolicy> = {}, now?: () => number) {
  const dir = join(tempDir('clawdinator-token-'), 'github');
  const logged: string[] = [];
  const log = createLogger(
    'debug',
    new Writable({
      write(chunk, _e, cb) {
        logged.push(String(chunk));
        cb();
      },
    }),
  );
  const tokens = new AgentTokens({
    installation: w.installation,
    policy: { repositories: [], permissions: { ...PERMISSIONS }, registryRepo: 'openclaw/clawdinators', ...policy },
    targets: { envFile: join(dir, 'github-app.env'), ghConfigDir: dir, gid: GID },
    apiUrl: 'https://api.github.com',
    log,
    now,
  });
  return { dir, tokens, logged };
}

describe('agent tokens', () => {
  it('mints a token narrowed to every repository but the registry’s and writes the four files 0640, group the agent’s', async () => {
    world = await orgWorld(org());
    const { dir, tokens, logged } = setup(world);
    const result = await tokens.ensure(50 * 60_000);

    const narrowed = world.sim.mints.filter((m) => m.body.repositories !== undefined);
    expect(narrowed).toHaveLength(1);
    expect(narrowed[0]?.body).toEqual({
      repositories: ['openclaw', 'clawhub', 'nix-openclaw'],
      permissions: { metadata: 'read', contents: 'write', pull_requests: 'write', issues: 'write' },
    });
    const token = narrowed[0]?.token as string;
    expect(world.sim.tokenScope(token)?.repositories).toEqual(
      new Set(['openclaw/openclaw', 'openclaw/clawhub', 'openclaw/nix-openclaw']),
    );
    // Every mint, and GET /app, went with an App JWT the simulated GitHub verified.
    expect(world.sim.requests.filter((r) => r.refused !== undefined)).toEqual([]);

    expect(readFileSync(join(dir, 'github-app.env'), 'utf8')).toBe(
      `GITHUB_APP_TOKEN=${token}\nGITHUB_TOKEN=${token}\nGH_TOKEN=${token}\n`,
    );
    expect(readFileSync(join(dir, 'hosts.yml'), 'utf8')).toBe(
      [
        '"github.com":',
        '    git_protocol: https',
        '    user: "clawdinator[bot]"',
        `    oauth_token: "${token}"`,
        '    users:',
        '        "clawdinator[bot]":',
        `            oauth_token: "${token}"`,
        '',
      ].join('\n'),
    );
    expect(readFileSync(join(dir, 'config.yml'), 'utf8')).toBe('version: "1"\ngit_protocol: https\n');
    expect(readFileSync(join(dir, 'gitconfig'), 'utf8')).toBe(
      [
        '[user]',
        '\tname = clawdinator[bot]',
        `\temail = ${world.sim.botUserId}+clawdinator[bot]@users.noreply.github.com`,
        '[credential "https://github.com"]',
        '\thelper =',
        '\thelper = !gh auth git-credential',
        '',
      ].join('\n'),
    );
    for (const file of ['github-app.env', 'hosts.yml', 'config.yml', 'gitconfig']) {
      const st = statSync(join(dir, file));
      expect({ file, mode: st.mode & 0o777, uid: st.uid, gid: st.gid }).toEqual({
        file,
        mode: 0o640,
        uid: 0,
        gid: GID,
      });
    }
    const d = statSync(dir);
    expect({ mode: d.mode & 0o777, gid: d.gid }).toEqual({ mode: 0o750, gid: GID });
    // No temporary file left behind.
    expect(readdirSync(dir).sort()).toEqual(['config.yml', 'gitconfig', 'github-app.env', 'hosts.yml']);

    expect(result).toMatchObject({ minted: true, repositories: 3 });
    expect(JSON.stringify(result)).not.toContain(token);
    expect(logged.join('')).not.toContain(token);
    expect(logged.join('')).toContain('agent GitHub token written');
  });

  it('reuses the token while it has the asked life left, re-mints near its expiry; replaces the files atomically', async () => {
    world = await orgWorld(org());
    let now = Date.now();
    const { dir, tokens } = setup(world, {}, () => now);
    const narrowed = () => world?.sim.mints.filter((m) => m.body.repositories !== undefined) ?? [];

    await tokens.ensure(50 * 60_000);
    const inode = statSync(join(dir, 'github-app.env')).ino;
    await tokens.ensure(50 * 60_000);
    expect(narrowed()).toHaveLength(1);

    // 45 minutes on (the scheduled refresh): 15 left, less than the next interval needs.
    now += 45 * 60_000;
    await tokens.ensure(50 * 60_000);
    expect(narrowed()).toHaveLength(2);
    const second = narrowed()[1]?.token as string;
    expect(readFileSync(join(dir, 'github-app.env'), 'utf8')).toContain(`GH_TOKEN=${second}\n`);
    // A new file renamed into place, not the old one rewritten in place.
    expect(statSync(join(dir, 'github-app.env')).ino).not.toBe(inode);
  });

  it('an agent’s on-demand refresh mints at most once a minute', async () => {
    world = await orgWorld(org());
    let now = Date.now();
    const { tokens } = setup(world, {}, () => now);
    const narrowed = () => world?.sim.mints.filter((m) => m.body.repositories !== undefined) ?? [];
    expect(await tokens.refreshNow()).toMatchObject({ minted: true, limited: false });
    expect(await tokens.refreshNow()).toMatchObject({ minted: false, limited: true });
    expect(narrowed()).toHaveLength(1);
    now += 61_000;
    expect(await tokens.refreshNow()).toMatchObject({ minted: true, limited: false });
    expect(narrowed()).toHaveLength(2);
  });

  it('configured repositories; the registry’s only with read-only permissions', async () => {
    world = await orgWorld(org());
    expect(() => setup(world as OrgWorld, { repositories: ['clawhub', 'openclaw/clawdinators'] })).toThrow(
      new ConfigError(
        "config: CLAWDINATOR_GITHUB_AGENT_REPOS lists openclaw/clawdinators, the fleet registry's repository, with write permissions: an agent could rewrite the fleet; leave it out, or make CLAWDINATOR_GITHUB_AGENT_PERMISSIONS read-only",
      ),
    );
    const { tokens } = setup(world, {
      repositories: ['clawhub', 'openclaw/clawdinators'],
      permissions: { metadata: 'read', contents: 'read' },
    });
    await tokens.ensure(60_000);
    expect(world.sim.mints.filter((m) => m.body.repositories !== undefined).at(-1)?.body).toEqual({
      repositories: ['clawhub', 'clawdinators'],
      permissions: { metadata: 'read', contents: 'read' },
    });
  });

  it('a permission the App lacks is GitHub’s 422, said with the settings to check', async () => {
    world = await orgWorld(org());
    const { tokens } = setup(world, { permissions: { administration: 'write' } });
    await expect(tokens.ensure(60_000)).rejects.toThrow(
      /refused \(HTTP 422: The permissions requested are not granted to this installation\.\): .*CLAWDINATOR_GITHUB_AGENT_PERMISSIONS/,
    );
  });

  it('a JWT signed with another key is refused by the stand-in, and so no token', async () => {
    world = await orgWorld(org());
    const other = appKeyPair();
    const installation = createGitHubInstallation({
      appId: APP_ID,
      installationId: INSTALLATION_ID,
      privateKeyPem: other.privateKeyPem,
      apiUrl: world.sim.url,
    });
    await expect(installation.mintNarrowed({ permissions: { contents: 'read' } })).rejects.toThrow(/HTTP 401/);
    expect(world.sim.requests.map((r) => r.refused)).toEqual(['JWT signature']);
  });

  it('refuses a directory someone else may write, or that is not the control plane’s', async () => {
    world = await orgWorld(org());
    const { dir, tokens } = setup(world);
    mkdirSync(dir, { mode: 0o750 });
    chmodSync(dir, 0o770);
    await expect(tokens.ensure(60_000)).rejects.toThrow(`refused: ${dir} is writable by group or others`);
    chmodSync(dir, 0o750);
    chownSync(dir, 1234, GID);
    await expect(tokens.ensure(60_000)).rejects.toThrow(`refused: ${dir} is owned by another user`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('resolves the agent’s group by number or by name', () => {
    const file = join(tempDir(), 'group');
    writeFileSync(file, 'root:x:0:\nclawdinator:x:1001:clawdinator-ops\n');
    expect(resolveGroup('1001', file)).toBe(1001);
    expect(resolveGroup('clawdinator', file)).toBe(1001);
    expect(() => resolveGroup('nobody-here', file)).toThrow(
      'config: CLAWDINATOR_AGENT_GROUP names group nobody-here, which does not exist here',
    );
  });
});
