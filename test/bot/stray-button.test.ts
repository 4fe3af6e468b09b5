// A stray's alert offers its clean-up as a button, through the real parts: the health sweep
// against the simulated cloud (its offer signed with the workers' key), the relay, the real
// discord.js gateway against the loopback stand-in, and the real worker running stray-cleanup.
// Only a human allowed /retire may press; the press asks that human to confirm; the confirm
// queues the job once. A forged alert or a forged offer shows no button, and a press on a
// button whose offer is not the sweep's does nothing.
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { STRAY_CONFIRM_SECONDS } from '../../bot/commands/stray-answer.js';
import type { SimCloud } from '../../jobs/cloud/sim.js';
import { parseApprovalButton } from '../../jobs/engine/approval.js';
import type { Envelope } from '../../jobs/engine/envelope.js';
import type { JobContext } from '../../jobs/engine/job-type.js';
import { keys } from '../../jobs/engine/keys.js';
import { publish } from '../../jobs/engine/notify.js';
import {
  parseStrayButton,
  parseStrayConfirm,
  STRAY_OFFER_SECONDS,
  strayButtonId,
  strayConfirmId,
  writeStrayOffer,
} from '../../jobs/engine/stray-offer.js';
import type { FileRegistryStore } from '../../jobs/registry/file.js';
import { type HealthSweepResult, healthSweep } from '../../jobs/types/health-sweep.js';
import { createLogger } from '../../lib/log.js';
import type { MemoryStore } from '../../memory/store.js';
import { ALICE, BOB, GUILD, OPERATOR_ROLE, OPS_CHANNEL, policy } from '../support/bot.js';
import { discordBot } from '../support/bot-fleet.js';
import type { DiscordStandIn, MessageRecord } from '../support/discord-standin.js';
import { SIM_AMI } from '../support/fleet.js';
import { keyPair, testStepSigner, writeHeartbeat } from '../support/jobs.js';
import { lifecycleSuite } from '../support/lifecycle.js';

const TOKEN = 'stray-button-test-bot-token';
const alice = { id: ALICE, username: 'alice' };
const bob = { id: BOB, username: 'bob' };
const MEMBERS = ['clawdinator-1', 'clawdinator-3'];

const suite = lifecycleSuite({ members: MEMBERS, tokens: [] });

interface World {
  redis: Redis;
  cloud: SimCloud;
  registry: FileRegistryStore;
  gatewayMemory: MemoryStore;
  standIn: DiscordStandIn;
  /** One health sweep, as the schedule runs it (the workers' key signs its alerts and offers). */
  sweep(n?: number): Promise<HealthSweepResult>;
  settled(jobId: string): Promise<Job<Envelope>>;
}

async function world(): Promise<World> {
  const { redis, sim } = suite;
  await writeHeartbeat(redis, { host: 'clawdinator-1', instanceId: 'i-1' }, 600);
  const h = suite.harness({ types: { opsChannelId: OPS_CHANNEL }, policy });
  const bot = await discordBot(suite.server, redis, h, { token: TOKEN, approvals: true });
  suite.defer(() => bot.close());
  // A member never seen is "gone" at once when EC2 has no instance of it (no grace here).
  const type = healthSweep({
    redis,
    fleet: async () => Object.keys((await sim.registry.read()).registry),
    cloud: sim.cloud,
    opsChannelId: OPS_CHANNEL,
    newHostGraceMs: 0,
  });
  return {
    redis,
    cloud: sim.cloud,
    registry: sim.registry,
    gatewayMemory: bot.deps.memory,
    standIn: bot.standIn,
    async sweep(n = 1) {
      const ctx = {
        jobId: `repeat:clawdinator-health-sweep:${n}`,
        data: {},
        principal: { kind: 'schedule', scheduler: 'clawdinator-health-sweep' },
        requestId: 'clawdinator-health-sweep',
        steps: undefined as never,
        signer: testStepSigner,
        log: createLogger('silent'),
        progress: async () => {},
      } satisfies JobContext<Record<string, never>>;
      return (await type.run(ctx)) as HealthSweepResult;
    },
    settled: h.finished,
  };
}

/** The ops-channel message whose text includes `words`, once the relay posted it. */
async function alert(w: World, words: string): Promise<MessageRecord> {
  await w.standIn.waitForCall(
    (c) =>
      c.method === 'POST' && c.path === `/channels/${OPS_CHANNEL}/messages` && JSON.stringify(c.body).includes(words),
    20_000,
  );
  const found = w.standIn.channelMessages(OPS_CHANNEL).find((m) => m.content.includes(words));
  if (found === undefined) throw new Error(`no alert with ${words}`);
  return found;
}

function buttons(message: MessageRecord | undefined): { custom_id: string; label: string }[] {
  const rows = (message?.components ?? []) as { components: { custom_id: string; label: string }[] }[];
  return rows.flatMap((r) => r.components);
}

/** Presses a button on `message` as `user` in the ops channel; returns the interaction and its first answer. */
async function press(w: World, message: MessageRecord, customId: string, user: typeof alice, roles: string[]) {
  const i = w.standIn.injectButton({
    user,
    roles,
    guildId: GUILD,
    channelId: OPS_CHANNEL,
    customId,
    messageId: message.id,
  });
  await w.standIn.waitForCall((c) => c.path.startsWith(`/interactions/${i.id}/`), 10_000);
  const [callback] = w.standIn.responsesFor(i.id).callbacks;
  return {
    id: i.id,
    answer: callback as { type: number; data?: { content?: string; flags?: number; components?: unknown[] } },
  };
}

/** Until the relay has handled every event written so far (the gateways' group is caught up). */
async function relayCaughtUp(w: World): Promise<void> {
  const [last] = await w.redis.xrevrange(keys.events, '+', '-', 'COUNT', 1);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const groups = (await w.redis.xinfo('GROUPS', keys.events)) as unknown[][];
    const info = Object.fromEntries(
      (groups[0] ?? []).flatMap((v, i, a) => (i % 2 === 0 ? [[String(v), a[i + 1]]] : [])),
    ) as { 'last-delivered-id'?: string; pending?: number };
    if (info['last-delivered-id'] === last?.[0] && info.pending === 0) return;
    if (Date.now() > deadline) throw new Error('the relay did not catch up');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const state = async (w: World, id: string) => (await w.cloud.describeInstance(id)).state;
const cleanupJobs = async (w: World) =>
  (await w.redis.keys('bull:clawdinator-fleet:stray-cleanup-*')).filter((k) => k.split(':').length === 3);

/** The one stray-cleanup job's id, once the confirm press (answered before it enqueues) queued it. */
async function queued(w: World): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [key, ...more] = await cleanupJobs(w);
    expect(more).toEqual([]);
    if (key !== undefined) return key.split(':')[2] as string;
    if (Date.now() > deadline) throw new Error('no stray-cleanup job was queued');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("a stray's alert offers its clean-up", () => {
  it('a stray instance: operators only, confirmed by the presser, terminated by one job; the button then does nothing', async () => {
    const w = await world();
    const stray = await w.cloud.launchInstance({ name: 'clawdinator-9', ami: SIM_AMI, instanceType: 't3.large' });
    expect(await w.sweep()).toMatchObject({ strays: 1 });
    const message = await alert(w, `stray: ${stray}`);
    expect(message.content).toMatch(/^🚨 stray: i-[0-9a-f]+ \(clawdinator-9\) is tagged app=clawdinator but not in/);
    const [offered, ...more] = buttons(message);
    expect(more).toEqual([]);
    expect(offered?.label).toBe(`Terminate ${stray}`);
    expect(offered?.custom_id).toMatch(new RegExp(`^retire:stray:${stray}:\\d+$`));
    const offerId = offered?.custom_id as string;

    // bob is no operator: refused as /retire refuses him, ephemerally; nothing asked or queued.
    const refused = await press(w, message, offerId, bob, []);
    expect(refused.answer.data?.flags).toBe(64);
    expect(refused.answer.data?.content).toBe('⚠️ You are not allowed to use /retire.');

    // alice: asked to confirm, in a message of its own (the alert and its button stay).
    const asked = await press(w, message, offerId, alice, [OPERATOR_ROLE]);
    expect(asked.answer.type).toBe(4);
    expect(asked.answer.data?.content).toMatch(
      new RegExp(
        `^⚠️ Terminate \\*\\*${stray}\\*\\* \\(clawdinator-9\\), an instance tagged as ours that the registry does not know\\? Only <@${ALICE}> can confirm, until <t:\\d+:t>\\.$`,
      ),
    );
    const confirmation = w.standIn.responsesFor(asked.id).original as MessageRecord;
    const [confirm, cancel] = buttons(confirmation).map((b) => b.custom_id);
    expect(confirm).toMatch(new RegExp(`^retire:stray-yes:${stray}:${ALICE}:\\d+$`));
    const expiry = Number(confirm?.split(':').at(-1));
    expect(expiry - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(STRAY_CONFIRM_SECONDS);
    expect(cancel).toBe(confirm?.replace('stray-yes', 'stray-no'));
    expect(buttons(w.standIn.message(message.id)).map((b) => b.custom_id)).toEqual([offerId]);
    expect(await cleanupJobs(w)).toEqual([]);

    // Another operator cannot answer alice's confirmation.
    const other = await press(w, confirmation, confirm as string, bob, [OPERATOR_ROLE]);
    expect(other.answer.data?.content).toBe(`⚠️ Only <@${ALICE}>, who asked, can answer this clean-up confirmation.`);
    expect(await state(w, stray)).toBe('running');

    // alice confirms: the confirmation becomes the job's progress, then its result.
    const confirmed = await press(w, confirmation, confirm as string, alice, [OPERATOR_ROLE]);
    expect(confirmed.answer.type).toBe(7);
    expect(confirmed.answer.data?.content).toBe(`⏳ Cleaning up **${stray}**…`);
    const job = await w.settled(await queued(w));
    expect(job.failedReason).toBeUndefined();
    expect(job.data.signed).toMatchObject({
      type: 'stray-cleanup',
      data: { target: stray },
      principal: { kind: 'discord', userId: ALICE },
    });
    expect(await state(w, stray)).toBe('terminated');
    const result = await w.standIn.waitForCall(
      (c) => c.method === 'PATCH' && String((c.body as { content?: string }).content).startsWith('✅ `stray-cleanup-'),
      20_000,
    );
    expect((result.body as { content: string }).content).toContain(`${stray} (clawdinator-9) terminated`);

    // The offer is taken: the alert's button, and the confirmation again, do nothing more.
    const late = await press(w, message, offerId, alice, [OPERATOR_ROLE]);
    expect(late.answer.data?.content).toBe(
      '⚠️ This stray is no longer offered for clean-up (handled already, expired, or not one the health sweep reported).',
    );
    const again = await press(w, confirmation, confirm as string, alice, [OPERATOR_ROLE]);
    expect(again.answer.data?.flags).toBe(64);
    expect(await cleanupJobs(w)).toHaveLength(1);

    // Audited: the presses (the dispatcher).
    const day = new Date().toISOString().slice(0, 10);
    const audit = (await w.gatewayMemory.read(`audit/${day}.md`)).content.toString();
    expect(audit).toContain(`user=${BOB} (bob) guild=${GUILD} channel=${OPS_CHANNEL} button ${offerId} → "refused:`);
    expect(audit).toContain(`user=${ALICE} (alice) guild=${GUILD} channel=${OPS_CHANNEL} button ${confirm} → ok`);
    expect(JSON.stringify(w.standIn.calls.map((c) => c.body))).not.toContain(TOKEN);
  });

  it('a member whose instance is gone: its entry retired from the button; cancel changes nothing', async () => {
    const w = await world();
    const gone = (await w.cloud.listFleetInstances()).find((i) => i.name === 'clawdinator-3');
    await w.cloud.terminateInstance(gone?.instanceId as string);
    await w.redis.del(keys.heartbeat('clawdinator-3'));
    await w.sweep(1);
    expect(await w.sweep(2)).toMatchObject({ gone: 1 });
    const message = await alert(w, 'clawdinator-3 is in the registry, but EC2 has no instance of it');
    const [offered] = buttons(message);
    expect(offered?.label).toBe("Retire clawdinator-3's entry");

    const first = await press(w, message, offered?.custom_id as string, alice, [OPERATOR_ROLE]);
    expect(first.answer.data?.content).toMatch(
      /^⚠️ Retire \*\*clawdinator-3\*\* from the registry\? EC2 has no instance of it: its stack, entry, host key and bootstrap bundle are removed\./,
    );
    const asked = w.standIn.responsesFor(first.id).original as MessageRecord;
    const [, cancel] = buttons(asked).map((b) => b.custom_id);
    const cancelled = await press(w, asked, cancel as string, alice, [OPERATOR_ROLE]);
    expect(cancelled.answer.data?.content).toBe('Clean-up of **clawdinator-3** cancelled: nothing changed.');
    expect(Object.keys((await w.registry.read()).registry)).toEqual(MEMBERS);

    // Cancelling the confirmation leaves the offer: asked again, confirmed, retired.
    const second = await press(w, message, offered?.custom_id as string, alice, [OPERATOR_ROLE]);
    const asked2 = w.standIn.responsesFor(second.id).original as MessageRecord;
    const [confirm2] = buttons(asked2).map((b) => b.custom_id);
    await press(w, asked2, confirm2 as string, alice, [OPERATOR_ROLE]);
    await w.standIn.waitForCall(
      (c) => c.method === 'PATCH' && String((c.body as { content?: string }).content).startsWith('✅ `stray-cleanup-'),
      20_000,
    );
    expect(Object.keys((await w.registry.read()).registry)).toEqual(['clawdinator-1']);
  });

  it('forged alerts and forged offers show no button; a press on an offer that is not the sweep’s does nothing', async () => {
    const w = await world();
    const stray = await w.cloud.launchInstance({ name: 'clawdinator-9', ami: SIM_AMI, instanceType: 't3.large' });
    await w.sweep(1);
    const message = await alert(w, `stray: ${stray}`);
    const offerId = buttons(message)[0]?.custom_id as string;
    const genuine = (await w.redis.get(keys.strayOffer(stray))) as string;
    const expiresAt = Math.floor(Date.now() / 1000) + STRAY_OFFER_SECONDS;
    const add = (value: string) => w.redis.xadd(keys.events, '*', 'event', value);
    const offerOf = (target: string, over: Record<string, unknown> = {}) => ({
      target,
      action: 'terminate' as const,
      instanceName: 'clawdinator-8',
      jobId: 'repeat:clawdinator-health-sweep:7',
      channelId: OPS_CHANNEL,
      expiresAt,
      buttons: [{ id: strayButtonId(target, expiresAt), label: `Terminate ${target}`, style: 'danger' as const }],
      ...over,
    });
    const stranger = { keyId: 'schedule', key: keyPair().privateKey };
    const alertOf = (target: string, text: string) => ({
      kind: 'alert' as const,
      jobId: 'repeat:clawdinator-health-sweep:7',
      type: 'health-sweep',
      reply: { channelId: OPS_CHANNEL },
      text,
      offer: target,
    });

    // 1. A Redis writer's alert, unsigned, naming the genuine offer, with a button of its own.
    await add(
      JSON.stringify({
        ...alertOf(stray, 'forged: unsigned'),
        at: Date.now(),
        buttons: [{ id: offerId, label: 'OK' }],
      }),
    );
    // 2. A signed alert whose offer was written by a stranger's key (a forged record).
    const other = 'i-0000000000000000f';
    await writeStrayOffer(w.redis, stranger, offerOf(other));
    await publish(w.redis, testStepSigner, alertOf(other, 'forged offer: another key'));
    // 3. A signed offer moved to another target's key (copied over a target it does not name).
    const source = 'i-0000000000000000a';
    const moved = 'i-0000000000000000e';
    await writeStrayOffer(w.redis, testStepSigner, offerOf(source));
    await w.redis.set(keys.strayOffer(moved), (await w.redis.get(keys.strayOffer(source))) as string);
    await publish(w.redis, testStepSigner, alertOf(moved, 'forged offer: moved'));
    // 4. A signed offer of another sweep run, and one for another channel.
    const stale = 'i-0000000000000000d';
    await writeStrayOffer(w.redis, testStepSigner, offerOf(stale, { jobId: 'repeat:clawdinator-health-sweep:1' }));
    await publish(w.redis, testStepSigner, alertOf(stale, 'forged offer: another run'));
    const elsewhere = 'i-0000000000000000c';
    await writeStrayOffer(w.redis, testStepSigner, offerOf(elsewhere, { channelId: '200000000000000009' }));
    await publish(w.redis, testStepSigner, alertOf(elsewhere, 'forged offer: another channel'));
    // 5. The genuine signed alert added again as it was: a replay.
    const [real] = (await w.redis.xrange(keys.events, '-', '+')).filter(([, f]) => f[1]?.includes(`stray: ${stray}`));
    await add(real?.[1][1] as string);
    // 6. A correctly signed one (so the checks above could fail): its button shows.
    const control = 'i-0000000000000000b';
    await writeStrayOffer(w.redis, testStepSigner, offerOf(control));
    await publish(w.redis, testStepSigner, alertOf(control, 'control: signed offer'));
    await relayCaughtUp(w);
    const posted = w.standIn.channelMessages(OPS_CHANNEL);
    expect(posted.map((m) => [m.content.replace(/^🚨 /, '').split(':')[0], buttons(m).length])).toEqual([
      ['stray', 1],
      ['forged offer', 0],
      ['forged offer', 0],
      ['forged offer', 0],
      ['forged offer', 0],
      ['control', 1],
    ]);
    expect(JSON.stringify(w.standIn.calls)).not.toContain('forged: unsigned');

    // The genuine button, with its offer replaced by a Redis writer (another channel, re-signed
    // by a stranger): the press does nothing, nor does the confirm of an earlier ask.
    const asked = await press(w, message, offerId, alice, [OPERATOR_ROLE]);
    const confirmation = w.standIn.responsesFor(asked.id).original as MessageRecord;
    const [confirm] = buttons(confirmation).map((b) => b.custom_id);
    const genuineOffer = JSON.parse(genuine).offer;
    await writeStrayOffer(w.redis, stranger, genuineOffer);
    const pressedForged = await press(w, message, offerId, alice, [OPERATOR_ROLE]);
    expect(pressedForged.answer.data?.content).toMatch(/^⚠️ This stray is no longer offered for clean-up/);
    const confirmedForged = await press(w, confirmation, confirm as string, alice, [OPERATOR_ROLE]);
    expect(confirmedForged.answer.data?.content).toMatch(/^⚠️ This stray is no longer offered for clean-up/);
    await w.redis.set(keys.strayOffer(stray), tampered(genuine, { channelId: '200000000000000009' }));
    const pressedMoved = await press(w, message, offerId, alice, [OPERATOR_ROLE]);
    expect(pressedMoved.answer.data?.content).toMatch(/^⚠️ This stray is no longer offered for clean-up/);
    // A button id with another expiry than the offer's answers nothing either.
    await w.redis.set(keys.strayOffer(stray), genuine);
    const otherExpiry = strayButtonId(stray, Number(offerId.split(':')[3]) + 60);
    const pressedOther = await press(w, message, otherExpiry, alice, [OPERATOR_ROLE]);
    expect(pressedOther.answer.data?.content).toMatch(/^⚠️ This stray is no longer offered for clean-up/);
    expect(await cleanupJobs(w)).toEqual([]);
    expect(await state(w, stray)).toBe('running');

    // The sweep's own offer back: the same confirm goes through (so the refusals above could fail).
    const done = await press(w, confirmation, confirm as string, alice, [OPERATOR_ROLE]);
    expect(done.answer.type).toBe(7);
    expect((await w.settled(await queued(w))).failedReason).toBeUndefined();
    expect(await state(w, stray)).toBe('terminated');
  });
});

describe('stray button ids', () => {
  it('fit Discord, parse back, and are neither an agent question nor /retire’s own', () => {
    const name = `clawdinator-${'9'.repeat(28)}`;
    const offer = strayButtonId(name, 9_999_999_999);
    const confirm = strayConfirmId({
      decision: 'confirm',
      target: name,
      userId: '9'.repeat(20),
      expiresAt: 9_999_999_999,
    });
    expect(offer.length).toBeLessThanOrEqual(100);
    expect(confirm.length).toBeLessThanOrEqual(100);
    expect(parseStrayButton(offer)).toEqual({ target: name, expiresAt: 9_999_999_999 });
    expect(parseStrayConfirm(confirm)).toEqual({
      decision: 'confirm',
      target: name,
      userId: '9'.repeat(20),
      expiresAt: 9_999_999_999,
    });
    expect(parseApprovalButton(offer)).toBeNull();
    expect(parseApprovalButton(confirm)).toBeNull();
    expect(parseStrayButton('retire:yes:retire-x:1795563203')).toBeNull();
    expect(parseStrayButton(`retire:confirm:clawdinator-3:${ALICE}:1795563203`)).toBeNull();
    expect(parseStrayButton('retire:stray:../etc:1795563203')).toBeNull();
    expect(parseStrayConfirm(`retire:stray-yes:i-0abc:${ALICE}:1795563203`)).toBeNull();
  });
});

/** The stored offer with its fields changed and its signature kept: what a Redis writer can make. */
function tampered(raw: string, over: Record<string, unknown>): string {
  const stored = JSON.parse(raw);
  return JSON.stringify({ ...stored, offer: { ...stored.offer, ...over } });
}
