// /retire through the console adapter and the real parts: the command answers with
// confirmation buttons; only the requester's press, before it expires, queues the retire job,
// which the real worker runs against the simulated cloud (real synth, file registry).
import type { Queue } from 'bullmq';
import { beforeEach, describe, expect, it } from 'vitest';
import { RETRY_CONFIRM_SECONDS } from '../../bot/commands/jobs.js';
import { CONFIRM_SECONDS } from '../../bot/commands/retire.js';
import type { ConsoleSession } from '../../bot/console/adapter.js';
import type { SimCloud } from '../../jobs/cloud/sim.js';
import type { FileRegistryStore } from '../../jobs/registry/file.js';
import { ALICE } from '../support/bot.js';
import { consoleSuite } from '../support/bot-fleet.js';

const NOW = new Date('2026-11-24T12:00:00Z');

let cloud: SimCloud;
let registry: FileRegistryStore;
let queue: Queue;
let now: Date;
let alice: ConsoleSession;
let bob: ConsoleSession;
let printed: string[];
// Both hosts' workers beat (consoleSuite): retiring one leaves the other.
const suite = consoleSuite(() => now);
beforeEach(() => {
  now = NOW;
  ({ cloud, registry, queue, alice, bob, printed } = suite.world);
});

/** Asks to retire; returns the confirm and cancel buttons' ids as printed. */
async function ask(name: string): Promise<{ confirm: string; cancel: string }> {
  expect(await alice.run(`/retire name:${name}`)).toBe(true);
  const shown = printed.join('\n');
  const ids = [...shown.matchAll(/press with: \/press (\S+)/g)].map((m) => m[1] as string);
  printed.length = 0;
  const [confirm, cancel] = ids;
  expect(confirm).toBe(`retire:confirm:${name}:${ALICE}:${NOW.getTime() / 1000 + CONFIRM_SECONDS}`);
  expect(cancel).toBe(`retire:cancel:${name}:${ALICE}:${NOW.getTime() / 1000 + CONFIRM_SECONDS}`);
  return { confirm: confirm as string, cancel: cancel as string };
}

const queued = async () => (await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed'])).length;

describe('/retire through the console', () => {
  it('asks first; the requester presses confirm → the job runs and clawdinator-3 is gone', async () => {
    const { confirm } = await ask('clawdinator-3');
    expect(await queued()).toBe(0);
    expect(await alice.run(`/press ${confirm}`)).toBe(true);
    expect(printed.join('\n')).toBe('(the message with the buttons now reads:)\n⏳ Retiring **clawdinator-3**…');
    const [job] = await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed']);
    const deadline = Date.now() + 20_000;
    while ((await queue.getJobState(job?.id as string)) !== 'completed') {
      if (Date.now() > deadline) throw new Error('the retire job did not complete');
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(Object.keys((await registry.read()).registry)).toEqual(['clawdinator-1']);
    expect((await cloud.listFleetInstances()).map((i) => i.name)).toEqual(['clawdinator-1']);
  });

  it('another user pressing is refused and nothing is queued; so is an expired press', async () => {
    const { confirm, cancel } = await ask('clawdinator-3');
    expect(await bob.run(`/press ${confirm}`)).toBe(false);
    expect(await bob.run(`/press ${cancel}`)).toBe(false);
    expect(printed.join('\n')).toContain(`Only <@${ALICE}>, who asked, can answer this retire confirmation.`);
    printed.length = 0;
    now = new Date(NOW.getTime() + (CONFIRM_SECONDS + 1) * 1000);
    expect(await alice.run(`/press ${confirm}`)).toBe(false);
    expect(printed.join('\n')).toContain('This confirmation expired: run /retire name:clawdinator-3 again.');
    expect(await queued()).toBe(0);
    expect(Object.keys((await registry.read()).registry)).toEqual(['clawdinator-1', 'clawdinator-3']);
  });

  it('cancel queues nothing; a forged or malformed button is refused', async () => {
    const { cancel } = await ask('clawdinator-3');
    expect(await alice.run(`/press ${cancel}`)).toBe(true);
    expect(printed.join('\n')).toContain('Retire of **clawdinator-3** cancelled.');
    expect(await alice.run('/press retire:confirm:clawdinator-3')).toBe(false);
    expect(await alice.run(`/press retire:destroy:clawdinator-3:${ALICE}:9999999999`)).toBe(false);
    expect(printed.join('\n')).toContain('This button is not a retire confirmation.');
    expect(await queued()).toBe(0);
  });

  it('/jobs retry of a failed retire asks its requester to confirm again, as /retire does', async () => {
    // A retire that fails: the member is not in the registry.
    const { confirm } = await ask('clawdinator-9');
    expect(await alice.run(`/press ${confirm}`)).toBe(true);
    const [failed] = await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed']);
    const id = failed?.id as string;
    const deadline = Date.now() + 20_000;
    while ((await queue.getJobState(id)) !== 'failed') {
      if (Date.now() > deadline) throw new Error('the retire job did not fail');
      await new Promise((r) => setTimeout(r, 25));
    }
    printed.length = 0;
    expect(await alice.run(`/jobs retry id:${id}`)).toBe(true);
    const shown = printed.join('\n');
    expect(shown).toContain(`Retry \`${id}\` (retire of clawdinator-9, asked by alice (Discord ${ALICE}) at `);
    const expiresAt = NOW.getTime() / 1000 + RETRY_CONFIRM_SECONDS;
    const ids = [...shown.matchAll(/press with: \/press (\S+)/g)].map((m) => m[1]);
    expect(ids).toEqual([`jobs:retry:${ALICE}:${expiresAt}:${id}`, `jobs:keep:${ALICE}:${expiresAt}:${id}`]);
    // Nothing is queued until the requester confirms; nobody else can.
    expect(await queued()).toBe(1);
    printed.length = 0;
    expect(await bob.run(`/press ${ids[0]}`)).toBe(false);
    expect(printed.join('\n')).toContain(`Only <@${ALICE}>, who asked, can answer this retry confirmation.`);
    expect(await queued()).toBe(1);
    expect(await alice.run(`/press ${ids[0]}`)).toBe(true);
    const again = (await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed'])).find(
      (j) => j.id !== id,
    );
    expect(again?.data.signed).toMatchObject({ type: 'retire', data: { name: 'clawdinator-9' } });
    expect(again?.data.signed.principal).toMatchObject({ kind: 'discord', userId: ALICE });
  });
});
