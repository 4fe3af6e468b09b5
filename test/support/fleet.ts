// A simulated fleet for lifecycle tests and benches: a file registry with its members
// (clawdinator-1 unless told), the simulated cloud (instant timings) where hosts that come online write their heartbeat as
// their worker would, the simulated deployer (real synth), the shared memory — and the
// FleetDeps the lifecycle jobs take.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { FleetRegistry } from '../../infra/registry.js';
import type { InfraSettings } from '../../infra/settings.js';
import {
  createSimCloud,
  instantSimTimings,
  type SimCloud,
  type SimHost,
  type SimHostsOptions,
} from '../../jobs/cloud/sim.js';
import { SimDeployer } from '../../jobs/deploy/sim.js';
import { keys } from '../../jobs/engine/keys.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import type { FleetDeps } from '../../jobs/types/spawn.js';
import { MemoryStore } from '../../memory/store.js';
import { tempDir } from './cli.js';
import { writeHeartbeat } from './jobs.js';

export const SIM_AMI = 'ami-00000000000000a11';
export const SIM_BUCKET = 'clawdinator-test-bucket';

/** The infra settings the simulated deployer synthesizes with. */
export const SIM_INFRA_SETTINGS: InfraSettings = {
  awsRegion: 'eu-central-1',
  deployerRoleArn: undefined,
  vpcId: undefined,
  subnetIds: [],
  sshCidrs: [],
  rootVolumeGb: 40,
  redisNodeType: 'cache.t4g.micro',
};

export interface SimFleet {
  dir: string;
  cloud: SimCloud;
  registry: FileRegistryStore;
  memory: MemoryStore;
  fleet: FleetDeps;
  close(): void;
}

export interface SimFleetOptions {
  /** The names whose Discord token secret exists (default clawdinator-3). */
  tokens?: string[];
  /** The members in the registry and running (online) in the cloud from the start (default clawdinator-1). */
  members?: string[];
  /** The images the cloud has (default clawdinator-nixos, SIM_AMI); spawn picks the newest, the first. */
  amis?: { name: string; imageId: string }[];
  /** What the simulated hosts run and hold (revisions, broken revisions, secret files, journals). */
  hosts?: SimHostsOptions;
}

/** A registry entry as spawn writes it, on SIM_AMI. */
export function simMember(name: string): FleetRegistry[string] {
  return {
    host: name,
    instanceType: 't3.large',
    bootstrapPrefix: `bootstrap/${name}`,
    discordTokenSecret: `clawdinator/discord-token/${name}`,
    ami: SIM_AMI,
  };
}

export function simFleet(redis: Redis, options: SimFleetOptions = {}): SimFleet {
  const dir = tempDir('clawdinator-fleet-');
  const members = options.members ?? ['clawdinator-1'];
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify(Object.fromEntries(members.map((n) => [n, simMember(n)]))));
  mkdirSync(join(dir, 'memory'));
  const registry = new FileRegistryStore(join(dir, 'fleet.json'));
  const cloud = createSimCloud({
    timings: instantSimTimings,
    secrets: Object.fromEntries(
      (options.tokens ?? ['clawdinator-3']).map((n) => [`clawdinator/discord-token/${n}`, 't']),
    ),
    amis: options.amis ?? [{ name: 'clawdinator-nixos', imageId: SIM_AMI }],
    fleet: members.map((name) => ({ name })),
    buckets: [SIM_BUCKET],
    hosts: options.hosts,
  });
  // Every host online (the members from the start, each new one once it boots) writes its
  // heartbeat with its own instance id and the revision it runs, signed as its worker would: a
  // spawn or replace waits for it, a retire needs a healthy host left, a deploy checks the
  // revision. A switch restarts the worker (a new heartbeat with the new revision), or leaves it down.
  const beat = (host: SimHost) =>
    writeHeartbeat(redis, {
      host: host.name,
      instanceId: host.instanceId,
      revision: cloud.hostRevision(host).revision,
    });
  cloud.onHostOnline((host) => void beat(host));
  cloud.onHostSwitched(({ host, workerUp }) => void (workerUp ? beat(host) : redis.del(keys.heartbeat(host.name))));
  const fleet: FleetDeps = {
    cloud,
    deployer: new SimDeployer({
      cloud,
      registry,
      settings: SIM_INFRA_SETTINGS,
      outdir: join(dir, 'cdktf.out'),
      bucket: SIM_BUCKET,
    }),
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
