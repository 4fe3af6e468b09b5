// /sim in the sandbox, in-process (--fast): faults armed from the console reach the simulated
// cloud, the simulated deployer and the hosts' heartbeats; an orphan is an instance tagged as
// ours that the registry does not know; only the console has /sim, and only operators use it.
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commands } from '../../../bot/commands/index.js';
import { type Sandbox, startSandbox } from '../../../bot/sandbox/run.js';
import { memberActor, SANDBOX_AMI, SANDBOX_OPS_CHANNEL } from '../../../bot/sandbox/world.js';
import { keys } from '../../../jobs/engine/keys.js';
import { tempDir } from '../../support/cli.js';

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('/sim in the sandbox', () => {
  let sandbox: Sandbox;
  const out: string[] = [];
  const since = (n: number) => out.slice(n).join('\n');

  beforeAll(async () => {
    sandbox = await startSandbox({
      dir: tempDir('clawdinator-sim-'),
      fast: true,
      fleetMaxSize: 5,
      print: (t) => out.push(t),
      logLevel: 'silent',
    });
  });
  afterAll(async () => {
    await sandbox?.stop();
  });

  it('is the console’s alone: never among the commands registered with Discord', () => {
    expect(commands.map((c) => c.data.name)).not.toContain('sim');
  });

  it('/sim faults lists every name with what it covers; /sim fail arms one; unknown names are refused', async () => {
    let n = out.length;
    expect((await sandbox.runLine('/sim faults')).ok).toBe(true);
    for (const name of ['plan', 'apply', 'run-instances', 'ssm', 'heartbeat', 's3', 'secrets', 'import']) {
      expect(since(n)).toMatch(new RegExp(`—  ${name} +\\S`));
    }
    n = out.length;
    const refused = await sandbox.runLine('/sim fail frobnicate');
    expect(refused.ok).toBe(false);
    expect(refused.failures?.[0]).toMatchObject({ kind: 'refused' });
    expect(refused.failures?.[0]?.text).toMatch(/no fault named "frobnicate": one of plan, apply, /);
    expect((await sandbox.runLine('/sim fail ssm times:2 code:AccessDeniedException')).ok).toBe(true);
    expect(sandbox.cloud.faults.list().find((f) => f.name === 'ssm')?.remaining).toBe(2);
    // The status shows what SSM said, and the rest.
    n = out.length;
    expect((await sandbox.runLine('/status')).ok).toBe(true);
    expect(since(n)).toContain('⚠️ SSM: unavailable (AccessDeniedException on DescribeInstanceInformation)');
    expect(since(n)).toMatch(/🟢 clawdinator-1 {2}online/);
    sandbox.cloud.faults.clear();
  });

  it('/sim fail plan: the next spawn fails at its plan with terraform’s kind of message', async () => {
    expect((await sandbox.runLine('/sim fail plan times:3 message:"Error: Invalid provider configuration"')).ok).toBe(
      true,
    );
    const result = await sandbox.runLine('/spawn name:clawdinator-2', { waitMs: 60_000 });
    expect(result.ok).toBe(false);
    expect(result.failures?.map((f) => f.kind)).toEqual(['failed']);
    // One end (the engine's finalization): the step, terraform's cause, what is left, what next.
    expect(result.failures?.[0]?.text).toBe(
      'spawn clawdinator-2 failed at plan: terraform plan failed for clawdinator-2: Invalid provider configuration. Nothing was left behind; run `/spawn name:clawdinator-2` again.',
    );
    expect(sandbox.cloud.faults.list().find((f) => f.name === 'plan')?.remaining).toBe(0);
  });

  it('/sim orphan: an instance tagged as ours, not in the registry, running no worker', async () => {
    const before = readFileSync(sandbox.registryPath, 'utf8');
    const result = await sandbox.runLine('/sim orphan clawdinator-7');
    expect(result.ok).toBe(true);
    const orphan = await until(async () => {
      const i = (await sandbox.cloud.listFleetInstances()).find((x) => x.name === 'clawdinator-7');
      return i?.state === 'running' ? i : undefined;
    });
    expect(orphan.tags).toMatchObject({ app: 'clawdinator', Name: 'clawdinator-7' });
    expect(readFileSync(sandbox.registryPath, 'utf8')).toBe(before);
    const status = await sandbox.deps.status?.();
    expect(status?.strays).toEqual([{ instanceId: orphan.instanceId, name: 'clawdinator-7', state: 'running' }]);
    const redis = new Redis(sandbox.redisUrl);
    try {
      expect(await redis.exists(keys.heartbeat('clawdinator-7'))).toBe(0);
    } finally {
      redis.disconnect();
    }
    expect((await sandbox.runLine('/sim orphan clawdinator-1')).failures?.[0]?.text).toContain(
      'clawdinator-1 is in the registry',
    );

    // The health sweep reports it with a button; pressed and confirmed at the console, it ends it.
    const n = out.length;
    await sandbox.deps.jobs?.enqueue({
      type: 'health-sweep',
      data: {},
      actor: sandbox.actor,
      requestId: 'sim-orphan-sweep',
      reply: { channelId: SANDBOX_OPS_CHANNEL, interactionId: 'sim-orphan-sweep' },
    });
    await until(async () => (since(n).includes(`/press retire:stray:${orphan.instanceId}:`) ? true : undefined));
    expect(since(n)).toContain(`🚨 stray: ${orphan.instanceId} (clawdinator-7)`);
    expect(since(n)).toContain(`[button Terminate ${orphan.instanceId}]`);
    expect((await sandbox.runLine('/press stray')).ok).toBe(true);
    expect(since(n)).toContain(`⚠️ Terminate **${orphan.instanceId}** (clawdinator-7), an instance tagged as ours`);
    const confirmed = await sandbox.runLine('/press stray-yes', { waitMs: 60_000 });
    expect(confirmed.ok).toBe(true);
    expect((await sandbox.cloud.describeInstance(orphan.instanceId)).state).toBe('terminated');
    expect(since(n)).toMatch(
      new RegExp(`✅ \`stray-cleanup-\\S+\` ${orphan.instanceId} \\(clawdinator-7\\) terminated`),
    );
  });

  it('/sim fail heartbeat: a host coming online skips its heartbeat write', async () => {
    expect((await sandbox.runLine('/sim fail heartbeat')).ok).toBe(true);
    await sandbox.cloud.launchInstance({ name: 'clawdinator-4', ami: SANDBOX_AMI, instanceType: 't3.large' });
    await until(async () =>
      sandbox.cloud.faults.list().find((f) => f.name === 'heartbeat')?.remaining === 0 ? true : undefined,
    );
    const redis = new Redis(sandbox.redisUrl);
    try {
      expect(await redis.exists(keys.heartbeat('clawdinator-4'))).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('a member without the operator role is refused /sim', async () => {
    const operator = sandbox.session.actor;
    sandbox.session.actor = memberActor('bob');
    try {
      const result = await sandbox.runLine('/sim fail apply');
      expect(result.failures).toEqual([{ kind: 'refused', text: 'You are not allowed to use /sim.' }]);
    } finally {
      sandbox.session.actor = operator;
    }
  });
});
