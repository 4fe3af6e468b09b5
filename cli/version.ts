// `clawdinator version`: what this host runs (the original's clawdinator-version): this
// project's revision, the agent runtime's pinned revision and nix-openclaw's, nixpkgs', and
// the age of each lock, from the build info the module wrote (CLAWDINATOR_BUILD_INFO_FILE).
import { Command } from 'commander';
import { formatBuildInfo, readBuildInfoFile } from '../jobs/build-info.js';
import { loadConfig } from '../lib/config.js';
import { OperationError } from '../lib/errors.js';
import { version } from '../lib/version.js';

export function command(): Command {
  return new Command('version')
    .description('print what this host was built from: project, agent runtime, nixpkgs and lock ages')
    .option('--json', 'print the build info as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { buildInfoFile } = loadConfig(['buildInfoFile']);
      const info = await readBuildInfoFile(buildInfoFile);
      if (info === null) {
        throw new OperationError(
          `no build info at ${buildInfoFile} (a host built by nix/module.nix has one; this CLI is v${version})`,
        );
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(info)}\n`);
        return;
      }
      process.stdout.write(`${formatBuildInfo(info, Date.now()).join('\n')}\n`);
    });
}
