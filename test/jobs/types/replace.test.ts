// The replace job end to end: the real worker on a real redis-server, the simulated cloud
// with instant timings, the simulated deployer (the real synth), the file registry and
// memory in a temp dir. clawdinator-3 is spawned for real first, then replaced. Every host
// that is online writes its heartbeat (with its own instance id), as its worker would.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../../jobs/cloud/sim.js';
import { SimDeployer } from '../../../jobs/deploy/sim.js';
import type { Deployer } from '../../../jobs/deploy/types.js';
import type { Envelope, Principal } from '../../../jobs/engine/envelope.js';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../../jobs/engine/queues.js';
import { FileRegistryStore } from '../../../jobs/registry/file.js';
import { jobTypes } from '../../../jobs/types/index.js';
import type { FleetDeps } from '../../../jobs/types/spawn.js';
import { createLogger } from '../../../lib/log.js';
import { MemoryStore } from '../../../memory/store.js';
import { tempDir } from '../../support/cli.js';
import { keyPair, lifecycleSettings, startWorker } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

const BUCKET = 'clawdinator-test-bucket';
const AMI = 'ami-00000000000000a11';
const AMI2 = 'ami-00000000000000b22';
const operator: Principal = { kind: 'cli', operator: 'ops' };
const agent: Principal = { kind: 'agent', host: 'clawdinator-1' };
const signer = keyPair();
const settings = {
  awsRegion: 'eu-central-1',
  deployerRoleArn: undefined,
  vpcId: undefined,
  subnetIds: [],
  sshCidrs: [],
  rootVolumeGb: 40,
  redisNodeType: 'cache.t4g.micro',
};

let server: TestRedis;
let conn: { host: string; port: number };
let redis: Redis;
let dir: string;
let cloud: SimCloud;
let registry: FileRegistryStore;
let memory: MemoryStore;
let closers: (() => Promise<void> | void)[] = [];
let requests = 0;

const member = (name: string) => ({
  host: name,
  instanceType: 't3.large',
  bootstrapPrefix: `bootstrap/${name}`,
  discordTokenSecret: `clawdinator/discord-token/${name}`,
  ami: AMI,
});

function heartbeat(host: string, instanceId: string): Promise<unknown> {
  const at = Date.now();
  const value = { host, instanceId, version: 't', revision: 'r', startedAt: at, activeJobs: 0, at };
  return redis.set(keys.heartbeat(host), JSON.stringify(value), 'EX', 60);
}

beforeAll(async () => {
  server = await startRedis();
  conn = { host: '127.0.0.1', port: server.port };
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  requests = 0;
  redis = server.client();
  await redis.flushall();
  dir = tempDir('clawdinator-replace-');
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify({ 'clawdinator-1': member('clawdinator-1') }));
  registry = new FileRegistryStore(join(dir, 'fleet.json'));
  mkdirSync(join(dir, 'memory'));
  memory = new MemoryStore({ root: join(dir, 'memory'), maxBytes: 1 << 20, waitSeconds: 5 });
  cloud = createSimCloud({
    timings: instantSimTimings,
    secrets: { 'clawdinator/discord-token/clawdinator-3': 'token-3' },
    // The newer image last: spawn picks the newest, so AMI2 goes first.
    amis: [
      { name: 'clawdinator-nixos-next', imageId: AMI2 },
      { name: 'clawdinator-nixos', imageId: AMI },
    ],
    fleet: [{ name: 'clawdinator-1' }],
    buckets: [BUCKET],
  });
  cloud.onHostOnline((host) => void heartbeat(host.name, host.instanceId));
  closers.push(() => cloud.close());
});
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
});

function start(options: { deployer?: (sim: Deployer) => Deployer } = {}) {
  const sim = new SimDeployer({ cloud, registry, settings, outdir: join(dir, 'cdktf.out'), bucket: BUCKET });
  const fleet: FleetDeps = {
    cloud,
    deployer: options.deployer ? options.deployer(sim) : sim,
    registryStore: registry,
    bucket: BUCKET,
    region: 'eu-central-1',
    fleetMaxSize: 5,
    spawnsPerHour: 3,
    defaultInstanceType: 't3.large',
    waits: { pollMs: 50 },
  };
  const types = new JobTypes(
    jobTypes({ redis, registry: async () => (await registry.read()).registry, memory, fleet }),
  );
  const connection = { ...conn, maxRetriesPerRequest: null };
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection,
      redis: server.client(),
      types,
      publicKey: async (id) => (id === 'operator:ops' || id === 'agent:clawdinator-1' ? signer.publicKey : null),
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
    },
    lifecycleSettings,
  );
  const operatorQueue = new Enqueuer(connection, server.client(), types, {
    keyId: 'operator:ops',
    key: signer.privateKey,
  });
  const agentQueue = new Enqueuer(connection, server.client(), types, {
    keyId: 'agent:clawdinator-1',
    key: signer.privateKey,
  });
  const queue = new Queue(FLEET_QUEUE, { connection: conn });
  closers.push(
    () => worker.close(),
    () => operatorQueue.close(),
    () => agentQueue.close(),
    () => queue.close(),
  );
  async function run(
    type: string,
    data: { name: string; ami?: string },
    principal: Principal = operator,
  ): Promise<Job<Envelope>> {
    const enqueuer = principal.kind === 'agent' ? agentQueue : operatorQueue;
    const { jobId } = await enqueuer.enqueue({
      type,
      data,
      principal,
      requestId: `req-${type}-${data.name}-${++requests}`,
    });
    const deadline = Date.now() + 20_000;
    for (;;) {
      const state = await queue.getJobState(jobId);
      if (state === 'completed' || state === 'failed') return (await queue.getJob(jobId)) as Job<Envelope>;
      if (Date.now() > deadline) throw new Error(`${jobId} did not finish (state ${state})`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    spawn: (name: string) => run('spawn', { name }),
    replace: (name: string, ami?: string, principal?: Principal) =>
      run('replace', ami === undefined ? { name } : { name, ami }, principal),
  };
}

const instanceOf = async (name: string) => (await cloud.listFleetInstances()).find((i) => i.name === name);
const entryOf = async (name: string) => (await registry.read()).registry[name];

describe('replace', () => {
  it('replaces a spawned clawdinator-3: a new instance online, the old one terminated, recorded', async () => {
    const { spawn, replace } = start();
    const spawned = await spawn('clawdinator-3');
    const oldId = spawned.returnvalue.instanceId as string;
    const before = readFileSync(registry.path, 'utf8');

    const job = await replace('clawdinator-3');
    expect(job.failedReason).toBeUndefined();
    const newId = job.returnvalue.instanceId as string;
    expect(newId).not.toBe(oldId);
    expect(job.returnvalue.summary).toBe(`clawdinator-3 replaced: ${oldId} → ${newId} (${AMI})`);
    expect(Object.keys(job.data.steps ?? {}).filter((s) => !s.includes(':'))).toEqual([
      'checks',
      'plan',
      'apply',
      'running',
      'ssm-online',
      'heartbeat',
      'record',
    ]);
    expect((await cloud.describeInstance(oldId)).state).toBe('terminated');
    const now = await instanceOf('clawdinator-3');
    expect(now?.instanceId).toBe(newId);
    expect(now?.state).toBe('running');
    expect((await cloud.pingStatus([newId])).get(newId)).toBe('Online');
    expect(JSON.parse((await redis.get(keys.heartbeat('clawdinator-3'))) as string).instanceId).toBe(newId);
    // No AMI given: the registry is untouched.
    expect(readFileSync(registry.path, 'utf8')).toBe(before);
    const ops = (await memory.read('ops.md')).content.toString();
    expect(ops).toContain(
      `replace clawdinator-3: ${oldId} → ${newId} (${AMI}) — requested by operator ops (job replace-req-replace-clawdinator-3-2)`,
    );
    const day = new Date().toISOString().slice(0, 10);
    expect((await memory.read(`audit/${day}.md`)).content.toString()).toContain(
      `replace name:clawdinator-3 → replaced: clawdinator-3 replaced: ${oldId} → ${newId}`,
    );
  });

  it('replaces onto a given AMI: recorded in the registry, the new host runs it', async () => {
    const { spawn, replace } = start();
    const oldId = (await spawn('clawdinator-3')).returnvalue.instanceId as string;
    expect((await cloud.describeInstance(oldId)).imageId).toBe(AMI);
    const job = await replace('clawdinator-3', AMI2);
    expect(job.failedReason).toBeUndefined();
    const newId = job.returnvalue.instanceId as string;
    expect(job.returnvalue.summary).toBe(`clawdinator-3 replaced: ${oldId} → ${newId} (${AMI2})`);
    expect((await cloud.describeInstance(newId)).imageId).toBe(AMI2);
    expect((await cloud.describeInstance(oldId)).state).toBe('terminated');
    expect((await entryOf('clawdinator-3'))?.ami).toBe(AMI2);
    expect((await entryOf('clawdinator-1'))?.ami).toBe(AMI);
    expect(readFileSync(registry.historyPath, 'utf8')).toContain(
      `fleet: replace clawdinator-3 with ${AMI2} — requested by operator ops via the CLI`,
    );
  });

  it('refuses an unknown AMI, an unknown name and an agent before anything changes', async () => {
    const { spawn, replace } = start();
    const oldId = (await spawn('clawdinator-3')).returnvalue.instanceId as string;
    const before = readFileSync(registry.path, 'utf8');
    const launches = cloud.calls.byOperation.RunInstances;

    const ami = await replace('clawdinator-3', 'ami-0000000000000dead');
    expect(ami.failedReason).toBe('refused: AMI ami-0000000000000dead does not exist');
    expect(ami.attemptsMade).toBe(1);
    const unknown = await replace('clawdinator-9');
    expect(unknown.failedReason).toBe('refused: clawdinator-9 is not in the registry');
    const byAgent = await replace('clawdinator-3', undefined, agent);
    expect(byAgent.failedReason).toBe(
      "an agent's replace needs a human's confirmation in the ops channel, and none is configured (CLAWDINATOR_OPS_CHANNEL_ID)",
    );

    expect(readFileSync(registry.path, 'utf8')).toBe(before);
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
    expect(cloud.calls.byOperation.RunInstances).toBe(launches);
    expect((await instanceOf('clawdinator-3'))?.instanceId).toBe(oldId);
  });
});
