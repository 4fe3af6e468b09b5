// An agent's retire waits for a human in the ops channel, through the real parts: the agent's
// signed request, the real worker against the simulated cloud, the real discord.js gateway
// against the loopback stand-in, the relay. The question appears with buttons; only a human
// allowed /retire can answer, before it expires; only an answer signed by the gateway counts.
import { readFileSync } from 'node:fs';
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { SimCloud } from '../../jobs/cloud/sim.js';
import { type Approval, approvalButtonId, parseApprovalButton } from '../../jobs/engine/approval.js';
import type { Envelope } from '../../jobs/engine/envelope.js';
import { keys } from '../../jobs/engine/keys.js';
import type { FileRegistryStore } from '../../jobs/registry/file.js';
import { signPayload } from '../../jobs/signing.js';
import type { MemoryStore } from '../../memory/store.js';
import {
  ALICE,
  alicePrincipal,
  BOB,
  GUILD,
  OPERATOR_ROLE,
  OPS_CHANNEL,
  OTHER_CHANNEL,
  policy,
} from '../support/bot.js';
import { discordBot } from '../support/bot-fleet.js';
import type { DiscordStandIn, MessageRecord } from '../support/discord-standin.js';
import { SIM_AMI as AMI } from '../support/fleet.js';
import { type keyPair, writeHeartbeat } from '../support/jobs.js';
import { AGENT, lifecycleSuite } from '../support/lifecycle.js';

const TOKEN = 'agent-confirm-test-bot-token';
const alice = { id: ALICE, username: 'alice' };
const bob = { id: BOB, username: 'bob' };

// A host that comes online writes its heartbeat, as its worker would (a replace waits for it).
const suite = lifecycleSuite({ members: ['clawdinator-1', 'clawdinator-3'], tokens: [] });

interface World {
  redis: Redis;
  cloud: SimCloud;
  registry: FileRegistryStore;
  memory: MemoryStore;
  /** The gateway's memory (in production the same shared folder): the presses' audit. */
  gatewayMemory: MemoryStore;
  standIn: DiscordStandIn;
  queue: Queue;
  gatewayKey: ReturnType<typeof keyPair>;
  agentKey: ReturnType<typeof keyPair>;
  /** clawdinator-1's agent asks to retire (or replace) clawdinator-3; returns the job id. */
  ask(type?: 'retire' | 'replace', ami?: string): Promise<string>;
  /** Until the job completed or failed. */
  settled(jobId: string): Promise<Job<Envelope>>;
}

async function world(options: { confirmSeconds?: number } = {}): Promise<World> {
  const { redis, sim } = suite;
  // clawdinator-1's worker is alive: retiring clawdinator-3 leaves it.
  await writeHeartbeat(redis, { host: 'clawdinator-1', instanceId: 'i-1' }, 600);
  const h = suite.harness({
    types: { opsChannelId: OPS_CHANNEL, agentConfirmSeconds: options.confirmSeconds ?? 600 },
    policy,
    agentRequestsPerHour: 10,
  });
  const bot = await discordBot(suite.server, redis, h, { token: TOKEN, approvals: true });
  suite.defer(() => bot.close());
  const agentQueue = h.enqueuer('agent');
  let n = 0;
  return {
    redis,
    cloud: sim.cloud,
    registry: sim.registry,
    memory: sim.memory,
    gatewayMemory: bot.deps.memory,
    standIn: bot.standIn,
    queue: h.queue,
    gatewayKey: h.keys.gateway,
    agentKey: h.keys.agent,
    async ask(type = 'retire', ami) {
      // As `clawdinator request retire clawdinator-3` queues it on clawdinator-1.
      const { jobId } = await agentQueue.enqueue({
        type,
        data: { name: 'clawdinator-3', ...(ami ? { ami } : {}) },
        principal: AGENT,
        requestId: `agent-test${++n}`,
        reply: { channelId: OPS_CHANNEL },
      });
      return jobId;
    },
    settled: h.finished,
  };
}

/** The ops-channel message asking about this job, once the relay posted it. */
async function question(w: World, jobId: string): Promise<MessageRecord> {
  await w.standIn.waitForCall(
    (c) =>
      c.method === 'POST' && c.path === `/channels/${OPS_CHANNEL}/messages` && JSON.stringify(c.body).includes(jobId),
    20_000,
  );
  const found = w.standIn.channelMessages(OPS_CHANNEL).find((m) => JSON.stringify(m.components).includes(jobId));
  if (found === undefined) throw new Error('no question in the ops channel');
  return found;
}

function buttonIds(message: MessageRecord): string[] {
  const rows = message.components as { components: { custom_id: string }[] }[];
  return rows.flatMap((r) => r.components.map((c) => c.custom_id));
}

/** Presses a button on the question as `user` and returns what the interaction answered. */
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
  return callback as { type: number; data?: { content?: string; flags?: number; components?: unknown[] } };
}

const settled = (w: World, jobId: string): Promise<Job<Envelope>> => w.settled(jobId);

/** Waits until the job has checked for an answer at least `n` more times (each check re-delays it). */
async function polls(w: World, jobId: string, n: number): Promise<void> {
  const count = async () =>
    (await w.redis.xrange(keys.events, '-', '+')).filter(
      ([, f]) => f[1]?.includes(`"jobId":"${jobId}"`) && f[1]?.includes('"text":"confirmation"'),
    ).length;
  const start = await count();
  const deadline = Date.now() + 20_000;
  while ((await count()) < start + n) {
    if (Date.now() > deadline) throw new Error('the job stopped checking for an answer');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Between its checks the job is delayed; a check in progress makes it active. Unanswered either way. */
async function stillWaiting(w: World, jobId: string): Promise<void> {
  expect(['delayed', 'active', 'waiting']).toContain(await w.queue.getJobState(jobId));
  const steps = (await w.queue.getJob(jobId))?.data.steps ?? {};
  expect(Object.keys(steps).filter((s) => !s.includes(':'))).toEqual(['confirmation-asked']);
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

const names = async (w: World) => Object.keys((await w.registry.read()).registry);
const untouched = async (w: World) => {
  expect(await names(w)).toEqual(['clawdinator-1', 'clawdinator-3']);
  expect(w.cloud.calls.byOperation.TerminateInstances).toBeUndefined();
  expect((await w.cloud.listFleetInstances()).map((i) => i.name).sort()).toEqual(['clawdinator-1', 'clawdinator-3']);
};
const messageEdits = (w: World, message: MessageRecord) =>
  w.standIn.calls.filter((c) => c.method === 'PATCH' && c.path === `/channels/${OPS_CHANNEL}/messages/${message.id}`);

describe("an agent's retire waits for a human in the ops channel", () => {
  it('asks with buttons; a user not allowed /retire is refused; an operator confirms and the job runs', async () => {
    const w = await world();
    const jobId = await w.ask();
    const message = await question(w, jobId);
    expect(message.content).toMatch(
      /^❓ clawdinator-1 asks to retire \*\*clawdinator-3\*\*\. Any human allowed \/retire can answer, until <t:\d+:t>\.$/,
    );
    const [confirm, cancel] = buttonIds(message);
    expect(confirm).toMatch(new RegExp(`^retire:yes:${jobId}:\\d+$`));
    expect(cancel).toMatch(new RegExp(`^retire:no:${jobId}:\\d+$`));
    await stillWaiting(w, jobId);

    // bob has no operator role: refused, ephemerally; the job keeps waiting, nothing answered.
    const refused = await press(w, message, confirm as string, bob, []);
    expect(refused.type).toBe(4);
    expect(refused.data?.flags).toBe(64);
    expect(refused.data?.content).toBe('⚠️ You are not allowed to use /retire.');
    expect(await w.redis.exists(keys.approval(jobId))).toBe(0);
    await polls(w, jobId, 2);
    await stillWaiting(w, jobId);
    await untouched(w);
    // Progress while waiting never replaced the question (and its buttons).
    await relayCaughtUp(w);
    expect(messageEdits(w, message)).toEqual([]);

    // alice, an operator in the ops channel: the question becomes the answer, then the job's result.
    const answered = await press(w, message, confirm as string, alice, [OPERATOR_ROLE]);
    expect(answered.type).toBe(7);
    expect(answered.data?.content).toBe(
      `✅ <@${ALICE}> confirmed clawdinator-1's retire of **clawdinator-3**: it goes ahead.`,
    );
    expect(answered.data?.components).toEqual([]);
    const job = await settled(w, jobId);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue).toMatchObject({
      summary: expect.stringMatching(/^clawdinator-3 retired: i-[0-9a-f]+ terminated$/),
    });
    expect(await names(w)).toEqual(['clawdinator-1']);
    const result = await w.standIn.waitForCall(
      (c) =>
        messageEdits(w, message).includes(c) && String((c.body as { content?: string }).content).startsWith('✅ `'),
      20_000,
    );
    expect((result.body as { content: string }).content).toContain('clawdinator-3 retired');
    expect(w.standIn.message(message.id)?.components).toEqual([]);
    // A second press finds the question answered.
    const late = await press(w, message, cancel as string, alice, [OPERATOR_ROLE]);
    expect(late.data?.flags).toBe(64);
    expect(late.data?.content).toBe('⚠️ This request was already answered by alice.');

    // Audited: the presses (the dispatcher) and the outcome (the job).
    const day = new Date().toISOString().slice(0, 10);
    const read = async (m: MemoryStore) => (await m.read(`audit/${day}.md`)).content.toString();
    const audit = (await read(w.gatewayMemory)) + (await read(w.memory));
    expect(audit).toContain(
      `user=${BOB} (bob) guild=${GUILD} channel=${OPS_CHANNEL} button ${confirm} → "refused: You are not allowed to use /retire."`,
    );
    expect(audit).toContain(`user=${ALICE} (alice) guild=${GUILD} channel=${OPS_CHANNEL} button ${confirm} → ok`);
    expect(audit).toContain(
      `job=${jobId} agent clawdinator-1 retire name:clawdinator-3 → confirmed by alice (Discord ${ALICE})`,
    );
    expect(audit).toMatch(new RegExp(`job=${jobId} agent clawdinator-1 retire name:clawdinator-3 → retired: `));
    // No secret went to Discord.
    const sent = JSON.stringify(w.standIn.calls.map((c) => c.body));
    expect(sent).not.toContain(TOKEN);
    expect(sent).not.toContain('PRIVATE KEY');
  });

  it('cancel ends the job "cancelled by" the presser; nothing is destroyed', async () => {
    const w = await world();
    const jobId = await w.ask();
    const message = await question(w, jobId);
    const [, cancel] = buttonIds(message);
    const answered = await press(w, message, cancel as string, alice, [OPERATOR_ROLE]);
    expect(answered.data?.content).toBe(
      `✖️ <@${ALICE}> cancelled clawdinator-1's retire of **clawdinator-3**: nothing changes.`,
    );
    const job = await settled(w, jobId);
    expect(job.failedReason).toBe(`retire of clawdinator-3 cancelled by alice (Discord ${ALICE})`);
    expect(job.attemptsMade).toBe(1);
    await untouched(w);
    await w.standIn.waitForCall(
      (c) => messageEdits(w, message).includes(c) && String((c.body as { content?: string }).content).startsWith('❌'),
      20_000,
    );
  });

  it('an unanswered question expires: not confirmed, nothing destroyed, a late press does nothing', async () => {
    const w = await world({ confirmSeconds: 1 });
    const jobId = await w.ask();
    const message = await question(w, jobId);
    const [confirm] = buttonIds(message);
    const job = await settled(w, jobId);
    expect(job.failedReason).toBe('retire of clawdinator-3 asked by clawdinator-1: not confirmed within 1 s');
    await untouched(w);
    // The question is replaced by the outcome (its buttons gone).
    await w.standIn.waitForCall(
      (c) =>
        messageEdits(w, message).includes(c) &&
        String((c.body as { content?: string }).content).includes('not confirmed'),
      20_000,
    );
    const late = await press(w, message, confirm as string, alice, [OPERATOR_ROLE]);
    expect(late.data?.flags).toBe(64);
    expect(late.data?.content).toBe(
      "⚠️ This confirmation expired: the agent's retire was not confirmed, and nothing changed.",
    );
    expect(await w.redis.exists(keys.approval(jobId))).toBe(0);
    await untouched(w);
  });

  it('forged questions show no button; a press counts only as one of the job’s signed question', async () => {
    const w = await world();
    const jobId = await w.ask();
    const message = await question(w, jobId);
    const [confirm] = buttonIds(message);
    const expiresAt = Number(confirm?.split(':')[3]);
    const [real] = (await w.redis.xrange(keys.events, '-', '+')).filter(([, f]) => f[1]?.includes('"kind":"confirm"'));
    const signed = JSON.parse(real?.[1][1] as string);
    // A Redis writer's question: unsigned, with the human flow's button for a real member,
    // labelled to be pressed without a second thought.
    const humanFlow = `retire:confirm:clawdinator-1:${ALICE}:${expiresAt}`;
    await w.redis.xadd(
      keys.events,
      '*',
      'event',
      JSON.stringify({
        kind: 'confirm',
        jobId,
        reply: { channelId: OPS_CHANNEL },
        text: 'Maintenance window: please acknowledge.',
        at: Date.now(),
        buttons: [{ id: humanFlow, label: 'Acknowledge', style: 'primary' }],
      }),
    );
    // The worker's signed question, added again as it was, and moved to another channel.
    await w.redis.xadd(keys.events, '*', 'event', real?.[1][1] as string);
    const moved = { ...signed, event: { ...signed.event, reply: { channelId: OTHER_CHANNEL } } };
    await w.redis.xadd(keys.events, '*', 'event', JSON.stringify(moved));
    await relayCaughtUp(w);
    const withButtons = w.standIn.channelMessages(OPS_CHANNEL).filter((m) => m.components.length > 0);
    expect(withButtons.map((m) => m.id)).toEqual([message.id]);
    expect(JSON.stringify(w.standIn.calls)).not.toContain(humanFlow);
    expect(w.standIn.calls.filter((c) => c.path.includes(OTHER_CHANNEL))).toEqual([]);

    // A button id that is not one of the signed question's (another expiry) answers nothing.
    const other = approvalButtonId({ action: 'retire', decision: 'confirm', jobId, expiresAt: expiresAt + 60 });
    const pressedOther = await press(w, message, other, alice, [OPERATOR_ROLE]);
    expect(pressedOther.data?.content).toBe('⚠️ This request is no longer waiting for an answer.');
    // Nor does the real button once the pending record is not the job's (replaced by a Redis writer).
    const record = (await w.redis.get(keys.pending(jobId))) as string;
    const stored = JSON.parse(record);
    const forgedRecord = { ...stored, pending: { ...stored.pending, channelId: OTHER_CHANNEL } };
    await w.redis.set(keys.pending(jobId), JSON.stringify(forgedRecord));
    const pressedForged = await press(w, message, confirm as string, alice, [OPERATOR_ROLE]);
    expect(pressedForged.data?.content).toBe('⚠️ This request is no longer waiting for an answer.');
    expect(await w.redis.exists(keys.approval(jobId))).toBe(0);
    await stillWaiting(w, jobId);
    await untouched(w);

    // The job's own record back: the same press goes through (so the refusals above could fail).
    await w.redis.set(keys.pending(jobId), record);
    const answered = await press(w, message, confirm as string, alice, [OPERATOR_ROLE]);
    expect(answered.type).toBe(7);
    expect((await settled(w, jobId)).failedReason).toBeUndefined();
  });

  it('an approval written straight to Redis (unsigned, wrongly signed, or for someone not allowed) is ignored', async () => {
    const w = await world();
    const jobId = await w.ask();
    const message = await question(w, jobId);
    const [confirm] = buttonIds(message);
    const expiresAt = Number(confirm?.split(':')[3]);
    const job = (await w.queue.getJob(jobId)) as Job<Envelope>;
    const approval: Approval = {
      jobId,
      requestId: job.data.signed.requestId,
      action: 'retire',
      name: 'clawdinator-3',
      decision: 'confirm',
      by: alicePrincipal,
      at: Date.now(),
      expiresAt,
    };
    const forgeries = [
      // a plain "approved"
      'approved',
      // the right shape, no valid signature
      JSON.stringify({ approval, keyId: 'gateway', signature: Buffer.alloc(64).toString('base64') }),
      // signed, but by a key that is not the gateway's (the agent's own, say)
      JSON.stringify({ approval, keyId: 'gateway', signature: signPayload(approval, w.agentKey.privateKey) }),
      // signed by the gateway, for a presser the policy does not allow
      JSON.stringify({
        approval: { ...approval, by: { ...approval.by, userId: BOB, userName: 'bob', roles: [] } },
        keyId: 'gateway',
        signature: signPayload(
          { ...approval, by: { ...approval.by, userId: BOB, userName: 'bob', roles: [] } },
          w.gatewayKey.privateKey,
        ),
      }),
      // signed by the gateway, for another request
      JSON.stringify({
        approval: { ...approval, requestId: 'agent-other' },
        keyId: 'gateway',
        signature: signPayload({ ...approval, requestId: 'agent-other' }, w.gatewayKey.privateKey),
      }),
    ];
    for (const forged of forgeries) {
      await w.redis.set(keys.approval(jobId), forged);
      // The worker reads it, does not accept it, and removes it so a real answer can follow.
      const deadline = Date.now() + 20_000;
      while ((await w.redis.exists(keys.approval(jobId))) === 1) {
        if (Date.now() > deadline) throw new Error('the forged approval was never looked at');
        await new Promise((r) => setTimeout(r, 25));
      }
      await stillWaiting(w, jobId);
      expect((await w.queue.getJob(jobId))?.data.steps?.confirmation).toBeUndefined();
    }
    await untouched(w);
    await relayCaughtUp(w);
    expect(messageEdits(w, message)).toEqual([]);
    expect(w.standIn.message(message.id)?.components).not.toEqual([]);

    // The same approval, signed by the gateway: accepted (so the checks above could fail).
    await w.redis.set(
      keys.approval(jobId),
      JSON.stringify({ approval, keyId: 'gateway', signature: signPayload(approval, w.gatewayKey.privateKey) }),
    );
    const done = await settled(w, jobId);
    expect(done.failedReason).toBeUndefined();
    expect(await names(w)).toEqual(['clawdinator-1']);
    expect(readFileSync(w.registry.historyPath, 'utf8')).toContain(
      'fleet: retire clawdinator-3 — requested by agent clawdinator-1 via clawdinator request retire',
    );
  });

  it("an agent's replace asks the same way; an operator's confirm lets it run", async () => {
    const w = await world();
    const oldId = (await w.cloud.listFleetInstances()).find((i) => i.name === 'clawdinator-3')?.instanceId;
    const jobId = await w.ask('replace', AMI);
    const message = await question(w, jobId);
    expect(message.content).toMatch(
      new RegExp(
        `^❓ clawdinator-1 asks to replace \\*\\*clawdinator-3\\*\\* with ${AMI}\\. Any human allowed /replace can answer`,
      ),
    );
    const [confirm] = buttonIds(message);
    expect(confirm).toMatch(new RegExp(`^replace:yes:${jobId}:\\d+$`));
    await stillWaiting(w, jobId);
    expect(w.cloud.calls.byOperation.RunInstances).toBeUndefined();
    const answered = await press(w, message, confirm as string, alice, [OPERATOR_ROLE]);
    expect(answered.data?.content).toBe(
      `✅ <@${ALICE}> confirmed clawdinator-1's replace of **clawdinator-3**: it goes ahead.`,
    );
    const job = await settled(w, jobId);
    expect(job.failedReason).toBeUndefined();
    const now = (await w.cloud.listFleetInstances()).filter((i) => i.name === 'clawdinator-3' && i.state === 'running');
    expect(now).toHaveLength(1);
    expect(now[0]?.instanceId).not.toBe(oldId);
  });

  it('button ids fit Discord and parse back; the human flow ids are not agent questions', () => {
    const press = {
      action: 'replace',
      decision: 'cancel',
      jobId: `replace-${'x'.repeat(64)}`,
      expiresAt: 9_999_999_999,
    } as const;
    const id = approvalButtonId(press);
    expect(id.length).toBeLessThanOrEqual(100);
    expect(parseApprovalButton(id)).toEqual(press);
    expect(parseApprovalButton(`retire:confirm:clawdinator-3:${ALICE}:1795563203`)).toBeNull();
    expect(parseApprovalButton('retire:yes:retire-x:soon')).toBeNull();
    expect(parseApprovalButton('spawn:yes:spawn-x:1795563203')).toBeNull();
  });
});
