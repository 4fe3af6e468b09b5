// The GitHub registry backend: infra/fleet.json in the project's own repository, read and
// written through the contents API as the project's GitHub App. It mirrors the file backend
// (file.ts): the version is the file's blob sha, an update PUTs the new content with the sha
// it read, and GitHub's 409 "… does not match <sha>" (someone committed meanwhile) makes it
// read again and re-apply the mutator, a bounded number of times. The JSON is written as the
// file backend writes it (2-space indent, trailing newline), so commits diff one entry.
//
// Refusals by the repository are final and say cause and fix: branch protection or
// repository rules (409/422 naming them), a missing permission (403 "Resource not
// accessible by integration": the App needs Contents read & write). `preflight()` checks
// both before a job creates anything: the installation token's `contents` permission, and
// the branch's `protected` flag and active rules. A protected branch is refused unless the
// settings say the App may bypass its protection (`protectedBranch: 'allow'`): classic
// protection and rulesets that require pull requests or status checks refuse direct commits,
// and an operator who has exempted the App says so explicitly.
import { type FleetRegistry, parseRegistry, RegistryError } from '../../infra/registry.js';
import type { ClawError, RefusedError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { type GitHubAppOptions, type GitHubInstallation, sharedInstallation } from '../github/app.js';
import { GitHubRefusedError, githubError, githubFailure } from '../github/errors.js';
import { RegistryConflictError, type RegistryMutator, type RegistrySnapshot, type RegistryStore } from './types.js';

const DEFAULT_ATTEMPTS = 5;
/** The contents API serves files up to 1 MB with their content inline. */
const MAX_INLINE_BYTES = 1024 * 1024;
/** Rule types that refuse a direct commit to the branch (rulesets; classic protection shows as `protected`). */
const BLOCKING_RULES = new Set([
  'pull_request',
  'required_status_checks',
  'update',
  'required_deployments',
  'merge_queue',
  'workflows',
  'code_scanning',
]);

export type ProtectedBranchPolicy = 'refuse' | 'allow';

export interface GitHubRegistryOptions {
  installation: GitHubInstallation;
  /** owner/name */
  repo: string;
  branch: string;
  /** The file's path in the repository, e.g. infra/fleet.json. */
  path: string;
  protectedBranch?: ProtectedBranchPolicy;
  /** Reads and re-applications before an update gives up on a registry that keeps changing. */
  attempts?: number;
  /** Base of the random wait between two attempts (250 ms), so racing writers spread out. */
  retryDelayMs?: number;
}

export interface GitHubRegistrySettings {
  githubRegistryRepo: string;
  githubRegistryBranch: string;
  githubRegistryPath: string;
  githubRegistryProtectedBranch: ProtectedBranchPolicy;
}

/** The store from settings and the App's options (key already read). */
export function githubRegistryStore(
  settings: GitHubRegistrySettings,
  app: GitHubAppOptions,
  log?: Logger,
): GitHubRegistryStore {
  return new GitHubRegistryStore({
    installation: sharedInstallation({ ...app, log: app.log ?? log }),
    repo: settings.githubRegistryRepo,
    branch: settings.githubRegistryBranch,
    path: settings.githubRegistryPath,
    protectedBranch: settings.githubRegistryProtectedBranch,
  });
}

export class GitHubRegistryStore implements RegistryStore {
  private readonly owner: string;
  private readonly name: string;
  private readonly attempts: number;
  private readonly retryDelayMs: number;

  constructor(private readonly options: GitHubRegistryOptions) {
    const [owner, name] = options.repo.split('/');
    if (!owner || !name) throw new RegistryError(`fleet registry: "${options.repo}" is not a repository (owner/name)`);
    this.owner = owner;
    this.name = name;
    this.attempts = options.attempts ?? DEFAULT_ATTEMPTS;
    this.retryDelayMs = options.retryDelayMs ?? 250;
  }

  /** owner/name@branch:path, as errors name it. */
  get where(): string {
    return `${this.options.repo}@${this.options.branch}:${this.options.path}`;
  }

  async read(): Promise<RegistrySnapshot> {
    const { octokit } = await this.options.installation.ready();
    let data: unknown;
    try {
      ({ data } = await octokit.request('GET /repos/{owner}/{repo}/contents/{path}', {
        owner: this.owner,
        repo: this.name,
        path: this.options.path,
        ref: this.options.branch,
      }));
    } catch (err) {
      throw this.readError(err);
    }
    const file = data as { type?: string; encoding?: string; content?: string; sha?: string; size?: number };
    if (Array.isArray(data) || file.type !== 'file' || typeof file.sha !== 'string') {
      throw new RegistryError(`fleet registry ${this.where} is not a file`);
    }
    if (file.encoding !== 'base64' || typeof file.content !== 'string' || (file.size ?? 0) > MAX_INLINE_BYTES) {
      throw new RegistryError(`fleet registry ${this.where} is too large for the contents API (over 1 MB)`);
    }
    const text = Buffer.from(file.content, 'base64').toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new RegistryError(`fleet registry ${this.where} is not valid JSON`);
    }
    return { registry: parseRegistry(parsed, this.where), version: file.sha };
  }

  async update(mutator: RegistryMutator, options: { message: string }): Promise<FleetRegistry> {
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) await sleep(Math.random() * this.retryDelayMs * attempt);
      const before = await this.read();
      const wanted = mutator(structuredClone(before.registry));
      // Validated before writing: a mutator's mistake never reaches the repository.
      const registry = parseRegistry(wanted, this.where);
      if (JSON.stringify(registry) === JSON.stringify(before.registry)) return registry;
      const text = `${JSON.stringify(registry, null, 2)}\n`;
      if (await this.writeIf(before.version, text, options.message)) return registry;
    }
    throw new RegistryConflictError(
      `fleet registry ${this.where} changed ${this.attempts} times during "${options.message}": nothing written, try again`,
    );
  }

  async preflight(): Promise<void> {
    const { octokit, permissions } = await this.options.installation.ready();
    const contents = permissions.contents;
    if (contents !== 'write') {
      throw new GitHubRefusedError(
        `refused: the GitHub App's installation ${this.options.installation.installationId} has Contents: ${contents ?? 'no access'}, and the fleet registry ${this.where} needs Contents: read and write: ${this.permissionFix()}`,
      );
    }
    let branch: { protected?: boolean };
    try {
      ({ data: branch } = await octokit.request('GET /repos/{owner}/{repo}/branches/{branch}', {
        owner: this.owner,
        repo: this.name,
        branch: this.options.branch,
      }));
    } catch (err) {
      throw githubError(err, `reading branch ${this.options.branch} of ${this.options.repo}`, {
        404: `the branch does not exist, or the App's installation cannot see ${this.options.repo}: create the branch, set CLAWDINATOR_GITHUB_REGISTRY_BRANCH, or add the repository to the installation`,
      });
    }
    if (this.options.protectedBranch === 'allow') return;
    if (branch.protected === true) throw this.protectedRefusal('is protected');
    const rules = await this.branchRules(octokit);
    const blocking = rules.filter((r) => BLOCKING_RULES.has(r));
    if (blocking.length > 0)
      throw this.protectedRefusal(`has repository rules that refuse direct commits (${blocking.join(', ')})`);
  }

  // ── internals ───────────────────────────────────────────────────────────────────────

  /** Writes `text` if the file still has blob sha `version`; false when someone committed since. */
  private async writeIf(version: string, text: string, message: string): Promise<boolean> {
    const { octokit } = await this.options.installation.ready();
    try {
      await octokit.request('PUT /repos/{owner}/{repo}/contents/{path}', {
        owner: this.owner,
        repo: this.name,
        path: this.options.path,
        branch: this.options.branch,
        message,
        content: Buffer.from(text, 'utf8').toString('base64'),
        sha: version,
      });
      return true;
    } catch (err) {
      const failure = githubFailure(err);
      if (failure !== null && (failure.status === 409 || failure.status === 422)) {
        if (isRuleRefusal(failure.message)) throw this.commitRefused(failure.status, failure.message);
        if (isStaleSha(failure.message)) return false;
      }
      throw this.writeError(err);
    }
  }

  private async branchRules(octokit: Awaited<ReturnType<GitHubInstallation['ready']>>['octokit']): Promise<string[]> {
    try {
      const { data } = await octokit.request('GET /repos/{owner}/{repo}/rules/branches/{branch}', {
        owner: this.owner,
        repo: this.name,
        branch: this.options.branch,
      });
      return (data as { type?: unknown }[]).map((r) => String(r.type));
    } catch (err) {
      // GitHub Enterprise Server before rulesets has no such endpoint: nothing to check there.
      if (githubFailure(err)?.status === 404) return [];
      throw githubError(err, `reading the rules of branch ${this.options.branch} of ${this.options.repo}`);
    }
  }

  private protectedRefusal(state: string): RefusedError {
    return new GitHubRefusedError(
      `refused: branch ${this.options.branch} of ${this.options.repo} ${state}, so the fleet registry's commits would be refused: ${this.protectionFix()}`,
    );
  }

  private commitRefused(status: number, said: string): ClawError {
    return new GitHubRefusedError(
      `GitHub refused the commit to the fleet registry ${this.where} (HTTP ${status}: ${said}): the branch is protected or under repository rules: ${this.protectionFix()}`,
    );
  }

  private protectionFix(): string {
    return 'give the registry an unprotected branch (CLAWDINATOR_GITHUB_REGISTRY_BRANCH), or let the GitHub App bypass the protection and set CLAWDINATOR_GITHUB_REGISTRY_PROTECTED_BRANCH=allow';
  }

  private permissionFix(): string {
    return `give the GitHub App "Contents: Read and write" on ${this.options.repo} (App settings → Permissions) and approve the new permission in the installation`;
  }

  private readError(err: unknown): ClawError {
    return githubError(err, `reading the fleet registry ${this.where}`, {
      403: `the GitHub App cannot read ${this.options.repo}: ${this.permissionFix()}`,
      404: `no such file, branch or repository, or the App's installation cannot see ${this.options.repo}: check CLAWDINATOR_GITHUB_REGISTRY_REPO, _BRANCH and _PATH, and that the repository is in the installation`,
    });
  }

  private writeError(err: unknown): ClawError {
    return githubError(err, `committing the fleet registry ${this.where}`, {
      403: `the GitHub App may not write to ${this.options.repo}: ${this.permissionFix()}`,
      404: `the branch or repository is gone, or the App's installation cannot see ${this.options.repo}: check CLAWDINATOR_GITHUB_REGISTRY_REPO and _BRANCH`,
      409: 'the repository refused the commit: check the branch protection and repository rules',
      422: 'the repository refused the commit: check the branch protection and repository rules',
    });
  }
}

/** GitHub's words for a commit refused by branch protection or a ruleset. */
function isRuleRefusal(message: string): boolean {
  return /protected branch|rule violation|ruleset|pull request|status check|merge queue/i.test(message);
}

/** GitHub's words for a stale or missing blob sha: "<path> does not match <sha>", "\"sha\" wasn't supplied". */
function isStaleSha(message: string): boolean {
  return /does not match|"?sha"? wasn't supplied/i.test(message);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
