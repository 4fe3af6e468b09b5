// What the lifecycle jobs act on in production, built from the configuration: AWS through
// the cloud layer, Terraform through the runner, the fleet registry. Shared by `clawdinator
// worker` and the commands that run a lifecycle job themselves.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registryPath } from '../jobs/engine/setup.js';
import type { FleetDeps } from '../jobs/types/spawn.js';
import { hasSetting, loadConfig } from '../lib/config.js';

/**
 * What the lifecycle jobs act on: AWS through the cloud layer, Terraform through the runner,
 * the registry file. Only when the fleet's buckets are configured; loaded on demand.
 */
export async function fleetDeps(): Promise<FleetDeps | undefined> {
  if (!hasSetting('bootstrapBucket') || !hasSetting('stateBucket')) return undefined;
  const config = loadConfig([
    'bootstrapBucket',
    'stateBucket',
    'stateRegion',
    'awsRegion',
    'deployerRoleArn',
    'terraformBin',
    'fleetRegistryPath',
    'fleetMaxSize',
    'spawnsPerHour',
    'defaultInstanceType',
    'efsId',
  ]);
  const [
    { createAwsCloud },
    { Terraform },
    { TerraformDeployer },
    { FileRegistryStore },
    { loadInfraSettings },
    { backendConfig },
  ] = await Promise.all([
    import('../jobs/cloud/aws.js'),
    import('../jobs/terraform/runner.js'),
    import('../jobs/deploy/terraform.js'),
    import('../jobs/registry/file.js'),
    import('../infra/settings.js'),
    import('../infra/names.js'),
  ]);
  const registryStore = new FileRegistryStore(registryPath(config.fleetRegistryPath));
  return {
    cloud: createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn }),
    deployer: new TerraformDeployer({
      runner: new Terraform({
        bin: config.terraformBin,
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
    fleetMaxSize: config.fleetMaxSize,
    spawnsPerHour: config.spawnsPerHour,
    defaultInstanceType: config.defaultInstanceType,
  };
}

/** The fleet's Redis as hosts reach it, for their bootstrap bundle; else this process's own. */
export function fleetRedisUrl(): string | null {
  const { fleetRedisUrl } = loadConfig(['fleetRedisUrl']);
  if (fleetRedisUrl !== undefined) return fleetRedisUrl;
  return hasSetting('redisUrl') ? loadConfig(['redisUrl']).redisUrl : null;
}
