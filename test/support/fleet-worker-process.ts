// A fleet worker in its own process, for the lifecycle kill-and-resume tests: the production
// worker and job types on a shared Redis, the simulated cloud of the test process (over
// loopback HTTP: test/support/sim-server.ts), the simulated deployer, and the registry and
// memory folders the test made. Each apply is counted in Redis (`test:applies`, by pid).
// With `ami`, the image pipeline too (the sandbox's stand-in build, in this process); with
// `lane`, the fast lane (deploy), as the worker of `lane.hostName`.
// `node fleet-worker-process.js '<json: {port, simUrl, dir, bucket, keys: {id: pem}, ami?, lane?, settings?}>'`.
import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { StandInImageBuilder } from '../../jobs/ami/builder.js';
import type { AmiDeps } from '../../jobs/ami/deps.js';
import { SimDeployer } from '../../jobs/deploy/sim.js';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { startWorker, type WorkerSettings } from '../../jobs/engine/worker.js';
import type { FastLaneDeps } from '../../jobs/fastlane/deps.js';
import { staticResolver } from '../../jobs/github/revision.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import { jobTypes } from '../../jobs/types/index.js';
import type { FleetDeps } from '../../jobs/types/spawn.js';
import { createLogger } from '../../lib/log.js';
import { MemoryStore } from '../../memory/store.js';
import { fastSettings, testStepSigner } from './jobs.js';
import { APPLIES, simCloudClient } from './sim-server.js';

export interface FleetWorkerConfig {
  port: number;
  simUrl: string;
  dir: string;
  bucket: string;
  keys: Record<string, string>;
  /** The image pipeline too (rebuild-ami, built in this process): the refs revs resolve among. */
  ami?: { repo: string; refs: Record<string, string> };
  /** The fast lane too (deploy): the refs revs resolve among, and this worker's host. */
  lane?: { repo: string; refs: Record<string, string>; hostName?: string };
  /** Worker settings beside the defaults below (stall limits, the finalizer's lease and sweep). */
  settings?: Partial<WorkerSettings>;
}

const config = JSON.parse(process.argv[2] ?? '{}') as FleetWorkerConfig;
const connection = { host: '127.0.0.1', port: config.port, maxRetriesPerRequest: null };
const redis = new Redis(connection);
const cloud = simCloudClient(config.simUrl);
const registry = new FileRegistryStore(join(config.dir, 'fleet.json'));
const sim = new SimDeployer({
  cloud,
  registry,
  settings: {
    awsRegion: 'eu-central-1',
    deployerRoleArn: undefined,
    vpcId: undefined,
    subnetIds: [],
    sshCidrs: [],
    rootVolumeGb: 40,
    redisNodeType: 'cache.t4g.micro',
  },
  outdir: join(config.dir, `cdktf.out-${process.pid}`),
  bucket: config.bucket,
});
const fleet: FleetDeps = {
  cloud,
  deployer: {
    planInstance: (name, o, c) => sim.planInstance(name, o, c),
    async applyInstance(name, o, c) {
      await redis.rpush(APPLIES, `${name}:${process.pid}`);
      return sim.applyInstance(name, o, c);
    },
  },
  registryStore: registry,
  bucket: config.bucket,
  region: 'eu-central-1',
  fleetMaxSize: 5,
  spawnsPerHour: 3,
  defaultInstanceType: 't3.large',
  waits: { pollMs: 50 },
};
const memory = new MemoryStore({ root: join(config.dir, 'memory'), maxBytes: 1 << 20, waitSeconds: 5 });
const ami: AmiDeps | undefined = config.ami && {
  cloud,
  bucket: config.bucket,
  resolver: staticResolver({ repo: config.ami.repo, branch: 'main', refs: config.ami.refs }),
  builder: new StandInImageBuilder(join(config.dir, `images-${process.pid}`)),
  builtBy: 'clawdinator-1',
  keep: 5,
  bootMode: 'legacy-bios',
  architecture: 'x86_64',
  waits: { pollMs: 50, importPollMs: 50 },
};
const lane: FastLaneDeps | undefined = config.lane && {
  cloud,
  resolver: staticResolver({ repo: config.lane.repo, branch: 'main', refs: config.lane.refs }),
  hostName: config.lane.hostName,
  waits: { pollMs: 50, switchTimeoutMs: 30_000, verifyTimeoutMs: 10_000, handoffMs: 30_000 },
};
const types = new JobTypes(
  jobTypes({ redis, registry: async () => (await registry.read()).registry, memory, fleet, ami, lane }),
);
const w = startWorker(
  FLEET_QUEUE,
  {
    connection,
    redis,
    types,
    publicKey: async (id) => (config.keys[id] ? createPublicKey(config.keys[id] as string) : null),
    policy: { policy: {}, redis, agentRequestsPerHour: 3 },
    log: createLogger('silent'),
    stepSigner: testStepSigner,
  },
  // The in-process synth blocks the event loop for a while, more so on a loaded machine: a
  // lock short enough to lapse then would let the same job run twice in this very process.
  { ...fastSettings, lockDurationMs: 5000, stalledIntervalMs: 1000, ...config.settings },
);
await w.worker.waitUntilReady();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void w.close().then(() => process.exit(0));
});
