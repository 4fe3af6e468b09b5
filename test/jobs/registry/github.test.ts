// The GitHub registry backend against the loopback GitHub stand-in: the App JWT verified with
// the test key pair's public key, installation tokens minted once and cached (re-minted near
// their expiry), optimistic updates by blob sha re-applied after GitHub's 409, refusals by the
// repository mapped to one line naming cause and fix, and no key or token in any output.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { FleetRegistry, RegistryEntry } from '../../../infra/registry.js';
import {
  GITHUB_REGISTRY_CACHE_MS,
  GITHUB_REGISTRY_MIN_REFRESH_MS,
  publicKeys,
  registryReader,
  registryStoreFrom,
} from '../../../jobs/engine/setup.js';
import { createGitHubInstallation, REFRESH_MARGIN_MS } from '../../../jobs/github/app.js';
import { GitHubRefusedError } from '../../../jobs/github/errors.js';
import { GitHubRegistryStore } from '../../../jobs/registry/github.js';
import { RegistryConflictError } from '../../../jobs/registry/types.js';
import { loadConfig } from '../../../lib/config.js';
import { RefusedError } from '../../../lib/errors.js';
import { createLogger } from '../../../lib/log.js';
import { tempDir } from '../../support/cli.js';
import { appKeyPair, blobSha, GitHubStandin } from '../../support/github-standin.js';

const APP_ID = '424242';
const INSTALLATION_ID = '7777';
const REPO = 'openclaw/clawdinators';
const PATH = 'infra/fleet.json';
const key = appKeyPair();

function entry(name: string): RegistryEntry {
  return {
    host: name,
    instanceType: 't3.large',
    bootstrapPrefix: `bootstrap/${name}`,
    discordTokenSecret: `clawdinator/discord-token/${name}`,
  };
}
const text = (r: FleetRegistry) => `${JSON.stringify(r, null, 2)}\n`;
const add = (name: string) => (r: FleetRegistry) => {
  if (r[name] !== undefined) throw new RefusedError(`refused: ${name} is already in the registry`);
  return { ...r, [name]: entry(name) };
};

let standin: GitHubStandin;
let logged: string[];

beforeEach(async () => {
  standin = await new GitHubStandin({
    appId: APP_ID,
    installationId: INSTALLATION_ID,
    publicKey: key.publicKey,
    repo: REPO,
    files: { [PATH]: text({ 'clawdinator-1': entry('clawdinator-1') }) },
  }).start();
  logged = [];
});
afterEach(async () => {
  await standin.stop();
});

function store(options: { privateKeyPem?: string; appId?: string; attempts?: number; allow?: boolean } = {}) {
  const sink = new Writable({
    write(chunk, _enc, done) {
      logged.push(String(chunk));
      done();
    },
  });
  const installation = createGitHubInstallation({
    appId: options.appId ?? APP_ID,
    installationId: INSTALLATION_ID,
    privateKeyPem: options.privateKeyPem ?? key.privateKeyPem,
    apiUrl: standin.url,
    log: createLogger('debug', sink),
    retryBaseMs: 1,
  });
  return new GitHubRegistryStore({
    installation,
    repo: REPO,
    branch: 'main',
    path: PATH,
    attempts: options.attempts,
    protectedBranch: options.allow ? 'allow' : 'refuse',
    retryDelayMs: 5,
  });
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a failure');
}

/** Everything a user or operator could see: errors and log lines. */
function expectNoSecrets(outputs: string[]): void {
  const all = outputs.join('\n');
  expect(standin.tokens.length).toBeGreaterThan(0);
  for (const token of standin.tokens) expect(all).not.toContain(token);
  for (const line of key.privateKeyPem.split('\n').filter((l) => l.length > 20)) expect(all).not.toContain(line);
  expect(all).not.toMatch(/PRIVATE KEY|ghs_|eyJ/);
}

describe('GitHub registry', () => {
  it('reads by blob sha and commits an update with the given message, formatted as the file backend', async () => {
    const s = store();
    const first = await s.read();
    expect(first.registry).toEqual({ 'clawdinator-1': entry('clawdinator-1') });
    expect(first.version).toBe(blobSha(standin.files.get(PATH) as string));
    const message = 'fleet: spawn clawdinator-3 — requested by operator ops via /spawn';
    await s.update(add('clawdinator-3'), { message });
    expect(standin.commits).toHaveLength(1);
    expect(standin.commits[0]).toMatchObject({ path: PATH, branch: 'main', message });
    const expected = text({ 'clawdinator-1': entry('clawdinator-1'), 'clawdinator-3': entry('clawdinator-3') });
    expect(standin.files.get(PATH)).toBe(expected);
    const after = await s.read();
    expect(after.version).toBe(blobSha(expected));
    expect(Object.keys(after.registry)).toEqual(['clawdinator-1', 'clawdinator-3']);
    // No change: nothing committed.
    await s.update((r) => r, { message: 'nothing' });
    expect(standin.commits).toHaveLength(1);
  });

  it('two stores adding two names at once: both land, after one stale-sha 409 and a re-read', async () => {
    // Both reads are answered together, so both writers hold the same sha: one must lose.
    standin.holdReads(2);
    const [a, b] = [store(), store()];
    await Promise.all([
      a.update(add('clawdinator-2'), { message: 'fleet: spawn clawdinator-2' }),
      b.update(add('clawdinator-3'), { message: 'fleet: spawn clawdinator-3' }),
    ]);
    expect(standin.shaMismatches).toBeGreaterThanOrEqual(1);
    expect(standin.commits.map((c) => c.message).sort()).toEqual([
      'fleet: spawn clawdinator-2',
      'fleet: spawn clawdinator-3',
    ]);
    expect(Object.keys((await a.read()).registry).sort()).toEqual(['clawdinator-1', 'clawdinator-2', 'clawdinator-3']);
  });

  it('a conflicting change (the same name) ends in the mutator’s refusal, unchanged', async () => {
    standin.holdReads(2);
    const [a, b] = [store(), store()];
    const results = await Promise.allSettled([
      a.update(add('clawdinator-3'), { message: 'a' }),
      b.update(add('clawdinator-3'), { message: 'b' }),
    ]);
    const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(rejected).toHaveLength(1);
    expect(rejected[0]?.reason).toBeInstanceOf(RefusedError);
    expect((rejected[0] as PromiseRejectedResult).reason.message).toBe(
      'refused: clawdinator-3 is already in the registry',
    );
    expect(standin.commits).toHaveLength(1);
    expect(standin.shaMismatches).toBe(1);
  });

  it('a registry that keeps changing: bounded attempts, then a conflict error and nothing written', async () => {
    const s = store({ attempts: 3 });
    let n = 0;
    const err = await failure(
      s.update(
        (r) => {
          // Someone else commits between every read and write.
          standin.files.set(PATH, text({ ...r, [`clawdinator-${10 + n}`]: entry(`clawdinator-${10 + n++}`) }));
          return add('clawdinator-3')(r);
        },
        { message: 'fleet: spawn clawdinator-3' },
      ),
    );
    expect(err).toBeInstanceOf(RegistryConflictError);
    expect(err.message).toBe(
      `fleet registry ${REPO}@main:${PATH} changed 3 times during "fleet: spawn clawdinator-3": nothing written, try again`,
    );
    expect(standin.shaMismatches).toBe(3);
    expect(standin.commits).toHaveLength(0);
  });

  it('the App JWT is verified: a JWT signed with another key, or for another App, is refused', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
      .privateKey.export({ type: 'pkcs1', format: 'pem' })
      .toString();
    const forged = await failure(store({ privateKeyPem: other }).read());
    expect(forged).toBeInstanceOf(GitHubRefusedError);
    expect(forged.message).toBe(
      `GitHub: minting a token for installation ${INSTALLATION_ID} of GitHub App ${APP_ID} refused (HTTP 401: A JSON web token could not be decoded): GitHub refused the App’s JWT: check CLAWDINATOR_GITHUB_APP_ID and CLAWDINATOR_GITHUB_APP_KEY_FILE (the App’s current private key)`,
    );
    expect(standin.requests.at(-1)).toMatchObject({ status: 401, refused: 'JWT signature' });
    const wrongApp = await failure(store({ appId: '1' }).read());
    expect(wrongApp).toBeInstanceOf(GitHubRefusedError);
    expect(standin.requests.at(-1)).toMatchObject({ status: 401, refused: 'JWT iss' });
    expect(standin.mints).toBe(0);
    // The right key passes the same check.
    await store().read();
    expect(standin.mints).toBe(1);
  });

  it('one installation token serves several operations; one near its expiry is re-minted', async () => {
    const s = store();
    await s.read();
    await s.update(add('clawdinator-3'), { message: 'm' });
    await s.preflight();
    await s.read();
    expect(standin.mints).toBe(1);
    const repoCalls = standin.requests.filter((r) => r.path.startsWith('/repos/'));
    expect(repoCalls.length).toBeGreaterThanOrEqual(5);
    expect(repoCalls.every((r) => r.status < 300)).toBe(true);
  });

  it('a token within the refresh margin of its expiry is replaced before the next operation', async () => {
    // The clock is moved, not waited for: Date only (the stand-in checks expiry by it too).
    // Reads only: the throttling plugin spaces writes by Date, and the clock goes back after.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    try {
      const s = store();
      await s.read();
      vi.setSystemTime(Date.now() + 3_600_000 - REFRESH_MARGIN_MS - 60_000);
      await s.read();
      expect(standin.mints).toBe(1);
      vi.setSystemTime(Date.now() + 2 * 60_000);
      await s.read();
      await s.preflight();
      expect(standin.mints).toBe(2);
      expect(standin.requests.filter((r) => r.status === 401)).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('preflight: Contents read-only, a protected branch and blocking rules are refused naming the fix', async () => {
    standin.permissions = { contents: 'read', metadata: 'read' };
    const readOnly = await failure(store().preflight());
    expect(readOnly).toBeInstanceOf(RefusedError);
    expect(readOnly.message).toBe(
      `refused: the GitHub App's installation ${INSTALLATION_ID} has Contents: read, and the fleet registry ${REPO}@main:${PATH} needs Contents: read and write: give the GitHub App "Contents: Read and write" on ${REPO} (App settings → Permissions) and approve the new permission in the installation`,
    );

    standin.permissions = { contents: 'write', metadata: 'read' };
    standin.protectedBranch = true;
    const prot = await failure(store().preflight());
    expect(prot).toBeInstanceOf(RefusedError);
    expect(prot.message).toBe(
      `refused: branch main of ${REPO} is protected, so the fleet registry's commits would be refused: give the registry an unprotected branch (CLAWDINATOR_GITHUB_REGISTRY_BRANCH), or let the GitHub App bypass the protection and set CLAWDINATOR_GITHUB_REGISTRY_PROTECTED_BRANCH=allow`,
    );
    // The operator who exempted the App says so.
    await store({ allow: true }).preflight();

    standin.protectedBranch = false;
    standin.rules = ['deletion', 'pull_request'];
    const ruled = await failure(store().preflight());
    expect(ruled.message).toMatch(
      /^refused: branch main of .* has repository rules that refuse direct commits \(pull_request\), so .*PROTECTED_BRANCH=allow$/,
    );
    standin.rules = ['deletion', 'non_fast_forward'];
    await store().preflight();
  });

  it('commits refused by the repository: branch protection, rules, missing permission — final, one line, cause and fix', async () => {
    const s = store();
    standin.protectedBranch = true;
    const prot = await failure(s.update(add('clawdinator-3'), { message: 'm' }));
    expect(prot).toBeInstanceOf(GitHubRefusedError);
    expect(prot.message).toBe(
      `GitHub refused the commit to the fleet registry ${REPO}@main:${PATH} (HTTP 409: Protected branch update failed for refs/heads/main. Changes must be made through a pull request.): the branch is protected or under repository rules: give the registry an unprotected branch (CLAWDINATOR_GITHUB_REGISTRY_BRANCH), or let the GitHub App bypass the protection and set CLAWDINATOR_GITHUB_REGISTRY_PROTECTED_BRANCH=allow`,
    );
    standin.protectedBranch = false;
    standin.failPut = {
      status: 422,
      message: 'Repository rule violations found\n\nChanges must be made through a pull request.',
    };
    const ruled = await failure(s.update(add('clawdinator-3'), { message: 'm' }));
    expect(ruled).toBeInstanceOf(GitHubRefusedError);
    expect(ruled.message).toContain(
      '(HTTP 422: Repository rule violations found Changes must be made through a pull request.): the branch is protected',
    );
    standin.failPut = null;
    standin.permissions = { contents: 'read', metadata: 'read' };
    const denied = await failure(store().update(add('clawdinator-3'), { message: 'm' }));
    expect(denied).toBeInstanceOf(GitHubRefusedError);
    expect(denied.message).toBe(
      `GitHub: committing the fleet registry ${REPO}@main:${PATH} refused (HTTP 403: Resource not accessible by integration): the GitHub App may not write to ${REPO}: give the GitHub App "Contents: Read and write" on ${REPO} (App settings → Permissions) and approve the new permission in the installation`,
    );
    // A server error is not final (the job retries it), and says what failed.
    standin.permissions = { contents: 'write', metadata: 'read' };
    standin.failPut = { status: 502, message: 'Server Error' };
    const flaky = await failure(s.update(add('clawdinator-3'), { message: 'm' }));
    expect(flaky).not.toBeInstanceOf(RefusedError);
    expect(flaky.message).toBe(
      `GitHub: committing the fleet registry ${REPO}@main:${PATH} failed (HTTP 502: Server Error)`,
    );
    // The retry plugin tried it again before giving up.
    expect(standin.requests.filter((r) => r.method === 'PUT' && r.status === 502).length).toBeGreaterThan(1);
    expect(standin.commits).toHaveLength(0);
    for (const err of [prot, ruled, denied, flaky]) expect(err.message).not.toContain('\n');
    expectNoSecrets([prot, ruled, denied, flaky].map((e) => `${e.message} ${e.stack} ${JSON.stringify(e)}`));
  });

  it('a missing file or repository: a one-line refusal naming what to check', async () => {
    standin.files.clear();
    const err = await failure(store().read());
    expect(err).toBeInstanceOf(GitHubRefusedError);
    expect(err.message).toBe(
      `GitHub: reading the fleet registry ${REPO}@main:${PATH} refused (HTTP 404: Not Found): no such file, branch or repository, or the App's installation cannot see ${REPO}: check CLAWDINATOR_GITHUB_REGISTRY_REPO, _BRANCH and _PATH, and that the repository is in the installation`,
    );
  });

  it('the App key and the installation tokens appear in no log line and no error', async () => {
    const s = store();
    // A rate limit: Octokit waits, the throttling handler logs a warning, the retry succeeds.
    standin.rateLimitNext = 1;
    await s.update(add('clawdinator-3'), { message: 'm' });
    expect(logged.join('')).toContain('GitHub rate limit: retrying in');
    // Trouble that makes Octokit warn and fail: a server error retried, then refusals.
    standin.failPut = { status: 500, message: 'boom' };
    const errors = [await failure(s.update(add('clawdinator-4'), { message: 'm' }))];
    standin.failPut = { status: 409, message: 'Protected branch update failed for refs/heads/main.' };
    errors.push(await failure(s.update(add('clawdinator-4'), { message: 'm' })));
    errors.push(await failure(store({ privateKeyPem: appKeyPair().privateKeyPem }).read()));
    expectNoSecrets([...logged, ...errors.map((e) => `${e.message} ${e.stack} ${JSON.stringify(e)}`)]);
  });
});

describe('registry readers on GitHub (jobs/engine/setup.ts)', () => {
  function env(keyFile: string): { env: Record<string, string> } {
    return {
      env: {
        CLAWDINATOR_FLEET_REGISTRY_BACKEND: 'github',
        CLAWDINATOR_GITHUB_APP_ID: APP_ID,
        CLAWDINATOR_GITHUB_INSTALLATION_ID: INSTALLATION_ID,
        CLAWDINATOR_GITHUB_APP_KEY_FILE: keyFile,
        CLAWDINATOR_GITHUB_API_URL: standin.url,
        CLAWDINATOR_GITHUB_REGISTRY_REPO: REPO,
      },
    };
  }
  function keyFile(): string {
    const path = join(tempDir('clawdinator-gh-'), 'app.pem');
    writeFileSync(path, key.privateKeyPem, { mode: 0o600 });
    return path;
  }
  const contentReads = () => standin.requests.filter((r) => r.method === 'GET' && r.path.includes('/contents/')).length;

  it('the factory picks the backend from settings; reads are cached, a forced read at most every 5 s', async () => {
    const source = env(keyFile());
    const config = loadConfig(['fleetRegistryBackend', 'fleetRegistryPath'], source);
    expect(config.fleetRegistryBackend).toBe('github');
    const read = registryReader(config, { source });
    expect(Object.keys(await read())).toEqual(['clawdinator-1']);
    await Promise.all([read(), read(), read()]);
    expect(contentReads()).toBe(1);
    // The lifecycle store from the same settings shares the App and its token.
    const store = await registryStoreFrom(config, { source });
    expect(store).toBeInstanceOf(GitHubRegistryStore);
    await store.read();
    expect(standin.mints).toBe(1);
    expect(contentReads()).toBe(2);
    // A spawn elsewhere commits clawdinator-3 with its agent key.
    const agent = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const withAgent = {
      'clawdinator-1': entry('clawdinator-1'),
      'clawdinator-3': { ...entry('clawdinator-3'), agentPublicKey: agent },
    };
    standin.files.set(PATH, text(withAgent));
    expect(Object.keys(await read())).toEqual(['clawdinator-1']);
    // Verifying a job from the new host: the unknown key id forces one fresh read. (The
    // clock is moved, not waited for; the throttling plugin's limiters would stall if it
    // went back, so nothing of this App runs after the real clock returns.)
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + GITHUB_REGISTRY_MIN_REFRESH_MS });
    try {
      const keyOf = publicKeys({}, read);
      expect(await keyOf('agent:clawdinator-3')).not.toBeNull();
      expect(contentReads()).toBe(3);
      // Unknown ids right after cannot make it read again (no flood of API calls).
      expect(await keyOf('agent:clawdinator-9')).toBeNull();
      expect(await keyOf('agent:clawdinator-8')).toBeNull();
      expect(contentReads()).toBe(3);
      vi.setSystemTime(Date.now() + GITHUB_REGISTRY_CACHE_MS);
      await read();
      expect(contentReads()).toBe(4);
    } finally {
      vi.useRealTimers();
    }
  });

  it('missing GitHub settings or an unusable key stop at start-up with one line naming the setting', async () => {
    const { env: given } = env(keyFile());
    const { CLAWDINATOR_GITHUB_REGISTRY_REPO: _repo, ...noRepo } = given;
    expect(() => registryReader({ fleetRegistryBackend: 'github' }, { source: { env: noRepo } })).toThrow(
      'config: CLAWDINATOR_GITHUB_REGISTRY_REPO (or githubRegistryRepo in the config file) is not set: expected the repository holding the fleet registry, owner/name',
    );
    const missing = { ...given, CLAWDINATOR_GITHUB_APP_KEY_FILE: '/nonexistent/app.pem' };
    expect(() => registryReader({ fleetRegistryBackend: 'github' }, { source: { env: missing } })).toThrow(
      'config: CLAWDINATOR_GITHUB_APP_KEY_FILE names /nonexistent/app.pem, which cannot be read (ENOENT)',
    );
    expect(() =>
      createGitHubInstallation({
        appId: APP_ID,
        installationId: INSTALLATION_ID,
        privateKeyPem: 'hunter2-not-a-key',
        apiUrl: standin.url,
      }),
    ).toThrow('config: CLAWDINATOR_GITHUB_APP_KEY_FILE holds no RSA private key (PEM) of a GitHub App');
    // A command that only enqueues (the agent's `request`) starts without reading the key.
    const lazy = registryReader({ fleetRegistryBackend: 'github' }, { source: { env: missing }, lazyKey: true });
    await expect(lazy()).rejects.toThrow(
      'config: CLAWDINATOR_GITHUB_APP_KEY_FILE names /nonexistent/app.pem, which cannot be read (ENOENT)',
    );
    expect(() => loadConfig(['githubRegistryBranch'], { env: { CLAWDINATOR_GITHUB_REGISTRY_BRANCH: 'a..b' } })).toThrow(
      /CLAWDINATOR_GITHUB_REGISTRY_BRANCH is invalid/,
    );
  });
});
