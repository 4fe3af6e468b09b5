// /replace through the console adapter and the real parts: the command answers with
// confirmation buttons; only the requester's press queues the replace job, which the real
// worker runs against the simulated cloud (real synth, file registry).
import type { Queue } from 'bullmq';
import { beforeEach, describe, expect, it } from 'vitest';
import { CONFIRM_SECONDS } from '../../bot/commands/replace.js';
import type { ConsoleSession } from '../../bot/console/adapter.js';
import type { SimCloud } from '../../jobs/cloud/sim.js';
import type { FileRegistryStore } from '../../jobs/registry/file.js';
import { ALICE } from '../support/bot.js';
import { consoleSuite } from '../support/bot-fleet.js';
import { SIM_AMI as AMI } from '../support/fleet.js';

const NOW = new Date('2026-11-24T12:00:00Z');

let cloud: SimCloud;
let registry: FileRegistryStore;
let queue: Queue;
let now: Date;
let alice: ConsoleSession;
let bob: ConsoleSession;
let printed: string[];
// Every host's worker beats with its own instance id (simFleet).
const suite = consoleSuite(() => now);
beforeEach(() => {
  now = NOW;
  ({ cloud, registry, queue, alice, bob, printed } = suite.world);
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
