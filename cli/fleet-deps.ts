// What the lifecycle jobs act on in production, built from the configuration: AWS through
// the cloud layer, Terraform through the runner, the fleet registry. Shared by `clawdinator
// worker` and the commands that run a lifecycle job themselves.
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FleetDeps } from '../jobs/types/spawn.js';
import { hasSetting, loadConfig } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';

/**
 * What the lifecycle jobs act on: AWS through the cloud layer, Terraform through the runner,
 * the registry (its file, or the project's GitHub repo). Only when the fleet's buckets are
 * configured; loaded on demand.
 */
export async function fleetDeps(log?: Logger): Promise<FleetDeps | undefined> {
  if (!hasSetting('bootstrapBucket') || !hasSetting('stateBucket')) return undefined;
  const config = loadConfig([
    'bootstrapBucket',
    'stateBucket',
    'stateRegion',
    'awsRegion',
    'deployerRoleArn',
    'terraformBin',
    'terraformConfigFile',
    'fleetRegistryPath',
    'fleetRegistryBackend',
    'fleetMaxSize',
    'spawnsPerHour',
    'defaultInstanceType',
    'instanceTypes',
    'efsId',
    'hostFlake',
    'buildInfoFile',
    'agentDirectKeys',
  ]);
  if (!config.instanceTypes.includes(config.defaultInstanceType)) {
    throw new ConfigError(
      `config: CLAWDINATOR_DEFAULT_INSTANCE_TYPE (${config.defaultInstanceType}) is not in CLAWDINATOR_INSTANCE_TYPES`,
    );
  }
  const [
    { createAwsCloud },
    { Terraform },
    { TerraformDeployer },
    { registryStoreFrom },
    { loadInfraSettings },
    { backendConfig },
  ] = await Promise.all([
    import('../jobs/cloud/aws.js'),
    import('../jobs/terraform/runner.js'),
    import('../jobs/deploy/terraform.js'),
    import('../jobs/engine/setup.js'),
    import('../infra/settings.js'),
    import('../infra/names.js'),
  ]);
  const registryStore = await registryStoreFrom(config, { log });
  const cloud = createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn });
  return {
    cloud,
    deployer: new TerraformDeployer({
      // What an apply looks up before it creates anything (fencing against a second create).
      cloud,
      runner: new Terraform({
        bin: config.terraformBin,
        cliConfigFile: config.terraformConfigFile,
        backendConfig: backendConfig(config.stateBucket, config.stateRegion),
      }),
      registry: registryStore,
      settings: loadInfraSettings(),
      outdir: join(tmpdir(), `clawdinator-deploy-${process.pid}`),
      stateBucket: config.stateBucket,
      stateRegion: config.stateRegion,
    }),
    registryStore,
    bucket: config.bootstrapBucket,
    region: config.awsRegion ?? null,
    efsId: config.efsId ?? null,
    redisUrl: fleetRedisUrl(),
    flake: await pinnedFlake(config.hostFlake, config.buildInfoFile),
    fleetMaxSize: config.fleetMaxSize,
    spawnsPerHour: config.spawnsPerHour,
    defaultInstanceType: config.defaultInstanceType,
    agentKeys: config.agentDirectKeys,
  };
}

/**
 * The flake a new host switches to: CLAWDINATOR_HOST_FLAKE, pinned to the commit this worker's
 * host was built from (its build info) when the setting names no revision — a new host runs
 * what the fleet runs. Unpinned when the build info has no commit (a sandbox, a dirty tree).
 */
export async function pinnedFlake(hostFlake: string | undefined, buildInfoFile: string): Promise<string | null> {
  if (hostFlake === undefined) return null;
  if (hostFlake.split('/').length > 2) return hostFlake;
  try {
    const { revision } = JSON.parse(await readFile(buildInfoFile, 'utf8')) as { revision?: unknown };
    if (typeof revision === 'string' && /^[0-9a-f]{40}$/.test(revision)) return `${hostFlake}/${revision}`;
  } catch {
    // No build info: not on a host.
  }
  return hostFlake;
}

/** The fleet's Redis as hosts reach it, for their bootstrap bundle; else this process's own. */
export function fleetRedisUrl(): string | null {
  const { fleetRedisUrl } = loadConfig(['fleetRedisUrl']);
  if (fleetRedisUrl !== undefined) return fleetRedisUrl;
  return hasSetting('redisUrl') ? loadConfig(['redisUrl']).redisUrl : null;
}
