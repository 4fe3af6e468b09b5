// `clawdinator github token|sync`: what the worker's schedules do, from a shell. `token` mints
// the agent's narrowed App token and writes the env file, gh's hosts.yml and the gitconfig
// (jobs/github/agent-token.ts); the token is printed only with --print. `sync` writes the org's
// open pull requests and issues into the shared memory (jobs/github/org-sync.ts). Both need the
// App's key: they run as the control plane's user.
import { resolve } from 'node:path';
import { Command } from 'commander';
import { syncOrg } from '../jobs/github/org-sync.js';
import { agentTokensFromSettings, installationFromSettings } from '../jobs/github/setup.js';
import { loadConfig } from '../lib/config.js';
import { MemoryStore } from '../memory/store.js';

export function command(): Command {
  const github = new Command('github').description('GitHub for the agents: their App token, the org sync');
  github
    .command('token')
    .description(
      'mint the agent’s narrowed App token; write github-app.env, gh’s hosts.yml and the gitconfig (0640, the agent’s group)',
    )
    .option('--write-env <file>', 'the env file (default: github-app.env in CLAWDINATOR_GITHUB_TOKEN_DIR)')
    .option('--gh-config <dir>', 'where hosts.yml and config.yml go (GH_CONFIG_DIR; default the same directory)')
    .option('--print', 'also print the token on stdout (the summary goes to stderr)')
    .action(async (opts: { writeEnv?: string; ghConfig?: string; print?: boolean }) => {
      const installation = await installationFromSettings();
      const tokens = agentTokensFromSettings(
        installation,
        {},
        {
          envFile: opts.writeEnv === undefined ? undefined : resolve(opts.writeEnv),
          ghConfigDir: opts.ghConfig === undefined ? undefined : resolve(opts.ghConfig),
        },
      );
      // From a shell, always a new token: that is what asking for one means.
      const result = await tokens.ensure(Number.POSITIVE_INFINITY);
      if (opts.print) {
        process.stderr.write(`${result.summary}\n`);
        process.stdout.write(`${tokens.lastToken()}\n`);
      } else {
        process.stdout.write(`${result.summary}\n`);
      }
    });
  github
    .command('sync')
    .description('write the org’s open pull requests and issues to github/prs.md and github/issues.md in the memory')
    .option('--force', 'sync everything even when the org’s watermark is unchanged')
    .action(async (opts: { force?: boolean }) => {
      const config = loadConfig([
        'githubOrg',
        'githubSyncExclude',
        'memoryDir',
        'memoryMaxBytes',
        'memoryLockWaitSeconds',
      ]);
      const installation = await installationFromSettings();
      const memory = new MemoryStore({
        root: config.memoryDir,
        maxBytes: config.memoryMaxBytes,
        waitSeconds: config.memoryLockWaitSeconds,
      });
      const result = await syncOrg({
        installation,
        memory,
        org: config.githubOrg,
        exclude: config.githubSyncExclude,
        force: opts.force,
      });
      process.stdout.write(`${result.summary}\n`);
    });
  return github;
}
