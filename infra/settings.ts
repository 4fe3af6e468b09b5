// The settings the infra app synthesizes from. All have defaults, so `npm run synth` works
// on a fresh clone with none set. The state bucket is deliberately not among them: it is
// given to `terraform init` and `plan` by the runner (see infra/state.ts).
import { type Config, type ConfigSource, loadConfig } from '../lib/config.js';
import { ConfigError } from '../lib/errors.js';
import { projectPath } from '../lib/paths.js';

export const INFRA_SETTINGS = [
  'awsRegion',
  'deployerRoleArn',
  'vpcId',
  'subnetIds',
  'sshCidrs',
  'rootVolumeGb',
  'redisNodeType',
] as const;

export type InfraSettings = Config<(typeof INFRA_SETTINGS)[number]>;

export function loadInfraSettings(source: ConfigSource = {}): InfraSettings {
  const settings = loadConfig(INFRA_SETTINGS, source);
  checkNetwork(settings);
  return settings;
}

/** A VPC needs its subnets named and subnets need their VPC: half of each is a mistake. */
export function checkNetwork(settings: Pick<InfraSettings, 'vpcId' | 'subnetIds'>): void {
  if (settings.vpcId !== undefined && settings.subnetIds.length === 0) {
    throw new ConfigError('config: CLAWDINATOR_VPC_ID is set but CLAWDINATOR_SUBNET_IDS is empty: name the subnets');
  }
  if (settings.vpcId === undefined && settings.subnetIds.length > 0) {
    throw new ConfigError('config: CLAWDINATOR_SUBNET_IDS is set without CLAWDINATOR_VPC_ID: name their VPC');
  }
}

export function registryPath(source: ConfigSource = {}): string {
  return loadConfig(['fleetRegistryPath'], source).fleetRegistryPath ?? projectPath('infra', 'fleet.json');
}
