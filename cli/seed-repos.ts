// `clawdinator seed-repos`: the agent's ~/repos brought up to date, AS THE AGENT (git run by
// root inside a repository the agent controls would run the agent's hooks and fsmonitor as
// root: refused). From the seed archive the bootstrap staged when there is one; otherwise the
// workspace's repos.tsv is cloned with the agent's token (the env file the control plane
// writes). Exit 1 only when every repository failed.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { ENV_FILE } from '../jobs/github/agent-token.js';
import { type GitAuth, REPOS_LIST_FILE, seedRepos } from '../jobs/github/repos.js';
import { githubWebUrl } from '../jobs/github/setup.js';
import { loadConfig } from '../lib/config.js';
import { UsageError } from '../lib/errors.js';

export function command(): Command {
  return new Command('seed-repos')
    .description('update ~/repos from the staged repo seeds (or clone them), as the agent')
    .option('--archive <file>', 'the seed archive (default CLAWDINATOR_REPO_SEEDS_ARCHIVE)')
    .option('--list <file>', 'repos.tsv when there are no seeds (default: the workspace’s)')
    .option('--dir <dir>', 'the repos folder (default CLAWDINATOR_REPOS_DIR, else ~/repos)')
    .action(async (opts: { archive?: string; list?: string; dir?: string }) => {
      if (process.geteuid?.() === 0) {
        throw new UsageError(
          'refused: seed-repos runs as the agent, never as root (git would run the agent’s hooks and fsmonitor as root)',
        );
      }
      const config = loadConfig(['repoSeedsArchive', 'reposDir', 'workspaceDir', 'githubTokenDir']);
      const token = agentToken(join(config.githubTokenDir, ENV_FILE));
      const auth: GitAuth | undefined = token === undefined ? undefined : { token, webUrl: githubWebUrl() };
      const outcomes = await seedRepos({
        reposDir: opts.dir ?? config.reposDir ?? join(homedir(), 'repos'),
        archive: opts.archive ?? config.repoSeedsArchive,
        list: opts.list ?? join(config.workspaceDir, REPOS_LIST_FILE),
        auth,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      const failed = outcomes.filter((o) => !o.ok).length;
      process.stdout.write(
        `seed-repos: ${outcomes.length - failed} of ${outcomes.length} repositories up to date${failed ? ` (${failed} failed)` : ''}\n`,
      );
    });
}

/** The token the control plane wrote for the agent, else GH_TOKEN / GITHUB_TOKEN; none: public clones. */
function agentToken(envFile: string): string | undefined {
  try {
    const line = readFileSync(envFile, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('GITHUB_TOKEN='));
    const value = line?.slice('GITHUB_TOKEN='.length).trim();
    if (value) return value;
  } catch {}
  return process.env.GH_TOKEN || process.env.GITHUB_TOKEN || undefined;
}
