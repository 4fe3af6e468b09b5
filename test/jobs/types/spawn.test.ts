// The spawn job end to end: the real worker on a real redis-server, the simulated cloud with
// instant timings, the simulated deployer (the real synth), the file registry and memory in
// a temp dir. Hosts that come online write their heartbeat, as their worker would.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { beforeEach, describe, expect, it } from 'vitest';
import type { FleetRegistry } from '../../../infra/registry.js';
import type { SimCloud } from '../../../jobs/cloud/sim.js';
import { signRequest } from '../../../jobs/engine/queues.js';
import type { FileRegistryStore } from '../../../jobs/registry/file.js';
import { DEFAULT_INSTANCE_TYPES } from '../../../lib/config.js';
import type { MemoryStore } from '../../../memory/store.js';
import { SIM_AMI as AMI, SIM_BUCKET as BUCKET } from '../../support/fleet.js';
import { AGENT, type Lifecycle, type LifecycleOptions, lifecycleSuite, OPERATOR } from '../../support/lifecycle.js';

let redis: Redis;
let cloud: SimCloud;
let registry: FileRegistryStore;
let memory: MemoryStore;
const suite = lifecycleSuite({ tokens: ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'] });
beforeEach(() => {
  redis = suite.redis;
  ({ cloud, registry, memory } = suite.sim);
});

function start(options: Pick<LifecycleOptions, 'fleet' | 'deployer'> = {}) {
  const h = suite.harness({ ...options, requestId: (_type, name, n) => `req-${name}-${n}` });
  return {
    spawn: (name: string, data: Record<string, unknown> = {}) => h.run('spawn', { name, ...data }),
  };
}

const fleetJson = () => readFileSync(registry.path, 'utf8');
const names = async () => Object.keys((await registry.read()).registry);

describe('spawn', () => {
  it('spawns clawdinator-3 to online: registry entry, host key, bundle, one launch, ops and audit lines', async () => {
    const { spawn } = start();
    const job = await spawn('clawdinator-3');
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.summary).toMatch(
      /^clawdinator-3 online: i-[0-9a-f]+, ami-00000000000000a11, 10\.0\.\d+\.\d+, in \d+s$/,
    );
    expect(Object.keys(job.data.steps ?? {}).filter((s) => !s.includes(':'))).toEqual([
      'checks',
      'agent-key',
      'registry',
      'bundle',
      'plan',
      'apply',
      'running',
      'ssm-online',
      'heartbeat',
      'record',
    ]);
    const entry = (await registry.read()).registry['clawdinator-3'] as FleetRegistry[string];
    expect(entry).toMatchObject({
      ami: AMI,
      instanceType: 't3.large',
      discordTokenSecret: 'clawdinator/discord-token/clawdinator-3',
    });
    const privateKey = (await cloud.getSecrets(['clawdinator/host/clawdinator-3/agent-key'])).get(
      'clawdinator/host/clawdinator-3/agent-key',
    ) as string;
    expect(createPublicKey(createPrivateKey(privateKey)).export({ type: 'spki', format: 'pem' })).toBe(
      entry.agentPublicKey,
    );
    expect(await cloud.getJson(BUCKET, 'bootstrap/clawdinator-3/config.json')).toMatchObject({
      instance: 'clawdinator-3',
      host: 'clawdinator-3',
      region: 'eu-central-1',
      bucket: BUCKET,
      bootstrapPrefix: 'bootstrap/clawdinator-3',
      secrets: expect.arrayContaining([
        { name: 'clawdinator/discord-token/clawdinator-3', file: 'discord-token', owner: 'agent', required: true },
        { name: 'clawdinator/host/clawdinator-3/agent-key', file: 'agent-key.pem', owner: 'agent', required: true },
      ]),
    });
    // The whole bundle, its manifest last.
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-3/')).toEqual(
      expect.arrayContaining(['bootstrap/clawdinator-3/manifest.json', 'bootstrap/clawdinator-3/workspace/SOUL.md']),
    );
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
    expect(readFileSync(registry.historyPath, 'utf8')).toContain(
      'fleet: spawn clawdinator-3 — requested by operator ops via the CLI',
    );
    // A new ops.md: the control plane's marker, then its line.
    expect((await memory.read('ops.md')).content.toString()).toMatch(
      /^<!-- clawdinator: .* -->\n- \d{4}-\d\d-\d\d \d\d:\d\d UTC spawn clawdinator-3: i-[0-9a-f]+, ami-00000000000000a11, t3.large — requested by operator ops \(job spawn-req-clawdinator-3-1\)\n$/,
    );
    const day = new Date().toISOString().slice(0, 10);
    expect((await memory.read(`audit/${day}.md`)).content.toString()).toContain(
      'spawn name:clawdinator-3 → online: clawdinator-3 online',
    );
    // No secret value in the job.
    expect(JSON.stringify(job.data)).not.toContain('PRIVATE KEY');

    const again = await spawn('clawdinator-3');
    expect(again.failedReason).toBe('refused: clawdinator-3 is already in the registry');
    expect(again.attemptsMade).toBe(1);
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
  });

  it('a name without its token secret is refused, naming the secret, and nothing is created', async () => {
    const { spawn } = start();
    const before = fleetJson();
    const job = await spawn('clawdinator-4');
    expect(job.failedReason).toBe(
      'refused: the Discord token secret clawdinator/discord-token/clawdinator-4 does not exist: create it before spawning clawdinator-4',
    );
    expect(fleetJson()).toBe(before);
    expect(await cloud.secretExists('clawdinator/host/clawdinator-4/agent-key')).toBe(false);
    expect(await cloud.listKeys(BUCKET, 'bootstrap/')).toEqual([]);
    expect(cloud.calls.byOperation.RunInstances).toBeUndefined();
    expect(cloud.calls.byOperation.CreateSecret).toBeUndefined();
  });

  it('refuses over the fleet cap, over the spawn rate, an AMI that does not exist, and a running Name tag', async () => {
    const capped = start({ fleet: { fleetMaxSize: 1 } });
    expect((await capped.spawn('clawdinator-2')).failedReason).toBe(
      'refused: the fleet is at its cap of 1 members (1 in the registry): retire one first',
    );
    expect((await capped.spawn('clawdinator-2', { ami: 'ami-0000000000000dead' })).failedReason).toMatch(
      /cap of 1 members/,
    );
    await afterEachClose();
    const limited = start({ fleet: { spawnsPerHour: 1 } });
    expect((await limited.spawn('clawdinator-2', { ami: 'ami-0000000000000dead' })).failedReason).toBe(
      'refused: AMI ami-0000000000000dead does not exist',
    );
    expect((await limited.spawn('clawdinator-2')).returnvalue.summary).toMatch(/^clawdinator-2 online/);
    expect((await limited.spawn('clawdinator-3')).failedReason).toBe(
      'refused: spawn rate limit: 1 spawns per hour, try again later',
    );
    await cloud.launchInstance({ name: 'clawdinator-3', ami: AMI, instanceType: 't3.small' });
    await redis.del('clawdinator:spawn-rate');
    expect((await limited.spawn('clawdinator-3')).failedReason).toMatch(
      /^refused: an instance named clawdinator-3 is already running \(i-[0-9a-f]+\)$/,
    );
    expect(await names()).toEqual(['clawdinator-1', 'clawdinator-2']);
  });

  it('a worker that dies after the apply: the retry does not apply twice', async () => {
    let died = false;
    const { spawn } = start({
      deployer: (sim) => ({
        planInstance: (name, o, c) => sim.planInstance(name, o, c),
        async applyInstance(name, o, c) {
          const out = await sim.applyInstance(name, o, c);
          if (!died) {
            died = true;
            throw new Error('worker died after the apply');
          }
          return out;
        },
      }),
    });
    const job = await spawn('clawdinator-3');
    expect(job.returnvalue.summary).toMatch(/^clawdinator-3 online/);
    expect(job.attemptsMade).toBe(2);
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
    expect((await cloud.listFleetInstances()).filter((i) => i.name === 'clawdinator-3')).toHaveLength(1);
  });

  it('a plan that is not create-only stops the job with its summary and undoes the registry entry', async () => {
    const { spawn } = start({
      deployer: (sim) => ({
        planInstance: async () => ({
          add: 0,
          change: 1,
          destroy: 0,
          resources: [{ address: 'aws_instance.host', action: 'update' }],
        }),
        applyInstance: (name, o, c) => sim.applyInstance(name, o, c),
      }),
    });
    const before = fleetJson();
    const job = await spawn('clawdinator-3');
    expect(job.failedReason).toBe(
      'clawdinator-3: plan failed: plan for clawdinator-3 is not create-only: not applied (0 to add, 1 to change, 0 to destroy: aws_instance.host (update)); undone: no registry entry, host key or bundle left',
    );
    expect(JSON.parse(fleetJson())).toEqual(JSON.parse(before));
    expect(await cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(false);
    expect(await cloud.listKeys(BUCKET, 'bootstrap/')).toEqual([]);
    expect(cloud.calls.byOperation.RunInstances).toBeUndefined();
  });

  it('two spawns of different names at once: both entries land in the registry', async () => {
    const { spawn } = start();
    const [a, b] = await Promise.all([spawn('clawdinator-2'), spawn('clawdinator-3')]);
    expect(a.returnvalue.summary).toMatch(/^clawdinator-2 online/);
    expect(b.returnvalue.summary).toMatch(/^clawdinator-3 online/);
    expect((await names()).sort()).toEqual(['clawdinator-1', 'clawdinator-2', 'clawdinator-3']);
    expect(cloud.calls.byOperation.RunInstances).toBe(2);
  });
});

describe('spawn: names, hosts and instance types, refused before any side effect', () => {
  /** A request signed as `who`, added straight to the queue, as a gateway that checked nothing would. */
  async function addedStraight(h: Lifecycle, who: 'operator' | 'agent', data: Record<string, unknown>) {
    const requestId = `straight-${Math.random().toString(36).slice(2)}`;
    const jobId = `spawn-${requestId}`;
    const envelope = signRequest(h.signers[who], {
      type: 'spawn',
      jobId,
      schema: 1,
      data,
      principal: who === 'agent' ? AGENT : OPERATOR,
      requestId,
    });
    await h.queue.add('spawn', envelope, { jobId, attempts: 3 });
    return h.finished(jobId);
  }

  function nothingHappened(before: string) {
    expect(fleetJson()).toBe(before);
    expect(cloud.calls.byOperation).toEqual({});
  }

  it.each([
    ['clawdinator-3-', 'name: clawdinator-<a-z0-9>, words joined by single "-", at most 40 characters'],
    ['clawdinator--3', 'name: clawdinator-<a-z0-9>, words joined by single "-", at most 40 characters'],
    [`clawdinator-${'a'.repeat(29)}`, 'name: at most 40 characters'],
  ])('%s: refused by the enqueuer and by the worker', async (name, why) => {
    const h = suite.harness();
    const before = fleetJson();
    await expect(
      h.enqueuer('operator').enqueue({ type: 'spawn', data: { name }, principal: OPERATOR, requestId: 'r1' }),
    ).rejects.toThrow(`spawn: invalid ${why}`);
    const job = await addedStraight(h, 'operator', { name });
    expect(job.failedReason).toBe(`rejected: invalid data for spawn: ${why}`);
    expect(job.attemptsMade).toBe(1);
    nothingHappened(before);
  });

  it('a name whose host another entry already has is refused (the flake would keep one of the two)', async () => {
    const { spawn } = start();
    writeFileSync(
      registry.path,
      JSON.stringify({
        'clawdinator-1': { ...JSON.parse(fleetJson())['clawdinator-1'] },
        'clawdinator-2': {
          host: 'clawdinator-3',
          instanceType: 't3.large',
          bootstrapPrefix: 'bootstrap/clawdinator-2',
          discordTokenSecret: 'clawdinator/discord-token/clawdinator-2',
        },
      }),
    );
    const before = fleetJson();
    const job = await spawn('clawdinator-3');
    expect(job.failedReason).toBe(
      'refused: the host name clawdinator-3 is already used by clawdinator-2 in the registry',
    );
    nothingHappened(before);
  });

  it('an agent’s signed spawn with an unlisted instance type: refused by the enqueuer and by the worker, no rate slot spent', async () => {
    const h = suite.harness();
    const before = fleetJson();
    const data = { name: 'clawdinator-3', instanceType: 'x1e.32xlarge' };
    const why = `instanceType: not an allowed instance type (${DEFAULT_INSTANCE_TYPES.join(', ')})`;
    await expect(
      h.enqueuer('agent').enqueue({ type: 'spawn', data, principal: AGENT, requestId: 'r2' }),
    ).rejects.toThrow(`spawn: invalid ${why}`);
    const job = await addedStraight(h, 'agent', data);
    expect(job.failedReason).toBe(`rejected: invalid data for spawn: ${why}`);
    nothingHappened(before);
    expect(await redis.keys('clawdinator:agent-rate:*')).toEqual([]);
  });

  it('a worker with a narrower list refuses the fleet’s default type too, before anything', async () => {
    const h = suite.harness({ types: { instanceTypes: ['t3.small'] } });
    const before = fleetJson();
    const job = await h.run('spawn', { name: 'clawdinator-3' });
    expect(job.failedReason).toBe(
      'refused: instance type t3.large is not allowed (CLAWDINATOR_INSTANCE_TYPES: t3.small)',
    );
    nothingHappened(before);
    const small = await h.run('spawn', { name: 'clawdinator-3', instanceType: 't3.small' });
    expect(small.returnvalue.summary).toMatch(/^clawdinator-3 online/);
    expect((await registry.read()).registry['clawdinator-3']?.instanceType).toBe('t3.small');
  });
});

async function afterEachClose(): Promise<void> {
  await suite.closeStarted();
}
