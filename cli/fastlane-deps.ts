// What the fast lane acts on in production, from the configuration: the cloud (the fleet's,
// or AWS with this machine's settings), the revision resolver (the project's GitHub App;
// without one, full shas only), the read-only token each host's nix fetches the flake with
// (minted by the App for the project's repository alone; none without an App: a public
// repository needs none), and the waits.
import type { Cloud } from '../jobs/cloud/types.js';
import type { DeployTokens, FastLaneDeps } from '../jobs/fastlane/deps.js';
import { hasSetting, loadConfig } from '../lib/config.js';
import { OperationError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { revisionResolver } from './ami-deps.js';

export const FAST_LANE_SETTINGS = [
  'projectRepo',
  'deploySwitchTimeoutSeconds',
  'deployVerifySeconds',
  'deployPollSeconds',
  'awsRegion',
  'deployerRoleArn',
] as const;

/** The fast lane's deps, or undefined when the project's repository is not configured. */
export async function fastLaneDeps(
  options: { cloud?: Cloud; hostName?: string; log?: Logger } = {},
): Promise<FastLaneDeps | undefined> {
  if (!hasSetting('projectRepo')) return undefined;
  const config = loadConfig(FAST_LANE_SETTINGS);
  const cloud =
    options.cloud ??
    (await import('../jobs/cloud/aws.js')).createAwsCloud({
      region: config.awsRegion,
      deployerRoleArn: config.deployerRoleArn,
    });
  return {
    cloud,
    resolver: await revisionResolver(options.log),
    hostName: options.hostName,
    tokens: await deployTokens(config.projectRepo, options.log),
    waits: {
      pollMs: config.deployPollSeconds * 1000,
      switchTimeoutMs: config.deploySwitchTimeoutSeconds * 1000,
      verifyTimeoutMs: config.deployVerifySeconds * 1000,
    },
  };
}

async function deployTokens(projectRepo: string, log?: Logger): Promise<DeployTokens | undefined> {
  if (!hasSetting('githubAppId')) return undefined;
  const app = loadConfig(['githubAppId', 'githubInstallationId', 'githubAppKeyFile', 'githubApiUrl']);
  const { createGitHubInstallation, githubAppOptions } = await import('../jobs/github/app.js');
  const installation = createGitHubInstallation(githubAppOptions(app, log));
  const repository = projectRepo.slice(projectRepo.indexOf('/') + 1);
  return {
    async mint() {
      const minted = await installation.mintNarrowed({ repositories: [repository], permissions: { contents: 'read' } });
      // Handed to root's nix on a host: refused when GitHub granted more than reading this repository.
      const extra = Object.entries(minted.permissions).filter(
        ([k, v]) => k !== 'metadata' && !(k === 'contents' && v === 'read'),
      );
      if (extra.length > 0 || minted.repositories === 'all' || minted.repositories.length !== 1) {
        throw new OperationError(`the flake token for ${projectRepo} was granted more than reading it`);
      }
      return minted.token;
    },
  };
}
