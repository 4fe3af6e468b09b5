// The agent's GitHub identity on a host, minted by the control plane: the agent never holds
// the App's key. The host's own worker mints an installation token narrowed at minting
// (POST /app/installations/{id}/access_tokens with `repositories` and `permissions`: the
// fleet's own repository, where the registry lives, left out unless the token is read-only)
// and writes, into an ops-owned directory the agent's group may read:
//
//   github-app.env   GITHUB_APP_TOKEN, GITHUB_TOKEN, GH_TOKEN (as the original's
//                    /run/clawd/github-app.env), for scripts that source it
//   hosts.yml        gh's credentials for the GitHub host, and config.yml with `version: "1"`
//                    (gh migrates a config without it on every start, and that migration
//                    writes: the agent cannot write here). GH_CONFIG_DIR points there, so every
//                    `gh` and, through the credential helper, every `git push` reads the
//                    current token — a token read at start-up would expire mid-session
//   gitconfig        user.name/email of the App's bot user (`<slug>[bot]`,
//                    `<id>+<slug>[bot]@users.noreply.github.com`), so agents' commits carry the
//                    App's identity, and gh as git's credential helper for the GitHub host
//
// Each file is written atomically inside that directory: a temporary file created
// O_EXCL|O_NOFOLLOW with an unpredictable name through the directory's descriptor, mode 0640,
// group the agent's, fsynced, renamed over the old one. The directory must be owned by this
// user and writable by nobody else (checked on the opened descriptor), so nothing the agent
// controls can redirect a write. The token goes into these files only: never a log line, an
// error, a job's data or its result.
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ConfigError, OperationError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { BotIdentity, GitHubInstallation } from './app.js';
import { webHost } from './web-host.js';

export const ENV_FILE = 'github-app.env';
export const HOSTS_FILE = 'hosts.yml';
export const GH_CONFIG_FILE = 'config.yml';
export const GIT_CONFIG_FILE = 'gitconfig';
/** GitHub mints at most this many repositories into one token. */
const MAX_REPOSITORIES = 500;
/** An agent's on-demand refresh mints at most once per this long; otherwise the current token stays. */
export const ON_DEMAND_MIN_INTERVAL_MS = 60_000;
const FILE_MODE = 0o640;
const DIR_MODE = 0o750;

export type Permissions = Record<string, 'read' | 'write'>;

export interface AgentTokenPolicy {
  /** Repository names (or owner/name) in the token; empty: every repository of the installation but the registry's. */
  repositories: string[];
  permissions: Permissions;
  /** The fleet registry's repository (owner/name), when the registry lives on GitHub. */
  registryRepo?: string;
}

export interface TokenTargets {
  /** The env file (github-app.env); the gitconfig goes beside it. */
  envFile: string;
  /** GH_CONFIG_DIR: hosts.yml and config.yml. */
  ghConfigDir: string;
  /** The agent's group: the files' group. */
  gid: number;
}

export interface AgentTokenResult {
  summary: string;
  /** A new token was minted (false: the current one had enough life left). */
  minted: boolean;
  expiresAt: string;
  repositories: number | 'all';
  files: string[];
}

export interface AgentTokensOptions {
  installation: GitHubInstallation;
  policy: AgentTokenPolicy;
  targets: TokenTargets;
  /** The API URL: hosts.yml and the noreply address name its web host. */
  apiUrl: string;
  now?: () => number;
  log?: Logger;
}

/** The policy checked: the registry's repository may be in the token only if nothing in it writes. */
export function checkPolicy(policy: AgentTokenPolicy): void {
  const writes = Object.values(policy.permissions).includes('write');
  const registryName = policy.registryRepo?.split('/')[1]?.toLowerCase();
  const listed = policy.repositories.some((r) => {
    const lower = r.toLowerCase();
    return lower === policy.registryRepo?.toLowerCase() || lower === registryName;
  });
  if (listed && writes) {
    throw new ConfigError(
      `config: CLAWDINATOR_GITHUB_AGENT_REPOS lists ${policy.registryRepo}, the fleet registry's repository, with write permissions: an agent could rewrite the fleet; leave it out, or make CLAWDINATOR_GITHUB_AGENT_PERMISSIONS read-only`,
    );
  }
}

export class AgentTokens {
  private current: { token: string; expiresAt: number; mintedAt: number; repositories: number | 'all' } | undefined;
  private pending: Promise<AgentTokenResult> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: AgentTokensOptions) {
    checkPolicy(options.policy);
    this.now = options.now ?? Date.now;
  }

  /**
   * A token with at least `minValidMs` of life left, minted when the current one has less,
   * and the files written. The scheduled refresh asks for its interval plus a margin, so the
   * files never hold a token that expires before the next refresh.
   */
  ensure(minValidMs: number): Promise<AgentTokenResult> {
    // Concurrent callers share one mint.
    this.pending ??= this.run(minValidMs).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /**
   * The agent's own early refresh (`clawdinator-gh-refresh`, over the host's request socket):
   * a new token unless one was minted in the last minute, when the current one is written
   * again instead. The request socket calls this for its own host only.
   */
  async refreshNow(): Promise<AgentTokenResult & { limited: boolean }> {
    const last = this.current;
    if (last !== undefined && this.now() - last.mintedAt < ON_DEMAND_MIN_INTERVAL_MS) {
      const result = await this.ensure(0);
      return { ...result, limited: true };
    }
    return { ...(await this.ensure(Number.POSITIVE_INFINITY)), limited: false };
  }

  /** The token last written (for `clawdinator github token --print` only). */
  lastToken(): string | undefined {
    return this.current?.token;
  }

  private async run(minValidMs: number): Promise<AgentTokenResult> {
    let minted = false;
    if (this.current === undefined || this.current.expiresAt - this.now() < minValidMs) {
      const repositories = await this.repositories();
      const token = await this.options.installation.mintNarrowed({
        repositories,
        permissions: this.options.policy.permissions,
      });
      this.current = {
        token: token.token,
        expiresAt: Date.parse(token.expiresAt),
        mintedAt: this.now(),
        repositories: token.repositories === 'all' ? 'all' : token.repositories.length,
      };
      minted = true;
    }
    const current = this.current;
    const identity = await this.options.installation.botIdentity();
    const files = writeTokenFiles(this.options.targets, current.token, identity, this.options.apiUrl);
    const expiresAt = new Date(current.expiresAt).toISOString();
    const reach = current.repositories === 'all' ? 'every repository' : `${current.repositories} repositories`;
    const summary = `${minted ? 'token minted' : 'token kept'} for ${reach}, expires ${expiresAt}; written to ${dirname(this.options.targets.envFile)}`;
    this.options.log?.info({ minted, expiresAt, repositories: current.repositories }, 'agent GitHub token written');
    return { summary, minted, expiresAt, repositories: current.repositories, files };
  }

  /** The names to narrow to: as configured, or every repository of the installation but the registry's. */
  private async repositories(): Promise<string[]> {
    const { policy } = this.options;
    if (policy.repositories.length > 0) return policy.repositories.map((r) => r.split('/').pop() as string);
    const registry = policy.registryRepo?.toLowerCase();
    const all = (await this.options.installation.repositories()).filter((full) => full.toLowerCase() !== registry);
    if (all.length === 0) {
      throw new OperationError(
        'GitHub: the App’s installation has no repository for the agents besides the registry’s',
      );
    }
    if (all.length > MAX_REPOSITORIES) {
      throw new ConfigError(
        `config: the installation has ${all.length} repositories and a token can name at most ${MAX_REPOSITORIES}: list the agents' in CLAWDINATOR_GITHUB_AGENT_REPOS`,
      );
    }
    return all.map((full) => full.split('/')[1] as string);
  }
}

// ── the files ───────────────────────────────────────────────────────────────────────────

/** Writes the env file, gh's hosts.yml and config.yml, and the gitconfig; returns their paths. */
export function writeTokenFiles(targets: TokenTargets, token: string, identity: BotIdentity, apiUrl: string): string[] {
  const host = webHost(apiUrl);
  const env = `GITHUB_APP_TOKEN=${token}\nGITHUB_TOKEN=${token}\nGH_TOKEN=${token}\n`;
  // YAML double-quoted scalars: JSON strings are valid ones.
  const q = JSON.stringify;
  const hosts = [
    `${q(host)}:`,
    '    git_protocol: https',
    `    user: ${q(identity.login)}`,
    `    oauth_token: ${q(token)}`,
    '    users:',
    `        ${q(identity.login)}:`,
    `            oauth_token: ${q(token)}`,
    '',
  ].join('\n');
  const ghConfig = 'version: "1"\ngit_protocol: https\n';
  const gitConfig = [
    '[user]',
    `\tname = ${identity.login}`,
    `\temail = ${identity.userId}+${identity.login}@users.noreply.${host}`,
    `[credential "https://${host}"]`,
    // An empty helper first drops helpers configured before this file, as `gh auth setup-git` does.
    '\thelper =',
    '\thelper = !gh auth git-credential',
    '',
  ].join('\n');
  const envDir = dirname(targets.envFile);
  const written = [
    writeGroupFile(envDir, basename(targets.envFile), env, targets.gid),
    writeGroupFile(targets.ghConfigDir, HOSTS_FILE, hosts, targets.gid),
    writeGroupFile(targets.ghConfigDir, GH_CONFIG_FILE, ghConfig, targets.gid),
    writeGroupFile(envDir, GIT_CONFIG_FILE, gitConfig, targets.gid),
  ];
  return written;
}

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_WRONLY, O_CREAT, O_EXCL } = constants;

/**
 * `content` into `dir/name`, mode 0640, group `gid`, atomically: a temporary file made through
 * the directory's descriptor (Linux: /proc/self/fd/<fd>/<name> resolves inside it), then
 * renamed. The directory is made (0750, group `gid`) when missing; an existing one must be
 * this user's and writable by nobody else.
 */
export function writeGroupFile(dir: string, name: string, content: string, gid: number): string {
  const dirFd = openOwnDir(dir, gid);
  const at = (entry: string) => `/proc/self/fd/${dirFd}/${entry}`;
  const temp = `.${name}.${randomBytes(9).toString('hex')}.tmp`;
  try {
    const fd = openSync(at(temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    try {
      chownGroup(() => fchownSync(fd, process.geteuid?.() ?? 0, gid), dir, gid);
      fchmodSync(fd, FILE_MODE);
      const bytes = Buffer.from(content, 'utf8');
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(at(temp), at(name));
    fsyncSync(dirFd);
    return join(dir, name);
  } catch (err) {
    try {
      unlinkSync(at(temp));
    } catch {}
    if (err instanceof ConfigError || err instanceof OperationError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new OperationError(`could not write ${join(dir, name)} (${code})`);
  } finally {
    closeSync(dirFd);
  }
}

function openOwnDir(dir: string, gid: number): number {
  let fd: number;
  try {
    fd = openSync(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw refusedDir(dir, code === 'ELOOP' || code === 'ENOTDIR' ? 'not a directory' : code);
    try {
      mkdirSync(dir, { mode: DIR_MODE });
    } catch (mkErr) {
      throw new OperationError(`could not make ${dir} (${(mkErr as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    fd = openSync(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    chownGroup(() => fchownSync(fd, process.geteuid?.() ?? 0, gid), dir, gid);
    fchmodSync(fd, DIR_MODE);
  }
  const st = fstatSync(fd);
  const problem =
    st.uid !== (process.geteuid?.() ?? 0)
      ? 'owned by another user'
      : (st.mode & 0o022) !== 0
        ? 'writable by group or others'
        : null;
  if (problem !== null) {
    closeSync(fd);
    throw refusedDir(dir, problem);
  }
  return fd;
}

function refusedDir(dir: string, why: string | undefined): ConfigError {
  return new ConfigError(
    `refused: ${dir} is ${why ?? 'unusable'}: the token files go into a directory of the control-plane user that only it may write`,
  );
}

function chownGroup(fn: () => void, dir: string, gid: number): void {
  try {
    fn();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    throw new ConfigError(
      `config: cannot give files in ${dir} to group ${gid}: the control-plane user must be a member of the agent's group (CLAWDINATOR_AGENT_GROUP)`,
    );
  }
}

/** A group name or number → its gid (names from /etc/group). */
export function resolveGroup(group: string, groupFile = '/etc/group'): number {
  if (/^\d+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = readFileSync(groupFile, 'utf8');
  } catch {}
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new ConfigError(`config: CLAWDINATOR_AGENT_GROUP names group ${group}, which does not exist here`);
}
