// What the image jobs act on in production, from the configuration: the cloud (the fleet's, or
// AWS with this machine's credentials), the bucket, the revision resolver (the project's
// GitHub App; without one, full shas only), and the Nix builder of the flake's image.
import { hostname } from 'node:os';
import type { RedisOptions } from 'ioredis';
import { imageFlake, NixImageBuilder } from '../jobs/ami/builder.js';
import type { AmiDeps } from '../jobs/ami/deps.js';
import type { Cloud } from '../jobs/cloud/types.js';
import type { Signer } from '../jobs/engine/queues.js';
import { type RevisionResolver, staticResolver } from '../jobs/github/revision.js';
import { hasSetting, loadConfig } from '../lib/config.js';
import type { Logger } from '../lib/log.js';

export const AMI_SETTINGS = [
  'projectRepo',
  'projectBranch',
  'bootstrapBucket',
  'amiKeep',
  'amiBootMode',
  'amiArchitecture',
  'amiFlake',
  'amiImportPollSeconds',
  'awsRegion',
  'deployerRoleArn',
] as const;

/** The resolver of the project's revisions: GitHub as the App when configured, else full shas only. */
export async function revisionResolver(log?: Logger): Promise<RevisionResolver> {
  const { projectRepo, projectBranch } = loadConfig(['projectRepo', 'projectBranch']);
  if (!hasSetting('githubAppId')) {
    return staticResolver({ repo: projectRepo, branch: projectBranch, refs: {}, acceptFullSha: true });
  }
  const app = loadConfig(['githubAppId', 'githubInstallationId', 'githubAppKeyFile', 'githubApiUrl']);
  const [{ createGitHubInstallation, githubAppOptions }, { githubResolver }] = await Promise.all([
    import('../jobs/github/app.js'),
    import('../jobs/github/revision.js'),
  ]);
  return githubResolver({
    installation: createGitHubInstallation(githubAppOptions(app, log)),
    repo: projectRepo,
    branch: projectBranch,
  });
}

/** The name a machine builds under (clawdinator:built-by) when it is not a fleet member. */
export function machineName(): string {
  return `local-${hostname()
    .replace(/[^A-Za-z0-9.-]/g, '-')
    .slice(0, 60)}`;
}

export interface AmiDepsOptions {
  /** The fleet's cloud (the worker's); AWS with this machine's settings otherwise. */
  cloud?: Cloud;
  /** This worker's host: it builds under this name and is never its own builder. */
  hostName?: string;
  /** The workers' key and the fleet's Redis: how a rebuild asks a peer to build. */
  hostJobs?: { connection: RedisOptions; signer: Signer };
  log?: Logger;
}

/**
 * The image jobs' deps, or undefined when the project's repository or the bucket is not
 * configured (the worker then runs every other job and says so).
 */
export async function amiDeps(options: AmiDepsOptions = {}): Promise<AmiDeps | undefined> {
  if (!hasSetting('projectRepo') || !hasSetting('bootstrapBucket')) return undefined;
  const config = loadConfig(AMI_SETTINGS);
  const cloud =
    options.cloud ??
    (await import('../jobs/cloud/aws.js')).createAwsCloud({
      region: config.awsRegion,
      deployerRoleArn: config.deployerRoleArn,
    });
  return {
    cloud,
    bucket: config.bootstrapBucket,
    resolver: await revisionResolver(options.log),
    builder: new NixImageBuilder({ flake: imageFlake(config.projectRepo, config.amiFlake) }),
    builtBy: options.hostName ?? machineName(),
    hostName: options.hostName,
    hostJobs: options.hostJobs,
    keep: config.amiKeep,
    bootMode: config.amiBootMode,
    architecture: config.amiArchitecture,
    waits: { importPollMs: config.amiImportPollSeconds * 1000 },
  };
}
