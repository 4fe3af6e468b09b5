// The deploy job on the simulated cloud, run by the real worker: the canary order, a failed
// canary rolled back (by the host itself, or by the control plane when only the heartbeat
// check finds it) with the rest untouched, a rerun that skips members already on the sha,
// one deploy at a time, hostile values refused before any SSM call.
import { describe, expect, it } from 'vitest';
import { SIM_BASE_REVISION } from '../../../jobs/cloud/sim.js';
import { keys } from '../../../jobs/engine/keys.js';
import { FLEET_ROLLOUT_LOCK } from '../../../jobs/engine/rollout.js';
import { LAST_DEPLOY_KEY } from '../../../jobs/fastlane/deps.js';
import { MAIN_SHA, V2_SHA } from '../../support/ami.js';
import { BROKEN_SHA, queueDeploy, runDeploy, simLane, switches } from '../../support/lane.js';
import { lifecycleSuite } from '../../support/lifecycle.js';
import { HOSTILE_REVS } from '../../support/revs.js';

const MEMBERS = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
const SECRET = 'planted-redis-password-5f1d2c0e';
const suite = lifecycleSuite({
  members: MEMBERS,
  hosts: { hostSecrets: { 'redis-password': SECRET }, brokenRevisions: [BROKEN_SHA] },
});

async function revisions(): Promise<Record<string, string | undefined>> {
  const out: Record<string, string | undefined> = {};
  for (const m of MEMBERS) {
    const raw = await suite.redis.get(keys.heartbeat(m));
    // Signed records (heartbeat.ts): the heartbeat as written is under `heartbeat`.
    out[m] = raw === null ? undefined : (JSON.parse(raw) as { heartbeat: { revision: string } }).heartbeat.revision;
  }
  return out;
}

describe('deploy', () => {
  it('switches three members in canary order and verifies each by its heartbeat', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim) } });
    // A registry flag puts clawdinator-3 first.
    await suite.sim.registry.update(
      (r) => ({ ...r, 'clawdinator-3': { ...(r['clawdinator-3'] as (typeof r)[string]), canary: true } }),
      { message: 'canary flag' },
    );

    const job = await runDeploy(h, {});

    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.summary).toBe('deployed 5a4dbee (main) to clawdinator-3, clawdinator-1, clawdinator-2');
    expect(switches(suite.sim)).toEqual(['clawdinator-3:5a4dbee', 'clawdinator-1:5a4dbee', 'clawdinator-2:5a4dbee']);
    expect(await revisions()).toEqual(Object.fromEntries(MEMBERS.map((m) => [m, MAIN_SHA])));
    // Each member's previous revision was recorded before its switch.
    const steps = job.data.steps as Record<string, { previous?: string }>;
    expect(steps['clawdinator-3:start']?.previous).toBe(SIM_BASE_REVISION);
    // Only our document, never a shell script.
    expect(new Set(suite.sim.cloud.sentCommands().map((c) => c.document))).toEqual(new Set(['clawdinator-host']));
    // Recorded: ops.md, the audit copy, the last deploy; the fleet lock let go.
    const ops = (await suite.sim.memory.read('ops.md')).content.toString();
    expect(ops).toMatch(/deploy all: 5a4dbee \(main\) on clawdinator-3, clawdinator-1, clawdinator-2 — requested by/);
    expect(JSON.parse((await suite.redis.get(LAST_DEPLOY_KEY)) as string)).toMatchObject({ sha: MAIN_SHA, ok: true });
    expect(await suite.redis.get(FLEET_ROLLOUT_LOCK)).toBeNull();
  });

  it('a canary whose switch fails is rolled back and verified; the others are untouched; the report says so', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim) } });
    suite.sim.cloud.faults.arm('switch', {
      message: `clawdinator-worker[812]: error: redis AUTH ${SECRET} refused (WRONGPASS)`,
    });

    const job = await runDeploy(h, { rev: 'v2' });

    const report = job.failedReason ?? '';
    expect(report).toMatch(
      /^deploy of 0ddba11 \(v2\) stopped at the canary clawdinator-1, step switch: the host's health step failed; the host rolled back to ba5eba5 by itself/,
    );
    expect(report).toContain('health check failed: clawdinator-worker is failed; rolling back to ba5eba5eba5e');
    expect(report).toContain(
      'rollback: clawdinator-1 rolled itself back to ba5eba5; verified: its heartbeat reports it',
    );
    expect(report).toContain('untouched: clawdinator-2, clawdinator-3');
    // What chat shows is the first line: the member, the step, what was rolled back, the untouched, the output's end.
    const first = report.split('\n')[0] as string;
    for (const part of [
      'stopped at the canary clawdinator-1, step switch',
      'rollback: clawdinator-1 rolled itself back',
      'untouched: clawdinator-2, clawdinator-3',
      'output: ',
    ]) {
      expect(first).toContain(part);
    }
    expect(first).toContain('health check failed');
    // The planted secret was in the command's output: redacted on the host, and here.
    expect(report).toContain('redis AUTH [redacted] refused');
    expect(report).not.toContain(SECRET);
    expect(switches(suite.sim)).toEqual(['clawdinator-1:0ddba11']);
    expect(await revisions()).toEqual(Object.fromEntries(MEMBERS.map((m) => [m, SIM_BASE_REVISION])));
    expect(JSON.parse((await suite.redis.get(LAST_DEPLOY_KEY)) as string)).toMatchObject({ sha: V2_SHA, ok: false });
    expect(await suite.redis.get(FLEET_ROLLOUT_LOCK)).toBeNull();
    const ops = (await suite.sim.memory.read('ops.md')).content.toString();
    expect(ops).toMatch(/deploy all: 0ddba11 \(v2\) stopped at clawdinator-1 \(switch\)/);
  });

  it('a canary that switched but never reports is switched back by the control plane to what it ran before', async () => {
    const sim = suite.sim;
    const h = suite.harness({ types: { lane: simLane(sim) } });

    const job = await runDeploy(h, { rev: 'broken' });

    const report = job.failedReason ?? '';
    expect(report).toMatch(
      /stopped at the canary clawdinator-1, step verify: its heartbeat did not report b40ce0b within 2 s/,
    );
    expect(report).toContain('rollback: clawdinator-1 rolled back to ba5eba5; verified: its heartbeat reports it');
    expect(report).toContain('untouched: clawdinator-2, clawdinator-3');
    // Forward, then back to the revision recorded before the switch.
    expect(switches(sim)).toEqual(['clawdinator-1:b40ce0b', 'clawdinator-1:ba5eba5']);
    expect(await revisions()).toEqual(Object.fromEntries(MEMBERS.map((m) => [m, SIM_BASE_REVISION])));
  });

  it('a rerun with the same sha switches no member already on it', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim) } });
    const first = await runDeploy(h, { target: 'clawdinator-2' });
    expect(first.returnvalue.summary).toBe('deployed 5a4dbee (main) to clawdinator-2');

    const again = await runDeploy(h, { rev: MAIN_SHA.slice(0, 10) });

    expect(again.returnvalue.summary).toBe(
      `deployed 5a4dbee (${MAIN_SHA.slice(0, 10)}) to clawdinator-1, clawdinator-3 (already on it: clawdinator-2)`,
    );
    const statuses = suite.sim.cloud
      .sentCommands()
      .filter((c) => c.parameters.action === 'switch-status')
      .map((c) => c.host);
    // clawdinator-2 was asked once whether to switch (it said "already"), never waited on again.
    expect(statuses.filter((h) => h === 'clawdinator-2')).toHaveLength(1);

    const third = await runDeploy(h, {});
    expect(third.returnvalue.summary).toBe(
      'nothing to switch: clawdinator-1, clawdinator-2, clawdinator-3 already run 5a4dbee (main)',
    );
  });

  it('one deploy at a time: a second is refused naming the first, its sha and its progress', async () => {
    const sim = suite.sim;
    const h = suite.harness({ types: { lane: simLane(sim, { waits: { pollMs: 20, verifyTimeoutMs: 3000 } }) } });
    // clawdinator-2's worker does not come back after its first switch: the first deploy waits
    // there (its verify) while the second is asked for.
    let downOnce = false;
    sim.cloud.onHostSwitched(({ host }) => {
      if (host.name !== 'clawdinator-2' || downOnce) return;
      downOnce = true;
      void suite.redis.del(keys.heartbeat('clawdinator-2'));
    });
    const first = await queueDeploy(h, {});
    const deadline = Date.now() + 10_000;
    while (!switches(sim).includes('clawdinator-2:5a4dbee')) {
      if (Date.now() > deadline) throw new Error('the first deploy did not reach clawdinator-2');
      await new Promise((r) => setTimeout(r, 20));
    }

    const second = await runDeploy(h, { rev: 'v2' });
    expect(second.failedReason).toBe(`refused: deploy of 5a4dbee in progress (1/3 members): job ${first.jobId}`);

    const ended = await h.finished(first.jobId);
    expect(ended.failedReason).toMatch(/stopped at clawdinator-2, step verify/);
    expect(ended.failedReason).toContain('already on 5a4dbee: clawdinator-1');
    expect(ended.failedReason).toContain('untouched: clawdinator-3');
    // The second never reached a host.
    expect(switches(sim).filter((s) => s.endsWith(':0ddba11'))).toEqual([]);
  });

  it('hostile revs and targets are refused before any SSM call', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim) } });
    for (const rev of HOSTILE_REVS) {
      await expect(queueDeploy(h, { rev })).rejects.toThrow(/invalid data for deploy|rev/);
    }
    for (const target of ['clawdinator-1; reboot', 'ALL', '../clawdinator-1', 'clawdinator-', '']) {
      await expect(queueDeploy(h, { target })).rejects.toThrow(/target/);
    }
    // Shaped right but unknown: refused by the job, before it asks any host.
    const unknown = await runDeploy(h, { rev: 'no-such-branch' });
    expect(unknown.failedReason).toBe(
      'refused: no-such-branch is not a commit, branch or tag of openclaw/clawdinators',
    );
    const stranger = await runDeploy(h, { target: 'clawdinator-9' });
    expect(stranger.failedReason).toBe('refused: clawdinator-9 is not in the fleet registry');
    expect(suite.sim.cloud.calls.ssm).toBe(0);
  });
});
