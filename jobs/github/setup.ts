// The GitHub parts built from the settings, the same way for the worker, the CLI and the
// sandbox. One App per process (sharedInstallation): the registry, the org sync and the
// agents' tokens share its token cache and rate limiters.
import { join } from 'node:path';
import { type ConfigSource, hasSetting, loadConfig } from '../../lib/config.js';
import { errorLine } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { MemoryStore } from '../../memory/store.js';
import type { ScheduleDef } from '../engine/schedulers.js';
import { GITHUB_TOKEN, TOKEN_MARGIN_MS } from '../types/github-token.js';
import { AgentTokens, ENV_FILE, resolveGroup } from './agent-token.js';
import type { GitHubInstallation } from './app.js';
import { type OrgSyncResult, syncOrg } from './org-sync.js';
import { webHost } from './web-host.js';

export const GITHUB_APP_SETTINGS = ['githubAppId', 'githubInstallationId', 'githubAppKeyFile', 'githubApiUrl'] as const;

/** The host queue's scheduler of the agent's token refresh. */
export const TOKEN_SCHEDULE_ID = 'clawdinator-github-token';

/** Whether this process has a GitHub App at all (the App's id and installation set). */
export function hasGitHubApp(source: ConfigSource = {}): boolean {
  return hasSetting('githubAppId', source) && hasSetting('githubInstallationId', source);
}

/**
 * The process's installation from the settings; the key is read now (a missing one stops here).
 * The App module (Octokit and its plugins, ≈12 MiB resident) is loaded here, on first use: a
 * worker on a host without a GitHub App never loads it.
 */
export async function installationFromSettings(source: ConfigSource = {}, log?: Logger): Promise<GitHubInstallation> {
  const config = loadConfig(GITHUB_APP_SETTINGS, source);
  const { githubAppOptions, sharedInstallation } = await import('./app.js');
  return sharedInstallation(githubAppOptions(config, log));
}

export interface TokenTargetOverrides {
  envFile?: string;
  ghConfigDir?: string;
}

/** The agents' tokens as the settings describe them (directory, group, repositories, permissions). */
export function agentTokensFromSettings(
  installation: GitHubInstallation,
  source: ConfigSource = {},
  overrides: TokenTargetOverrides = {},
  log?: Logger,
): AgentTokens {
  const config = loadConfig(
    ['githubTokenDir', 'agentGroup', 'githubAgentRepos', 'githubAgentPermissions', 'githubApiUrl'],
    source,
  );
  const registryRepo = hasSetting('githubRegistryRepo', source)
    ? loadConfig(['githubRegistryRepo'], source).githubRegistryRepo
    : undefined;
  return new AgentTokens({
    installation,
    policy: { repositories: config.githubAgentRepos, permissions: config.githubAgentPermissions, registryRepo },
    targets: {
      envFile: overrides.envFile ?? join(config.githubTokenDir, ENV_FILE),
      ghConfigDir: overrides.ghConfigDir ?? config.githubTokenDir,
      gid: resolveGroup(config.agentGroup),
    },
    apiUrl: config.githubApiUrl,
    log,
  });
}

/** What the worker's GitHub job types use; undefined parts are not configured on this host. */
export interface GitHubJobDeps {
  /** One run of the org sync (github-sync); absent without CLAWDINATOR_GITHUB_ORG. */
  sync?: () => Promise<OrgSyncResult>;
  /** This host's agent token (github-token). */
  agentToken?: { host: string; refreshMs: number; tokens: AgentTokens };
}

/** The worker's GitHub deps from its settings, or undefined without a GitHub App. */
export async function githubJobDeps(
  host: string,
  memory: MemoryStore,
  source: ConfigSource = {},
  log?: Logger,
): Promise<GitHubJobDeps | undefined> {
  if (!hasGitHubApp(source)) return undefined;
  const installation = await installationFromSettings(source, log);
  const { githubTokenRefreshMinutes } = loadConfig(['githubTokenRefreshMinutes'], source);
  const deps: GitHubJobDeps = {
    agentToken: {
      host,
      refreshMs: githubTokenRefreshMinutes * 60_000,
      tokens: agentTokensFromSettings(installation, source, {}, log),
    },
  };
  if (hasSetting('githubOrg', source)) {
    const { githubOrg, githubSyncExclude } = loadConfig(['githubOrg', 'githubSyncExclude'], source);
    deps.sync = () => syncOrg({ installation, memory, org: githubOrg, exclude: githubSyncExclude, log });
  }
  return deps;
}

/**
 * The token files at a worker's start: /run is empty after a reboot, and the scheduler kept in
 * Redis may not run again for up to its interval. Errors are logged; the schedule retries.
 */
export async function tokenAtStart(deps: GitHubJobDeps | undefined, log: Logger): Promise<void> {
  const token = deps?.agentToken;
  if (token === undefined) return;
  try {
    const result = await token.tokens.ensure(token.refreshMs + TOKEN_MARGIN_MS);
    log.info({ expiresAt: result.expiresAt }, 'agent GitHub token written at start');
  } catch (err) {
    log.warn({ err: errorLine(err) }, 'agent GitHub token not written at start; the schedule tries again');
  }
}

/** The schedules of this host's own queue: the agent's token refresh, when this host writes one. */
export function hostSchedules(deps: GitHubJobDeps | undefined): ScheduleDef[] {
  const token = deps?.agentToken;
  if (token === undefined) return [];
  return [{ id: TOKEN_SCHEDULE_ID, type: GITHUB_TOKEN, every: token.refreshMs, data: { host: token.host } }];
}

/** Where git clones from: the setting, or the web URL of the API's host (https://github.com). */
export function githubWebUrl(source: ConfigSource = {}): string {
  const config = loadConfig(['githubWebUrl', 'githubApiUrl'], source);
  return (config.githubWebUrl ?? `https://${webHost(config.githubApiUrl)}`).replace(/\/+$/, '');
}
