// A simulated fleet for lifecycle tests and benches: a file registry with clawdinator-1, the
// simulated cloud (instant timings) where hosts that come online write their heartbeat as
// their worker would, the simulated deployer (real synth), the shared memory — and the
// FleetDeps the lifecycle jobs take.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../jobs/cloud/sim.js';
import { SimDeployer } from '../../jobs/deploy/sim.js';
import { keys } from '../../jobs/engine/keys.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import type { FleetDeps } from '../../jobs/types/spawn.js';
import { MemoryStore } from '../../memory/store.js';
import { tempDir } from './cli.js';

export const SIM_AMI = 'ami-00000000000000a11';
export const SIM_BUCKET = 'clawdinator-test-bucket';

export interface SimFleet {
  dir: string;
  cloud: SimCloud;
  registry: FileRegistryStore;
  memory: MemoryStore;
  fleet: FleetDeps;
  close(): void;
}

/** `tokens`: the names whose Discord token secret exists. */
export function simFleet(redis: Redis, options: { tokens?: string[] } = {}): SimFleet {
  const dir = tempDir('clawdinator-fleet-');
  const entry = {
    host: 'clawdinator-1',
    instanceType: 't3.large',
    bootstrapPrefix: 'bootstrap/clawdinator-1',
    discordTokenSecret: 'clawdinator/discord-token/clawdinator-1',
    ami: SIM_AMI,
  };
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify({ 'clawdinator-1': entry }));
  mkdirSync(join(dir, 'memory'));
  const registry = new FileRegistryStore(join(dir, 'fleet.json'));
  const cloud = createSimCloud({
    timings: instantSimTimings,
    secrets: Object.fromEntries(
      (options.tokens ?? ['clawdinator-3']).map((n) => [`clawdinator/discord-token/${n}`, 't']),
    ),
    amis: [{ name: 'clawdinator-nixos', imageId: SIM_AMI }],
    fleet: [{ name: 'clawdinator-1' }],
    buckets: [SIM_BUCKET],
  });
  cloud.onHostOnline((host) => {
    const at = Date.now();
    const beat = {
      host: host.name,
      instanceId: host.instanceId,
      version: 't',
      revision: 'r',
      startedAt: at,
      activeJobs: 0,
      at,
    };
    void redis.set(keys.heartbeat(host.name), JSON.stringify(beat), 'EX', 60);
  });
  const settings = {
    awsRegion: 'eu-central-1',
    deployerRoleArn: undefined,
    vpcId: undefined,
    subnetIds: [],
    sshCidrs: [],
    rootVolumeGb: 40,
    redisNodeType: 'cache.t4g.micro',
  };
  const fleet: FleetDeps = {
    cloud,
    deployer: new SimDeployer({ cloud, registry, settings, outdir: join(dir, 'cdktf.out'), bucket: SIM_BUCKET }),
    registryStore: registry,
    bucket: SIM_BUCKET,
    region: 'eu-central-1',
    fleetMaxSize: 5,
    spawnsPerHour: 3,
    defaultInstanceType: 't3.large',
    waits: { pollMs: 50 },
  };
  const memory = new MemoryStore({ root: join(dir, 'memory'), maxBytes: 1 << 20, waitSeconds: 5 });
  return { dir, cloud, registry, memory, fleet, close: () => cloud.close() };
}
