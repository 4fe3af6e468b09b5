// The sandbox in-process: a real redis-server, the real worker, schedules, relay and handlers,
// the simulated cloud with instant timings.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Sandbox, startSandbox } from '../../../bot/sandbox/run.js';
import { registryEntry, SANDBOX_AMI, SANDBOX_OPS_CHANNEL, SANDBOX_REFS } from '../../../bot/sandbox/world.js';
import { FLEET_QUEUE, hostQueue, keys } from '../../../jobs/engine/keys.js';
import { redisOptions } from '../../../jobs/redis.js';
import { tempDir } from '../../support/cli.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('sandbox (in-process, --fast)', () => {
  let dir: string;
  let sandbox: Sandbox;
  const out: string[] = [];
  const printed = () => out.join('\n');

  beforeAll(async () => {
    dir = tempDir('clawdinator-sandbox-');
    sandbox = await startSandbox({ dir, fast: true, fleetMaxSize: 5, print: (t) => out.push(t), logLevel: 'silent' });
  });
  afterAll(async () => {
    await sandbox?.stop();
  });

  it('starts with clawdinator-1 online: registry, EC2, SSM and its worker’s heartbeat', async () => {
    out.length = 0;
    const result = await sandbox.runLine('/status', { waitMs: 5000 });
    expect(result).toEqual({ ok: true, jobs: [] });
    expect(printed()).toContain('**Fleet** — 1 online');
    expect(printed()).toMatch(
      /🟢 clawdinator-1 {2}online {2}i-[0-9a-f]{17} {2}ami-0c1a3d5a4d0b0e001 {2}rev 00c1a3d5 since \d{4}-\d\d-\d\d \d\d:\d\d/,
    );
    const status = await sandbox.deps.status?.();
    expect(status?.members[0]).toMatchObject({ name: 'clawdinator-1', state: 'online', ssm: 'Online' });
    expect(status?.schedules.map((s) => s.id).sort()).toEqual(['clawdinator-github-sync', 'clawdinator-health-sweep']);
  });

  it('lays out the memory folder and the registry under the directory', () => {
    expect(readFileSync(join(dir, 'memory', 'ops.md'), 'utf8')).toContain('# Ops Memory');
    expect(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8'))).toEqual({
      'clawdinator-1': registryEntry('clawdinator-1'),
    });
  });

  it('seeds the cloud: the AMI available, token secrets for clawdinator-1…5 only', async () => {
    expect((await sandbox.cloud.findLatestAmi())?.imageId).toBe(SANDBOX_AMI);
    const names = [1, 2, 3, 4, 5, 6].map((n) => `clawdinator/discord-token/clawdinator-${n}`);
    expect([...(await sandbox.cloud.getSecrets(names)).keys()].sort()).toEqual(names.slice(0, 5));
  });

  it('a job a handler starts is signed by the gateway, run by the worker, and its result relayed to the console', async () => {
    out.length = 0;
    const jobs = sandbox.deps.jobs;
    if (jobs === undefined) throw new Error('jobs not wired');
    const started = await jobs.enqueue({
      type: 'health-sweep',
      data: {},
      actor: sandbox.actor,
      requestId: 'sandbox-test-1',
      reply: { channelId: SANDBOX_OPS_CHANNEL, interactionId: 'sandbox-test-1' },
    });
    expect(started).toMatchObject({ jobId: 'health-sweep-sandbox-test-1' });
    const ends = await sandbox.waitForJobs(10_000);
    expect(ends).toEqual([
      {
        jobId: 'health-sweep-sandbox-test-1',
        kind: 'result',
        ok: true,
        text: '1 hosts: 1 up, 0 missing, 0 silent; 0 alerts',
      },
    ]);
    expect(printed()).toContain('✅ `health-sweep-sandbox-test-1` 1 hosts: 1 up, 0 missing, 0 silent; 0 alerts');
  });

  it('the worker checks the policy again: a job asked for by someone without a role fails', async () => {
    out.length = 0;
    await sandbox.deps.jobs?.enqueue({
      type: 'health-sweep',
      data: {},
      actor: { ...sandbox.actor, roles: [] },
      requestId: 'sandbox-test-2',
      reply: { channelId: SANDBOX_OPS_CHANNEL, interactionId: 'sandbox-test-2' },
    });
    const [end] = await sandbox.waitForJobs(10_000);
    // The worker fails it for good without a retry. (Its result event is published only when
    // the failure is final by attempts; the sandbox then reads the job's state instead.)
    expect(end).toMatchObject({ jobId: 'health-sweep-sandbox-test-2', ok: false });
    expect(['result', 'state']).toContain(end?.kind);
    const fleet = new Queue(FLEET_QUEUE, { connection: redisOptions({ redisUrl: sandbox.redisUrl }) });
    try {
      const stored = await fleet.getJob('health-sweep-sandbox-test-2');
      expect(stored?.failedReason).toMatch(/^rejected: not allowed/);
      expect(stored?.attemptsMade).toBe(1);
    } finally {
      await fleet.close();
    }
  });

  it('a host launched in the simulated cloud comes online with its heartbeat and its own worker', async () => {
    const registry = JSON.parse(readFileSync(sandbox.registryPath, 'utf8'));
    registry['clawdinator-2'] = registryEntry('clawdinator-2');
    writeFileSync(sandbox.registryPath, JSON.stringify(registry));
    await sandbox.cloud.launchInstance({ name: 'clawdinator-2', ami: SANDBOX_AMI, instanceType: 't3.large' });
    const member = await until(async () => {
      const m = (await sandbox.deps.status?.())?.members.find((x) => x.name === 'clawdinator-2');
      return m?.state === 'online' ? m : undefined;
    });
    // The revision of the image it was launched from (its `clawdinator:revision` tag).
    expect(member.heartbeat?.revision).toBe(SANDBOX_REFS.v0);
    const redis = new Redis(sandbox.redisUrl);
    const queue = new Queue(hostQueue('clawdinator-2'), { connection: redisOptions({ redisUrl: sandbox.redisUrl }) });
    try {
      expect(await redis.exists(keys.heartbeat('clawdinator-2'))).toBe(1);
      expect(await queue.getWorkersCount()).toBe(1);
    } finally {
      redis.disconnect();
      await queue.close();
    }
  });
});

describe('sandbox: the spawn job in the simulated world (--fast)', () => {
  let sandbox: Sandbox;
  const out: string[] = [];

  beforeAll(async () => {
    sandbox = await startSandbox({
      dir: tempDir('clawdinator-sandbox-'),
      fast: true,
      fleetMaxSize: 5,
      print: (t) => out.push(t),
      logLevel: 'silent',
    });
  });
  afterAll(async () => {
    await sandbox?.stop();
  });

  async function spawn(name: string, requestId: string) {
    await sandbox.deps.jobs?.enqueue({
      type: 'spawn',
      data: { name },
      actor: sandbox.actor,
      requestId,
      reply: { channelId: SANDBOX_OPS_CHANNEL, interactionId: requestId },
    });
    const [end] = await sandbox.waitForJobs(30_000);
    return end;
  }

  it('goes all the way to online: registry entry, instance, SSM, the new host’s heartbeat', async () => {
    out.length = 0;
    const end = await spawn('clawdinator-3', 'spawn-test-3');
    expect(end).toMatchObject({ kind: 'result', ok: true });
    expect(end?.text).toMatch(/^clawdinator-3 online: i-[0-9a-f]{17}, ami-0c1a3d5a4d0b0e001, /);
    expect(out.join('\n')).toContain('✅ `spawn-spawn-test-3` clawdinator-3 online');
    const registry = JSON.parse(readFileSync(sandbox.registryPath, 'utf8'));
    expect(registry['clawdinator-3']).toMatchObject({
      ami: SANDBOX_AMI,
      discordTokenSecret: 'clawdinator/discord-token/clawdinator-3',
    });
    const status = await sandbox.deps.status?.();
    expect(status?.members.map((m) => [m.name, m.state])).toEqual([
      ['clawdinator-1', 'online'],
      ['clawdinator-3', 'online'],
    ]);
  });

  it('refuses a name outside the token pool before anything is created', async () => {
    const end = await spawn('clawdinator-9', 'spawn-test-9');
    expect(end).toMatchObject({ ok: false });
    expect(end?.text).toContain('clawdinator/discord-token/clawdinator-9 does not exist');
    expect(JSON.parse(readFileSync(sandbox.registryPath, 'utf8'))).not.toHaveProperty('clawdinator-9');
    expect((await sandbox.cloud.listFleetInstances()).map((i) => i.name)).not.toContain('clawdinator-9');
  });
});

describe('sandbox: the fleet cap reaches the lifecycle jobs', () => {
  it('a cap of 1 refuses a second member', async () => {
    const out: string[] = [];
    const sandbox = await startSandbox({
      dir: tempDir('clawdinator-sandbox-'),
      fast: true,
      fleetMaxSize: 1,
      print: (t) => out.push(t),
      logLevel: 'silent',
    });
    try {
      await sandbox.deps.jobs?.enqueue({
        type: 'spawn',
        data: { name: 'clawdinator-2' },
        actor: sandbox.actor,
        requestId: 'spawn-cap',
        reply: { channelId: SANDBOX_OPS_CHANNEL, interactionId: 'spawn-cap' },
      });
      const [end] = await sandbox.waitForJobs(30_000);
      expect(end).toMatchObject({ ok: false });
      expect(end?.text).toMatch(/cap|at most 1/);
    } finally {
      await sandbox.stop();
    }
  });
});

describe('sandbox lifecycle', () => {
  it('stops the redis-server it started and keeps the directory; a restart keeps memory and registry', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const out: string[] = [];
    const first = await startSandbox({
      dir,
      fast: true,
      fleetMaxSize: 5,
      print: (t) => out.push(t),
      logLevel: 'silent',
    });
    const pid = Number(readFileSync(join(dir, 'redis', 'redis-server.pid'), 'utf8'));
    expect(alive(pid)).toBe(true);
    const key1 = readFileSync(join(dir, 'keys', 'gateway.pem'), 'utf8');
    expect((await first.runLine('/memory write path:notes.md content:kept')).ok).toBe(true);
    const registry = JSON.parse(readFileSync(first.registryPath, 'utf8'));
    registry['clawdinator-4'] = registryEntry('clawdinator-4');
    writeFileSync(first.registryPath, JSON.stringify(registry));
    await first.stop();
    expect(alive(pid)).toBe(false);
    expect(existsSync(join(dir, 'redis', 'redis-server.pid'))).toBe(false);
    expect(readFileSync(join(dir, 'memory', 'notes.md'), 'utf8')).toBe('kept');

    const second = await startSandbox({
      dir,
      fast: true,
      fleetMaxSize: 5,
      print: (t) => out.push(t),
      logLevel: 'silent',
    });
    try {
      // New signing keys at each start; the registry's members are all online again.
      expect(readFileSync(join(dir, 'keys', 'gateway.pem'), 'utf8')).not.toBe(key1);
      const status = await until(async () => {
        const s = await second.deps.status?.();
        return s?.members.every((m) => m.state === 'online') ? s : undefined;
      });
      expect(status.members.map((m) => m.name)).toEqual(['clawdinator-1', 'clawdinator-4']);
      expect(readFileSync(join(dir, 'memory', 'notes.md'), 'utf8')).toBe('kept');
    } finally {
      await second.stop();
    }
  });

  it('--as: another member, refused what only operators may do', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const out: string[] = [];
    const sandbox = await startSandbox({
      dir,
      fast: true,
      as: 'bob',
      fleetMaxSize: 5,
      print: (t) => out.push(t),
      logLevel: 'silent',
    });
    try {
      expect(sandbox.actor).toMatchObject({ userName: 'bob', roles: ['930000000000000002'] });
      expect((await sandbox.runLine('/memory read path:ops.md')).ok).toBe(true);
      expect((await sandbox.runLine('/status')).ok).toBe(true);
      expect((await sandbox.runLine('/memory write path:x.md content:no')).ok).toBe(false);
      expect((await sandbox.runLine('/spawn name:clawdinator-3')).ok).toBe(false);
      expect(out.join('\n')).toContain('You are not allowed to use /memory write.');
      expect(existsSync(join(dir, 'memory', 'x.md'))).toBe(false);
    } finally {
      await sandbox.stop();
    }
  });
});
