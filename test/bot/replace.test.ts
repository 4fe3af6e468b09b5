// /replace through the console adapter and the real parts: the command answers with
// confirmation buttons; only the requester's press queues the replace job, which the real
// worker runs against the simulated cloud (real synth, file registry).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { commands } from '../../bot/commands/index.js';
import { CONFIRM_SECONDS } from '../../bot/commands/replace.js';
import { ConsoleSession } from '../../bot/console/adapter.js';
import { createDispatcher } from '../../bot/dispatch.js';
import { botJobs } from '../../bot/engine.js';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../jobs/cloud/sim.js';
import { SimDeployer } from '../../jobs/deploy/sim.js';
import { FLEET_QUEUE, keys } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import { jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';
import { MemoryStore } from '../../memory/store.js';
import { ALICE, actor, BOB, botDeps, policy } from '../support/bot.js';
import { tempDir } from '../support/cli.js';
import { keyPair, lifecycleSettings } from '../support/jobs.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const AMI = 'ami-00000000000000a11';
const BUCKET = 'clawdinator-test-bucket';
const NOW = new Date('2026-11-24T12:00:00Z');
const settings = {
  awsRegion: 'eu-central-1',
  deployerRoleArn: undefined,
  vpcId: undefined,
  subnetIds: [],
  sshCidrs: [],
  rootVolumeGb: 40,
  redisNodeType: 'cache.t4g.micro',
};
const member = (name: string) => ({
  host: name,
  instanceType: 't3.large',
  bootstrapPrefix: `bootstrap/${name}`,
  discordTokenSecret: `clawdinator/discord-token/${name}`,
  ami: AMI,
});

let server: TestRedis;
let redis: Redis;
let cloud: SimCloud;
let registry: FileRegistryStore;
let queue: Queue;
let now: Date;
let alice: ConsoleSession;
let bob: ConsoleSession;
let printed: string[];
const closers: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  const conn = { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null };
  const dir = tempDir('clawdinator-replace-bot-');
  writeFileSync(
    join(dir, 'fleet.json'),
    JSON.stringify({ 'clawdinator-1': member('clawdinator-1'), 'clawdinator-3': member('clawdinator-3') }),
  );
  mkdirSync(join(dir, 'memory'));
  registry = new FileRegistryStore(join(dir, 'fleet.json'));
  const memory = new MemoryStore({ root: join(dir, 'memory'), maxBytes: 1 << 20, waitSeconds: 5 });
  cloud = createSimCloud({
    timings: instantSimTimings,
    amis: [{ name: 'clawdinator-nixos', imageId: AMI }],
    fleet: [{ name: 'clawdinator-1' }, { name: 'clawdinator-3' }],
    buckets: [BUCKET],
  });
  // Every host's worker beats with its own instance id.
  cloud.onHostOnline((host) => {
    const at = Date.now();
    const beat = { host: host.name, instanceId: host.instanceId, version: 't', revision: 'r', startedAt: at };
    void redis.set(keys.heartbeat(host.name), JSON.stringify({ ...beat, activeJobs: 0, at }), 'EX', 60);
  });
  closers.push(() => cloud.close());
  const fleet = {
    cloud,
    deployer: new SimDeployer({ cloud, registry, settings, outdir: join(dir, 'cdktf.out'), bucket: BUCKET }),
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
  const gatewayKey = keyPair();
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection: conn,
      redis: server.client(),
      types,
      publicKey: async (id) => (id === 'gateway' ? gatewayKey.publicKey : null),
      policy: { policy, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
    },
    lifecycleSettings,
  );
  closers.push(() => worker.close());
  const enqueuer = new Enqueuer(conn, server.client(), types, { keyId: 'gateway', key: gatewayKey.privateKey });
  closers.push(() => enqueuer.close());
  queue = new Queue(FLEET_QUEUE, { connection: conn });
  closers.push(() => queue.close());

  now = NOW;
  const deps = await botDeps();
  deps.jobs = botJobs(enqueuer);
  deps.now = () => now;
  const dispatcher = createDispatcher(commands, deps);
  printed = [];
  alice = new ConsoleSession(dispatcher, actor(), (t) => printed.push(t));
  bob = new ConsoleSession(dispatcher, actor({ userId: BOB, userName: 'bob' }), (t) => printed.push(t));
});

/** Asks to replace; returns the confirm and cancel buttons' ids as printed. */
async function ask(line: string): Promise<{ confirm: string; cancel: string }> {
  expect(await alice.run(line)).toBe(true);
  const ids = [...printed.join('\n').matchAll(/press with: \/press (\S+)/g)].map((m) => m[1] as string);
  printed.length = 0;
  const [confirm, cancel] = ids;
  return { confirm: confirm as string, cancel: cancel as string };
}

const queued = async () => (await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed'])).length;
const expires = NOW.getTime() / 1000 + CONFIRM_SECONDS;

describe('/replace through the console', () => {
  it('asks first; the requester presses confirm → the job runs and clawdinator-3 has a new instance', async () => {
    const old = (await cloud.listFleetInstances()).find((i) => i.name === 'clawdinator-3')?.instanceId;
    const { confirm, cancel } = await ask(`/replace name:clawdinator-3 ami:${AMI}`);
    expect(confirm).toBe(`replace:confirm:clawdinator-3:${ALICE}:${expires}:${AMI}`);
    expect(cancel).toBe(`replace:cancel:clawdinator-3:${ALICE}:${expires}:${AMI}`);
    expect(await queued()).toBe(0);
    expect(await alice.run(`/press ${confirm}`)).toBe(true);
    expect(printed.join('\n')).toBe('(the message with the buttons now reads:)\n⏳ Replacing **clawdinator-3**…');
    const [job] = await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed']);
    expect(job?.name).toBe('replace');
    const deadline = Date.now() + 20_000;
    while ((await queue.getJobState(job?.id as string)) !== 'completed') {
      if (Date.now() > deadline) throw new Error('the replace job did not complete');
      await new Promise((r) => setTimeout(r, 25));
    }
    const now = (await cloud.listFleetInstances()).find((i) => i.name === 'clawdinator-3');
    expect(now?.instanceId).toBeDefined();
    expect(now?.instanceId).not.toBe(old);
    expect(Object.keys((await registry.read()).registry)).toEqual(['clawdinator-1', 'clawdinator-3']);
  });

  it('another user pressing is refused and nothing is queued; cancel queues nothing', async () => {
    const { confirm, cancel } = await ask('/replace name:clawdinator-3');
    expect(confirm).toBe(`replace:confirm:clawdinator-3:${ALICE}:${expires}`);
    expect(await bob.run(`/press ${confirm}`)).toBe(false);
    expect(await bob.run(`/press ${cancel}`)).toBe(false);
    expect(printed.join('\n')).toContain(`Only <@${ALICE}>, who asked, can answer this replace confirmation.`);
    expect(await alice.run(`/press ${cancel}`)).toBe(true);
    expect(printed.join('\n')).toContain('Replace of **clawdinator-3** cancelled.');
    expect(await alice.run(`/press replace:confirm:clawdinator-3:${ALICE}:${expires}:not-an-ami`)).toBe(false);
    expect(await queued()).toBe(0);
  });
});
