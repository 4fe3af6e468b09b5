// Revisions: a hostile rev is refused by its shape in one line before any lookup; a good one
// becomes the full commit sha through GitHub (the loopback stand-in, as the project's App),
// and an unknown one is a refusal.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGitHubInstallation } from '../../../jobs/github/app.js';
import { checkRev, githubResolver, revSchema, staticResolver } from '../../../jobs/github/revision.js';
import { RefusedError, UsageError } from '../../../lib/errors.js';
import { appKeyPair, GitHubStandin } from '../../support/github-standin.js';
import { HOSTILE_REVS } from '../../support/revs.js';

const REPO = 'openclaw/clawdinators';
const MAIN = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
const TAG = 'f00dfeed00000000000000000000000000000001';
const OLD = 'a1b2c3d4000000000000000000000000000000aa';
const key = appKeyPair();

describe('checkRev', () => {
  it.each(HOSTILE_REVS.map((r) => [JSON.stringify(r).slice(0, 40), r]))('refuses %s in one line', (_label, rev) => {
    let thrown: unknown;
    try {
      checkRev(rev);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(UsageError);
    expect((thrown as Error).message.split('\n')).toHaveLength(1);
    expect(revSchema.safeParse(rev).success).toBe(false);
  });

  it.each(['main', 'v1.2.3', 'feature/image-repart', MAIN, 'a1b2c3d', 'release-2026_01'])('takes %s', (rev) => {
    expect(checkRev(rev)).toBe(rev);
    expect(revSchema.safeParse(rev).success).toBe(true);
  });
});

describe('githubResolver', () => {
  let standin: GitHubStandin;
  beforeEach(async () => {
    standin = await new GitHubStandin({
      appId: '4242',
      installationId: '77',
      publicKey: key.publicKey,
      repo: REPO,
    }).start();
    standin.refs.set('main', MAIN);
    standin.refs.set('v1.0', TAG);
    standin.commitShas.add(OLD);
  });
  afterEach(() => standin.stop());

  function resolver() {
    const installation = createGitHubInstallation({
      appId: '4242',
      installationId: '77',
      privateKeyPem: key.privateKeyPem,
      apiUrl: standin.url,
      retryBaseMs: 1,
    });
    return githubResolver({ installation, repo: REPO, branch: 'main' });
  }

  it('resolves the branch head by default, a branch, a tag, a full sha and a unique short sha', async () => {
    const r = resolver();
    expect(await r.resolve(undefined)).toEqual({ sha: MAIN, ref: 'main' });
    expect(await r.resolve('v1.0')).toEqual({ sha: TAG, ref: 'v1.0' });
    expect(await r.resolve(OLD)).toEqual({ sha: OLD, ref: OLD });
    expect((await r.resolve('f00dfee')).sha).toBe(TAG);
    expect(standin.requests.filter((q) => q.path.includes('/commits/')).map((q) => q.path)).toEqual([
      `/repos/${REPO}/commits/main`,
      `/repos/${REPO}/commits/v1.0`,
      `/repos/${REPO}/commits/${OLD}`,
      `/repos/${REPO}/commits/f00dfee`,
    ]);
  });

  it('refuses an unknown rev and an ambiguous short sha with one line', async () => {
    const r = resolver();
    await expect(r.resolve('no-such-branch')).rejects.toThrow(
      new RefusedError(`refused: no-such-branch is not a commit, branch or tag of ${REPO}`),
    );
    // a1b2c3d starts both MAIN and OLD.
    await expect(r.resolve('a1b2c3d')).rejects.toBeInstanceOf(RefusedError);
  });

  it('refuses a hostile rev before asking GitHub anything', async () => {
    const r = resolver();
    for (const rev of HOSTILE_REVS) await expect(r.resolve(rev)).rejects.toBeInstanceOf(UsageError);
    expect(standin.requests).toEqual([]);
  });
});

describe('staticResolver', () => {
  it('without GitHub: a full sha as it is, anything else refused saying what is needed', async () => {
    const r = staticResolver({ repo: REPO, branch: 'main', refs: {}, acceptFullSha: true });
    expect(await r.resolve(MAIN)).toEqual({ sha: MAIN, ref: MAIN });
    await expect(r.resolve('main')).rejects.toThrow(/needs the GitHub App settings/);
    await expect(r.resolve(undefined)).rejects.toThrow(/needs the GitHub App settings/);
  });
});
