// `clawdinator repos prepare`: the repositories of workspace/repos.tsv shallow-cloned with a
// read-only installation token narrowed to them (passed to git as a header in its
// environment, never in a URL, an argument or a log), packed as repo-seeds.tar.zst and
// uploaded to s3://<bucket>/repo-seeds/repo-seeds.tar.zst, where the bootstrap bundle takes
// it from (jobs/bootstrap/bundle.ts). Any repository that cannot be cloned stops it: a seed
// archive missing a repository would be a broken artifact.
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { REPO_SEEDS_SOURCE_KEY } from '../jobs/bootstrap/bundle.js';
import { type GitAuth, prepareSeeds, readReposList, seedAuth } from '../jobs/github/repos.js';
import { githubWebUrl, hasGitHubApp, installationFromSettings } from '../jobs/github/setup.js';
import { loadConfig } from '../lib/config.js';
import { projectPath } from '../lib/paths.js';

export function command(): Command {
  const repos = new Command('repos').description('the agents’ repo seeds');
  repos
    .command('prepare')
    .description('clone the repositories of repos.tsv, pack repo-seeds.tar.zst and upload it for the bootstrap bundles')
    .option('--list <file>', 'the repository list (default: workspace/repos.tsv of this checkout)')
    .option('--out <file>', 'also keep the archive here')
    .option('--no-upload', 'do not upload (with --out: only build the archive)')
    .action(async (opts: { list?: string; out?: string; upload: boolean }) => {
      const seeds = await readReposList(opts.list === undefined ? projectPath('workspace', 'repos.tsv') : opts.list);
      const bucket = opts.upload ? loadConfig(['bootstrapBucket', 'awsRegion']) : undefined;
      const say = (line: string) => process.stderr.write(`${line}\n`);
      let auth: GitAuth | undefined;
      if (hasGitHubApp()) {
        auth = await seedAuth(await installationFromSettings(), seeds, githubWebUrl());
      } else {
        say('no GitHub App configured (CLAWDINATOR_GITHUB_APP_ID): cloning without a token');
      }
      const work = await mkdtemp(join(tmpdir(), 'clawdinator-seeds-'));
      try {
        const { archive } = await prepareSeeds({ seeds, workDir: work, auth, log: say });
        const { size } = await stat(archive);
        if (opts.out !== undefined) await copyFile(archive, resolve(opts.out));
        let where = opts.out === undefined ? '' : `; kept as ${resolve(opts.out)}`;
        if (bucket !== undefined) {
          const { createAwsCloud } = await import('../jobs/cloud/aws.js');
          const cloud = createAwsCloud({ region: bucket.awsRegion });
          const up = await cloud.uploadFile(bucket.bootstrapBucket, REPO_SEEDS_SOURCE_KEY, archive);
          where += `; uploaded to s3://${up.bucket}/${up.key} (sha256 ${up.sha256})`;
        }
        process.stdout.write(`prepared ${seeds.length} repositories (${size} bytes)${where}\n`);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });
  return repos;
}
