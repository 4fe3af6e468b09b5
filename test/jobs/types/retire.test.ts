// The retire job end to end: the real worker on a real redis-server, the simulated cloud with
// instant timings, the simulated deployer (the real synth), the file registry and memory in
// a temp dir. clawdinator-3 is spawned for real first, then retired. Every host that is
// online (clawdinator-1 from the start) writes its heartbeat, as its worker would.
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
  dir = tempDir('clawdinator-retire-');
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify({ 'clawdinator-1': member('clawdinator-1') }));
  registry = new FileRegistryStore(join(dir, 'fleet.json'));
  mkdirSync(join(dir, 'memory'));
  memory = new MemoryStore({ root: join(dir, 'memory'), maxBytes: 1 << 20, waitSeconds: 5 });
  cloud = createSimCloud({
    timings: instantSimTimings,
    secrets: { 'clawdinator/discord-token/clawdinator-3': 'token-3' },
    amis: [{ name: 'clawdinator-nixos', imageId: AMI }],
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
  async function run(type: string, name: string, principal: Principal = operator): Promise<Job<Envelope>> {
    const enqueuer = principal.kind === 'agent' ? agentQueue : operatorQueue;
    const { jobId } = await enqueuer.enqueue({
      type,
      data: { name },
      principal,
      requestId: `req-${type}-${name}-${++requests}`,
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
    spawn: (name: string) => run('spawn', name),
    retire: (name: string, principal?: Principal) => run('retire', name, principal),
  };
}

const names = async () => Object.keys((await registry.read()).registry);
const instanceOf = async (name: string) => (await cloud.listFleetInstances()).find((i) => i.name === name);

describe('retire', () => {
  it('retires a spawned clawdinator-3: terminated, out of the registry, bundle and key gone, recorded', async () => {
    const { spawn, retire } = start();
    const spawned = await spawn('clawdinator-3');
    const instanceId = spawned.returnvalue.instanceId as string;
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-3/')).toContain('bootstrap/clawdinator-3/manifest.json');

    const job = await retire('clawdinator-3');
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.summary).toBe(`clawdinator-3 retired: ${instanceId} terminated`);
    expect(Object.keys(job.data.steps ?? {}).filter((s) => !s.includes(':'))).toEqual([
      'checks',
      'plan',
      'apply',
      'terminated',
      'registry',
      'cleanup',
      'record',
    ]);
    expect(await names()).toEqual(['clawdinator-1']);
    expect((await cloud.describeInstance(instanceId)).state).toBe('terminated');
    expect(await instanceOf('clawdinator-3')).toBeUndefined();
    expect(await instanceOf('clawdinator-1')).toBeDefined();
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-3/')).toEqual([]);
    expect(await cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(false);
    // The member's Discord token is the operators' to keep or delete: a respawn reuses it.
    expect(await cloud.secretExists('clawdinator/discord-token/clawdinator-3')).toBe(true);
    expect(readFileSync(registry.historyPath, 'utf8')).toContain(
      'fleet: retire clawdinator-3 — requested by operator ops via the CLI',
    );
    const ops = (await memory.read('ops.md')).content.toString();
    expect(ops).toMatch(
      new RegExp(
        `\\n- \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC retire clawdinator-3: ${instanceId} terminated — requested by operator ops \\(job retire-req-retire-clawdinator-3-2\\)\\n$`,
      ),
    );
    const day = new Date().toISOString().slice(0, 10);
    expect((await memory.read(`audit/${day}.md`)).content.toString()).toContain(
      `retire name:clawdinator-3 → retired: clawdinator-3 retired: ${instanceId} terminated`,
    );

    const again = await retire('clawdinator-3');
    expect(again.failedReason).toBe('refused: clawdinator-3 is not in the registry');
    expect(again.attemptsMade).toBe(1);
  });

  it('refuses to retire the last healthy host, and an unknown name; nothing is destroyed', async () => {
    const { spawn, retire } = start();
    await spawn('clawdinator-3');
    // clawdinator-1's worker stopped: clawdinator-3 is the only host running a worker.
    await redis.del(keys.heartbeat('clawdinator-1'));
    const before = readFileSync(registry.path, 'utf8');
    const last = await retire('clawdinator-3');
    expect(last.failedReason).toBe(
      'refused: retiring clawdinator-3 would leave the fleet without a healthy host running a worker: spawn another first',
    );
    expect(last.attemptsMade).toBe(1);
    const unknown = await retire('clawdinator-9');
    expect(unknown.failedReason).toBe('refused: clawdinator-9 is not in the registry');
    expect(readFileSync(registry.path, 'utf8')).toBe(before);
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
    expect(await instanceOf('clawdinator-3')).toBeDefined();
  });

  it('two retires of different members at once: one is refused, so a healthy host stays', async () => {
    const { spawn, retire } = start();
    await cloud.putSecret('clawdinator/discord-token/clawdinator-4', 'token-4', { clientToken: 'test-token-4' });
    await spawn('clawdinator-3');
    await spawn('clawdinator-4');
    // clawdinator-1's worker stopped: 3 and 4 each see the other as the healthy host left.
    await redis.del(keys.heartbeat('clawdinator-1'));
    const jobs = await Promise.all([retire('clawdinator-3'), retire('clawdinator-4')]);
    const refused = jobs.filter((j) => j.failedReason?.includes('without a healthy host'));
    expect(refused).toHaveLength(1);
    expect(jobs.filter((j) => j.failedReason === undefined)).toHaveLength(1);
    const left = (refused[0]?.data.signed.data as { name: string } | undefined)?.name;
    expect(await names()).toEqual(['clawdinator-1', left]);
    expect((await instanceOf(left ?? 'none'))?.state).toBe('running');
    expect(cloud.calls.byOperation.TerminateInstances).toBe(1);
    // Both reservations ended with their jobs: the member left can be retired once a peer is back.
    expect(await redis.keys(keys.retiring('*'))).toEqual([]);
  });

  it("fails an agent's retire of a peer when no ops channel is configured to ask a human", async () => {
    const { spawn, retire } = start();
    await spawn('clawdinator-3');
    const job = await retire('clawdinator-3', agent);
    expect(job.failedReason).toBe(
      "an agent's retire needs a human's confirmation in the ops channel, and none is configured (CLAWDINATOR_OPS_CHANNEL_ID)",
    );
    expect(await names()).toEqual(['clawdinator-1', 'clawdinator-3']);
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
  });

  it('a plan that is not destroy-only stops the job with its summary; nothing is applied', async () => {
    let applied = false;
    const { spawn, retire } = start({
      deployer: (sim) => ({
        async planInstance(name, o, c) {
          if (!o.destroy) return sim.planInstance(name, o, c);
          return {
            add: 1,
            change: 0,
            destroy: 1,
            resources: [{ address: 'aws_instance.host', action: 'replace' }],
          };
        },
        async applyInstance(name, o, c) {
          if (o.destroy) applied = true;
          return sim.applyInstance(name, o, c);
        },
      }),
    });
    await spawn('clawdinator-3');
    const job = await retire('clawdinator-3');
    expect(job.failedReason).toBe(
      'clawdinator-3: plan failed: plan for clawdinator-3 is not destroy-only: not applied (1 to add, 0 to change, 1 to destroy: aws_instance.host (replace))',
    );
    expect(applied).toBe(false);
    expect(await names()).toEqual(['clawdinator-1', 'clawdinator-3']);
    expect(await instanceOf('clawdinator-3')).toBeDefined();
  });
});
