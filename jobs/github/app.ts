// The project's GitHub identity: a GitHub App (never a personal access token), acting through
// one installation. `@octokit/app` signs the App JWT (RS256, the App's private key) and mints
// installation tokens on demand; @octokit/auth-app caches each token in memory for 59 of its
// 60 minutes and shares one mint between concurrent callers. `ready()` adds what that cache
// does not do: it looks at the token's own `expires_at` and mints a new one when less than
// REFRESH_MARGIN_MS is left, so a token GitHub (or GHES) issued for a shorter life is never
// used past its end. @octokit/plugin-retry and -throttling handle 5xx and rate limits.
//
// The key and the tokens stay inside this module and Octokit: nothing here logs a request,
// and every SDK/HTTP error leaves as one of the project's one-line errors that names the
// operation and the repository — never a token, header or request id (`githubError`).
import { createHash, createPrivateKey, randomUUID } from 'node:crypto';
import { App } from '@octokit/app';
import { Octokit } from '@octokit/core';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { readSecretFile } from '../../lib/config.js';
import { ConfigError, OperationError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { version } from '../../lib/version.js';
import { clean, githubError } from './errors.js';

/** Mint a new installation token when the current one has less than this left. */
export const REFRESH_MARGIN_MS = 5 * 60_000;
const JUST_MINTED_MS = 5_000;

export interface GitHubAppOptions {
  appId: string;
  installationId: string;
  /** The App's private key (PEM, PKCS#1 as GitHub hands it out, or PKCS#8). */
  privateKeyPem: string;
  /** https://api.github.com, a GHES `/api/v3` URL, or a loopback stand-in in tests. */
  apiUrl: string;
  log?: Logger;
  /** The retry plugin's back-off unit (1 s; the n-th retry waits n² units): tests shorten it. */
  retryBaseMs?: number;
}

export interface GitHubAppSettings {
  githubAppId: string;
  githubInstallationId: string;
  githubAppKeyFile: string;
  githubApiUrl: string;
}

/** What the installation token may do, as GitHub granted it (`contents: "write"` …). */
export type InstallationPermissions = Record<string, string | undefined>;

const ClawOctokit = Octokit.plugin(retry, throttling);
export type InstallationOctokit = InstanceType<typeof ClawOctokit>;

export interface GitHubInstallation {
  readonly installationId: string;
  /**
   * The installation's Octokit (each request carries the cached installation token), after
   * minting the token if none is cached or it is about to expire. The token itself is never
   * handed out; its permissions and expiry are.
   */
  ready(): Promise<{ octokit: InstallationOctokit; permissions: InstallationPermissions; expiresAt: string }>;
  /**
   * A new installation token narrowed at minting to these repositories (names in the
   * installation's account; all of the installation's when absent) and permissions. Never
   * cached here and never the control plane's own token: it is handed out, to be written for
   * an agent or passed to git, and the caller decides how long to keep it.
   */
  mintNarrowed(request: NarrowedTokenRequest): Promise<NarrowedToken>;
  /** The App's bot user, whose name and noreply address agents' commits carry (cached). */
  botIdentity(): Promise<BotIdentity>;
  /** The repositories the installation can see, owner/name (GET /installation/repositories). */
  repositories(): Promise<string[]>;
}

export interface NarrowedTokenRequest {
  repositories?: string[];
  permissions: Record<string, 'read' | 'write'>;
}

export interface NarrowedToken {
  token: string;
  expiresAt: string;
  permissions: InstallationPermissions;
  /** The repositories GitHub put in the token (owner/name), or "all" when not narrowed. */
  repositories: string[] | 'all';
}

export interface BotIdentity {
  /** `<slug>[bot]` */
  login: string;
  /** The bot user's id (not the App's): its noreply address is `<id>+<login>@users.noreply.<host>`. */
  userId: number;
}

/** The App's options from settings; the key is read from its file and checked here. */
export function githubAppOptions(config: GitHubAppSettings, log?: Logger): GitHubAppOptions {
  const pem = readSecretFile(config.githubAppKeyFile, 'CLAWDINATOR_GITHUB_APP_KEY_FILE');
  return {
    appId: config.githubAppId,
    installationId: config.githubInstallationId,
    privateKeyPem: pem,
    apiUrl: config.githubApiUrl,
    log,
  };
}

export function createGitHubInstallation(options: GitHubAppOptions): GitHubInstallation {
  const privateKey = pkcs8(options.privateKeyPem);
  const log = octokitLog(options.log);
  const base = options.retryBaseMs ?? 1000;
  const AppOctokit = ClawOctokit.defaults({
    baseUrl: options.apiUrl.replace(/\/+$/, ''),
    userAgent: `clawdinators/${version}`,
    log,
    // 409 and 422 are answers (a stale sha, a rule), not outages: the caller decides.
    retry: { doNotRetry: [400, 401, 403, 404, 409, 410, 422, 451], retryAfterBaseValue: base },
    throttle: {
      // Its limiters are process-wide groups keyed by id: one key per App object.
      id: `clawdinators-${randomUUID()}`,
      // One retry after a short wait; a long limit fails the operation (the job retries later).
      onRateLimit: (after: number, _o: unknown, _k: unknown, count: number) => rateLimited(log, after, count),
      onSecondaryRateLimit: (after: number, _o: unknown, _k: unknown, count: number) => rateLimited(log, after, count),
      retryAfterBaseValue: base,
    },
  });
  const app = new App({ appId: options.appId, privateKey, Octokit: AppOctokit, log });
  // The installation's Octokit shares the App's token cache; building it mints nothing.
  let octokit: InstallationOctokit | undefined;
  const installation = async (): Promise<InstallationOctokit> => {
    octokit ??= (await app.getInstallationOctokit(Number(options.installationId))) as InstallationOctokit;
    return octokit;
  };
  const what = `minting a token for installation ${options.installationId} of GitHub App ${options.appId}`;
  const mintRefusals = {
    401: 'GitHub refused the App’s JWT: check CLAWDINATOR_GITHUB_APP_ID and CLAWDINATOR_GITHUB_APP_KEY_FILE (the App’s current private key)',
    404: `installation ${options.installationId} of GitHub App ${options.appId} does not exist: check CLAWDINATOR_GITHUB_INSTALLATION_ID (the App must be installed on the repository's account)`,
  };
  let identity: Promise<BotIdentity> | undefined;
  return {
    installationId: options.installationId,
    async mintNarrowed(request) {
      try {
        const { data } = await app.octokit.request('POST /app/installations/{installation_id}/access_tokens', {
          installation_id: Number(options.installationId),
          ...(request.repositories === undefined ? {} : { repositories: request.repositories }),
          permissions: request.permissions,
        });
        const repos = (data as { repositories?: { full_name: string }[] }).repositories;
        return {
          token: data.token,
          expiresAt: data.expires_at,
          permissions: { ...(data.permissions as InstallationPermissions) },
          repositories: repos === undefined ? 'all' : repos.map((r) => r.full_name),
        };
      } catch (err) {
        throw githubError(err, `${what} (narrowed)`, {
          ...mintRefusals,
          422: 'a repository asked for is not in the installation, or a permission asked for is more than the App has: check CLAWDINATOR_GITHUB_AGENT_REPOS and CLAWDINATOR_GITHUB_AGENT_PERMISSIONS against the App’s installation',
        });
      }
    },
    botIdentity() {
      if (identity !== undefined) return identity;
      const pending = (async (): Promise<BotIdentity> => {
        const about = `reading the bot user of GitHub App ${options.appId}`;
        try {
          const { data: meta } = await app.octokit.request('GET /app');
          const slug = (meta as { slug?: string } | null)?.slug;
          if (typeof slug !== 'string' || slug === '') throw new OperationError(`GitHub: ${about} failed: no slug`);
          const login = `${slug}[bot]`;
          const { data: user } = await (await installation()).request('GET /users/{username}', { username: login });
          return { login, userId: Number(user.id) };
        } catch (err) {
          throw githubError(err, about, { 401: mintRefusals[401] });
        }
      })();
      identity = pending;
      pending.catch(() => {
        identity = undefined;
      });
      return pending;
    },
    async repositories() {
      const kit = (await this.ready()).octokit;
      const names: string[] = [];
      try {
        for (let page = 1; ; page++) {
          const { data } = await kit.request('GET /installation/repositories', { per_page: 100, page });
          names.push(...data.repositories.map((r) => r.full_name));
          if (data.repositories.length < 100 || names.length >= data.total_count) return names;
        }
      } catch (err) {
        throw githubError(err, `listing the repositories of installation ${options.installationId}`);
      }
    },
    async ready() {
      const kit = await installation();
      try {
        let auth = (await kit.auth({ type: 'installation' })) as TokenAuth;
        // A token minted this moment is used even if GitHub gave it less than the margin.
        const age = Date.now() - Date.parse(auth.createdAt);
        if (Date.parse(auth.expiresAt) - Date.now() < REFRESH_MARGIN_MS && age > JUST_MINTED_MS) {
          auth = (await kit.auth({ type: 'installation', refresh: true })) as TokenAuth;
        }
        return { octokit: kit, permissions: { ...auth.permissions }, expiresAt: auth.expiresAt };
      } catch (err) {
        throw githubError(err, what, mintRefusals);
      }
    },
  };
}

// One App per process and settings: the registry, the org sync and the agents' tokens share
// its token cache and its rate limiters (GitHub's limits are per installation, not per caller).
const shared = new Map<string, GitHubInstallation>();

/** The process's installation for these options, made on first use. */
export function sharedInstallation(options: GitHubAppOptions): GitHubInstallation {
  const key = JSON.stringify([
    options.apiUrl,
    options.appId,
    options.installationId,
    createHash('sha256').update(options.privateKeyPem).digest('hex'),
  ]);
  let installation = shared.get(key);
  if (installation === undefined) {
    installation = createGitHubInstallation(options);
    shared.set(key, installation);
  }
  return installation;
}

interface TokenAuth {
  createdAt: string;
  expiresAt: string;
  permissions: InstallationPermissions;
}

function pkcs8(pem: string): string {
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'rsa') throw new Error('not RSA');
    return key.export({ type: 'pkcs8', format: 'pem' }).toString();
  } catch {
    throw new ConfigError('config: CLAWDINATOR_GITHUB_APP_KEY_FILE holds no RSA private key (PEM) of a GitHub App');
  }
}

interface OctokitLog {
  debug: (message: string) => void;
  info: (message: string) => void;
  warn: (message: string) => void;
  error: (message: string) => void;
}

/** Octokit's own warnings (a rate limit, a retry) as log lines: the message only, never its objects. */
function octokitLog(log: Logger | undefined): OctokitLog {
  const noop = () => {};
  if (log === undefined) return { debug: noop, info: noop, warn: noop, error: noop };
  return {
    debug: noop,
    info: noop,
    warn: (message) => log.warn({ component: 'github' }, clean(String(message))),
    error: (message) => log.error({ component: 'github' }, clean(String(message))),
  };
}

function rateLimited(log: OctokitLog, afterSeconds: number, retryCount: number): boolean {
  const again = retryCount < 1 && afterSeconds <= 60;
  log.warn(`GitHub rate limit: ${again ? `retrying in ${afterSeconds} s` : 'giving up'}`);
  return again;
}
