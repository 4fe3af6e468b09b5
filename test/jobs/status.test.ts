// Fleet status over the simulated cloud and a real Redis: states, call counts at 500 hosts.
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FleetRegistry } from '../../infra/registry.js';
import { ManualClock } from '../../jobs/cloud/clock.js';
import { createSimCloud, instantSimTimings } from '../../jobs/cloud/sim.js';
import { keys } from '../../jobs/engine/keys.js';
import { fleetStatus, formatMember, formatStatus, SOURCES } from '../../jobs/status.js';
import { keyPair, testWorkersKey, writeHeartbeat } from '../support/jobs.js';
import { startRedis, type TestRedis } from '../support/redis.js';

let server: TestRedis;
let redis: Redis;
let queue: Queue;

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  queue = new Queue('clawdinator-fleet', { connection: { host: '127.0.0.1', port: server.port } });
});
afterAll(async () => {
  await queue.close();
  await server.stop();
});
beforeEach(async () => {
  await redis.flushall();
});

function registryOf(names: string[]): FleetRegistry {
  return Object.fromEntries(
    names.map((n) => [
      n,
      {
        host: n,
        instanceType: 't3.large',
        bootstrapPrefix: `bootstrap/${n}`,
        discordTokenSecret: `clawdinator/discord-token/${n}`,
        ami: 'ami-0123456789abcdef0',
      },
    ]),
  );
}

async function heartbeat(host: string, instanceId: string): Promise<void> {
  await writeHeartbeat(redis, { host, instanceId, version: '0.1.0', revision: 'abc123' });
}

describe('fleetStatus', () => {
  it('tells online, booting, silent, stopped and missing apart, and lists strays', async () => {
    const clock = new ManualClock({ auto: true });
    const sim = createSimCloud({
      clock,
      timings: instantSimTimings,
      amis: [{ name: 'clawdinator-base', imageId: 'ami-0123456789abcdef0' }],
      fleet: [{ name: 'clawdinator-1' }, { name: 'stray-box' }],
    });
    await sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-0123456789abcdef0', instanceType: 't3.large' });
    const instances = await sim.listFleetInstances();
    const id = (n: string) => instances.find((i) => i.name === n)?.instanceId as string;
    await heartbeat('clawdinator-1', id('clawdinator-1'));
    const registry = registryOf(['clawdinator-1', 'clawdinator-2', 'clawdinator-3']);
    // clawdinator-2 runs without a heartbeat: booting at first, silent after the grace period.
    // What a Redis writer puts under its key (the unsigned shape) is no heartbeat.
    const at = Date.now();
    const forged = { host: 'clawdinator-2', instanceId: id('clawdinator-2'), version: 'x', revision: 'x', at };
    await redis.set(keys.heartbeat('clawdinator-2'), JSON.stringify({ ...forged, startedAt: at, activeJobs: 0 }));
    const early = await fleetStatus({
      workersKey: testWorkersKey,
      registry: async () => registry,
      cloud: sim,
      redis,
      queues: [queue],
      now: () => clock.now(),
    });
    expect(early.members.map((m) => [m.name, m.state])).toEqual([
      ['clawdinator-1', 'online'],
      ['clawdinator-2', 'booting'],
      ['clawdinator-3', 'missing'],
    ]);
    expect(early.strays.map((s) => s.name)).toEqual(['stray-box']);
    expect(early.members[0]).toMatchObject({
      instanceId: id('clawdinator-1'),
      ssm: 'Online',
      heartbeat: { revision: 'abc123' },
    });
    const later = await fleetStatus({
      workersKey: testWorkersKey,
      registry: async () => registry,
      cloud: sim,
      redis,
      queues: [queue],
      now: () => clock.now() + 60 * 60_000,
    });
    expect(later.members[1]?.state).toBe('silent');
    // Nor is one signed with a key other than the workers' (an agent's, say).
    await writeHeartbeat(redis, { host: 'clawdinator-2', instanceId: id('clawdinator-2') }, 60, {
      keyId: 'schedule',
      key: keyPair().privateKey,
    });
    const forgedSigned = await fleetStatus({
      workersKey: testWorkersKey,
      registry: async () => registry,
      cloud: sim,
      redis,
      queues: [queue],
      now: () => clock.now() + 60 * 60_000,
    });
    expect(forgedSigned.members[1]).toMatchObject({ state: 'silent', heartbeat: null });
    await sim.terminateInstance(id('clawdinator-1'));
    const after = await fleetStatus({
      workersKey: testWorkersKey,
      registry: async () => registry,
      cloud: sim,
      redis,
      queues: [queue],
    });
    expect(after.members[0]?.state).not.toBe('online');
    expect(formatStatus(early)).toContain('🟢 clawdinator-1  online');
    expect(formatMember(early, 'clawdinator-2')).toContain('worker: no heartbeat');
    expect(formatMember(early, 'clawdinator-9')).toBeNull();
    expect(early.queues[0]).toEqual({ queue: 'clawdinator-fleet', waiting: 0, active: 0, delayed: 0, failed: 0 });
    sim.close();
  });

  it('flags members whose instance runs an image older than the newest of ours', async () => {
    const sim = createSimCloud({
      clock: new ManualClock({ auto: true }),
      timings: instantSimTimings,
      // Seeded images are hours apart, the last one the newest.
      amis: [
        { name: 'clawdinator-nixos-old', imageId: 'ami-0000000000000001a' },
        { name: 'clawdinator-nixos-new', imageId: 'ami-0000000000000002b' },
      ],
      fleet: [
        { name: 'clawdinator-1', imageId: 'ami-0000000000000001a' },
        { name: 'clawdinator-2', imageId: 'ami-0000000000000002b' },
      ],
    });
    const status = await fleetStatus({
      registry: async () => registryOf(['clawdinator-1', 'clawdinator-2', 'clawdinator-3']),
      cloud: sim,
      redis,
      queues: [],
      workersKey: testWorkersKey,
    });
    expect(status.newestAmi).toBe('ami-0000000000000002b');
    // clawdinator-3 has no instance: nothing runs, nothing is older.
    expect(status.members.map((m) => [m.name, m.olderImage])).toEqual([
      ['clawdinator-1', true],
      ['clawdinator-2', false],
      ['clawdinator-3', false],
    ]);
    const table = formatStatus(status).split('\n');
    expect(table[0]).toMatch(/^🔴|^🟡|^🟢|^🟠/);
    expect(table[0]).toContain('ami-0000000000000001a');
    expect(table[0]).toMatch(/⚠️ older image$/);
    expect(table[1]).not.toContain('older image');
    expect(formatMember(status, 'clawdinator-1')).toContain(
      'AMI: ami-0000000000000001a (registry: ami-0123456789abcdef0) ⚠️ older than the newest image ami-0000000000000002b',
    );
    sim.close();
  });

  it('500 hosts: EC2 1 listing call (+ 1 for the newest image), SSM ⌈500/50⌉ calls, heartbeats in one Redis round trip', async () => {
    const names = Array.from({ length: 500 }, (_, i) => `clawdinator-${i + 1}`);
    const sim = createSimCloud({
      clock: new ManualClock({ auto: true }),
      timings: instantSimTimings,
      amis: [{ name: 'base' }],
      fleet: names.map((name) => ({ name })),
    });
    const instances = await sim.listFleetInstances();
    for (const i of instances) await heartbeat(i.name as string, i.instanceId);
    sim.resetCalls();
    let roundTrips = 0;
    const counted = server.client();
    const send = counted.sendCommand.bind(counted);
    counted.sendCommand = ((cmd: Parameters<typeof send>[0]) => {
      roundTrips++;
      return send(cmd);
    }) as typeof counted.sendCommand;
    await counted.ping();
    roundTrips = 0;
    const status = await fleetStatus({
      workersKey: testWorkersKey,
      registry: async () => registryOf(names),
      cloud: sim,
      redis: counted,
      queues: [],
    });
    expect(status.members.filter((m) => m.state === 'online')).toHaveLength(500);
    // One DescribeInstances page for 500, and one DescribeImages for the newest image, whatever N.
    expect(sim.calls.byOperation.DescribeInstances).toBe(1);
    expect(sim.calls.byOperation.DescribeImages).toBe(1);
    expect(sim.calls.ec2).toBe(2);
    expect(sim.calls.ssm).toBe(10);
    expect(roundTrips).toBe(1);
    sim.close();
  });

  it('SSM failing: EC2 and heartbeats still answer; SSM is marked unavailable with its cause', async () => {
    const clock = new ManualClock({ auto: true });
    const sim = createSimCloud({
      clock,
      timings: instantSimTimings,
      amis: [{ name: 'base', imageId: 'ami-0123456789abcdef0' }],
      fleet: [{ name: 'clawdinator-1' }, { name: 'clawdinator-2' }],
    });
    const instances = await sim.listFleetInstances();
    const id = (n: string) => instances.find((i) => i.name === n)?.instanceId as string;
    await heartbeat('clawdinator-1', id('clawdinator-1'));
    sim.faults.arm('ssm', { code: 'AccessDeniedException' });
    const status = await fleetStatus({
      registry: async () => registryOf(['clawdinator-1', 'clawdinator-2']),
      cloud: sim,
      redis,
      workersKey: testWorkersKey,
      queues: [queue],
      now: () => clock.now(),
    });
    expect(status.sources).toEqual({
      registry: { ok: true, error: null },
      ec2: { ok: true, error: null },
      images: { ok: true, error: null },
      ssm: { ok: false, error: 'AccessDeniedException on DescribeInstanceInformation' },
      heartbeats: { ok: true, error: null },
      queues: { ok: true, error: null },
    });
    expect(status.members.map((m) => [m.name, m.state, m.instanceId, m.ssm])).toEqual([
      ['clawdinator-1', 'online', id('clawdinator-1'), null],
      ['clawdinator-2', 'silent', id('clawdinator-2'), null],
    ]);
    expect(status.members[0]?.heartbeat).toMatchObject({ revision: 'abc123' });
    const table = formatStatus(status);
    expect(table).toContain('⚠️ SSM: unavailable (AccessDeniedException on DescribeInstanceInformation)');
    expect(table).toContain('🟢 clawdinator-1  online');
    expect(table).not.toContain('AWS is unreachable');
    expect(formatMember(status, 'clawdinator-1')).toContain('SSM: unavailable');
    sim.close();
  });

  it('DescribeImages failing: only the "older image" mark is lost, with its cause; the members are as they are', async () => {
    const clock = new ManualClock({ auto: true });
    const sim = createSimCloud({
      clock,
      timings: instantSimTimings,
      amis: [{ name: 'base', imageId: 'ami-0123456789abcdef0' }],
      fleet: [{ name: 'clawdinator-1' }],
    });
    const [instance] = await sim.listFleetInstances();
    await heartbeat('clawdinator-1', instance?.instanceId as string);
    sim.faults.arm('DescribeImages', { code: 'UnauthorizedOperation' });
    const status = await fleetStatus({
      registry: async () => registryOf(['clawdinator-1']),
      cloud: sim,
      redis,
      workersKey: testWorkersKey,
      queues: [queue],
      now: () => clock.now(),
    });
    expect(SOURCES.filter((s) => !status.sources[s].ok)).toEqual(['images']);
    expect(status.sources.images).toEqual({ ok: false, error: 'UnauthorizedOperation on DescribeImages' });
    expect(status.newestAmi).toBeNull();
    expect(status.members.map((m) => [m.name, m.state, m.olderImage])).toEqual([['clawdinator-1', 'online', false]]);
    expect(formatStatus(status)).toContain('⚠️ EC2 images: unavailable (UnauthorizedOperation on DescribeImages)');
    sim.close();
  });

  it('EC2 failing: heartbeats still tell who is online; others are unknown, never "missing"', async () => {
    const sim = createSimCloud({
      clock: new ManualClock({ auto: true }),
      timings: instantSimTimings,
      amis: [{ name: 'base', imageId: 'ami-0123456789abcdef0' }],
      fleet: [{ name: 'clawdinator-1' }, { name: 'clawdinator-2' }],
    });
    const instances = await sim.listFleetInstances();
    await heartbeat('clawdinator-1', instances[0]?.instanceId as string);
    sim.faults.arm('DescribeInstances', { code: 'UnauthorizedOperation' });
    const status = await fleetStatus({
      registry: async () => registryOf(['clawdinator-1', 'clawdinator-2']),
      cloud: sim,
      redis,
      workersKey: testWorkersKey,
      queues: [queue],
    });
    expect(status.sources.ec2).toEqual({ ok: false, error: 'UnauthorizedOperation on DescribeInstances' });
    expect(status.sources.ssm).toEqual({ ok: false, error: 'not asked: EC2 did not answer' });
    expect(status.members.map((m) => [m.name, m.state])).toEqual([
      ['clawdinator-1', 'online'],
      ['clawdinator-2', 'unknown'],
    ]);
    expect(status.strays).toEqual([]);
    expect(formatStatus(status)).toContain('⚠️ EC2: unavailable (UnauthorizedOperation on DescribeInstances)');
    sim.close();
  });

  it('the registry failing or a source that does not answer in time: the rest is still shown', async () => {
    const sim = createSimCloud({
      clock: new ManualClock({ auto: true }),
      timings: instantSimTimings,
      amis: [{ name: 'base' }],
      fleet: [{ name: 'clawdinator-1' }],
    });
    const broken = await fleetStatus({
      registry: async () => {
        throw new Error('fleet registry infra/fleet.json is not valid JSON');
      },
      cloud: sim,
      redis,
      workersKey: testWorkersKey,
      queues: [queue],
    });
    expect(broken.sources.registry).toEqual({
      ok: false,
      error: 'fleet registry infra/fleet.json is not valid JSON',
    });
    expect(broken.members).toEqual([]);
    expect(broken.queues).toHaveLength(1);
    const hanging = {
      listFleetInstances: () => new Promise<never>(() => {}),
      pingStatus: (ids: string[]) => sim.pingStatus(ids),
      findLatestAmi: () => sim.findLatestAmi(),
    };
    const slow = await fleetStatus({
      registry: async () => registryOf(['clawdinator-1']),
      cloud: hanging,
      redis,
      workersKey: testWorkersKey,
      queues: [queue],
      sourceTimeoutMs: 50,
    });
    expect(slow.sources.ec2).toEqual({ ok: false, error: 'no answer within 0.05 s' });
    expect(slow.members.map((m) => m.state)).toEqual(['unknown']);
    sim.close();
  });
});
