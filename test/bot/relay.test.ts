// Workers' events reach Discord through the relay: the deferred reply is edited with
// progress and the result while the interaction token lives; after it expires (a shortened
// clock here), the result is posted to the channel instead; when the message is gone, the
// result is posted, once. Only events that verify are rendered: unsigned ones, ones signed by
// an agent's key, ones moved to another channel and replays are dropped and logged without a
// Discord call, and a question's buttons come only from its job's signed pending record.
import { Writable } from 'node:stream';
import { REST, Routes } from 'discord.js';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { commands } from '../../bot/commands/index.js';
import { attachmentOriginsFor, type Gateway, startGateway } from '../../bot/discord/gateway.js';
import { createDispatcher } from '../../bot/dispatch.js';
import { JobMessages, redisClaim, TokenStore } from '../../bot/engine.js';
import { type RelayOptions, renderToDiscord, startRelay } from '../../bot/relay.js';
import { approvalButtonId, type Pending, writePending } from '../../jobs/engine/approval.js';
import { keys } from '../../jobs/engine/keys.js';
import {
  type EventInput,
  type EventTrust,
  type JobEvent,
  publish,
  signEvent,
  type VerifiedEvent,
} from '../../jobs/engine/notify.js';
import type { Signer } from '../../jobs/engine/queues.js';
import { createLogger } from '../../lib/log.js';
import { ALICE, botDeps, GUILD, OPERATOR_ROLE, OPS_CHANNEL, OTHER_CHANNEL } from '../support/bot.js';
import { DiscordStandIn, type MessageRecord, type RestCall } from '../support/discord-standin.js';
import { keyPair, testStepSigner, testWorkersKey } from '../support/jobs.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const TOKEN = 'relay-test-bot-token';
let server: TestRedis;
let redis: Redis;
let standIn: DiscordStandIn;
let gateway: Gateway;
let stopRelay: (() => Promise<void>) | undefined;
let logLines: string[] = [];

const workers = testStepSigner;
const gatewayKeys = keyPair();
const agentKeys = keyPair();
const gatewaySigner: Signer = { keyId: 'gateway', key: gatewayKeys.privateKey };
const agent: Signer = { keyId: 'agent:clawdinator-2', key: agentKeys.privateKey };
// The lookup knows the agent's key too, as the workers' does (from the registry): the relay
// must refuse an agent's event by its key id, not by not knowing the key.
const trust: EventTrust = {
  publicKey: async (id) =>
    ({ schedule: testWorkersKey, gateway: gatewayKeys.publicKey, 'agent:clawdinator-2': agentKeys.publicKey })[id] ??
    null,
};

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  logLines = [];
  standIn = new DiscordStandIn({
    token: TOKEN,
    guilds: [{ id: GUILD, channels: [{ id: OPS_CHANNEL }, { id: OTHER_CHANNEL }], roles: [{ id: OPERATOR_ROLE }] }],
  });
  await standIn.start();
});
afterEach(async () => {
  await stopRelay?.();
  await gateway?.stop(500);
  await standIn.stop();
});

async function start(tokenTtlMs: number): Promise<{ tokens: TokenStore; interactionId: string; token: string }> {
  const deps = await botDeps();
  const tokens = new TokenStore(redis, gatewaySigner, tokenTtlMs);
  gateway = await startGateway({
    token: TOKEN,
    apiUrl: standIn.apiUrl,
    dispatcher: createDispatcher(commands, deps, redisClaim(redis)),
    attachmentOrigins: attachmentOriginsFor(standIn.apiUrl),
    log: deps.log,
    tokens,
  });
  const sink = new Writable({
    write(chunk, _enc, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  const relay = startRelay({
    redis: server.client(),
    trust,
    workersKey: testWorkersKey,
    rest: gateway.client.rest,
    tokens,
    consumer: 'test-gateway',
    log: createLogger('info', sink),
    blockMs: 100,
  });
  stopRelay = () => relay.stop();
  // A real interaction, acknowledged by the bot, whose token the job's events will use.
  const i = standIn.injectCommand({
    name: 'memory',
    user: { id: ALICE, username: 'alice' },
    roles: [OPERATOR_ROLE],
    guildId: GUILD,
    channelId: OPS_CHANNEL,
    options: [{ type: 1, name: 'read', options: [{ type: 3, name: 'path', value: 'ops.md' }] }],
  });
  await standIn.waitForCall((c) => c.method === 'PATCH' && c.path.includes(i.token));
  await tokens.save(i.id, { appId: standIn.appId, token: i.token });
  return { tokens, interactionId: i.id, token: i.token };
}

const content = (c: RestCall) => (c.body as { content?: string } | undefined)?.content ?? '';

/** An event as the consumer hands it over once it verified (renderToDiscord called directly). */
function verified(event: Omit<JobEvent, 'id'>): VerifiedEvent {
  return { event: { ...event, id: `test-event-${event.jobId}-${event.kind}` }, keyId: 'schedule', streamId: '1-0' };
}

function renderOptions(over: Partial<RelayOptions> & Pick<RelayOptions, 'rest' | 'tokens'>): RelayOptions {
  return { redis, trust, workersKey: testWorkersKey, consumer: 'a', log: createLogger('silent'), ...over };
}

describe('relay', () => {
  it('edits the reply with progress, then the result', async () => {
    const { interactionId, token } = await start(60_000);
    const reply = { channelId: OPS_CHANNEL, interactionId };
    const started = Date.now() - 65_000;
    await publish(redis, workers, {
      kind: 'progress',
      jobId: 'spawn-1',
      reply,
      text: 'apply',
      percent: 40,
      startedAt: started,
    });
    const progress = await standIn.waitForCall(
      (c) => c.method === 'PATCH' && c.path.includes(token) && content(c).includes('apply'),
    );
    expect(content(progress)).toMatch(/⏳ `spawn-1`\n▰{5}▱{7} 40%\napply · 1m 0[5-6]s/);
    expect(progress.auth).toBeUndefined();
    await publish(redis, workers, {
      kind: 'result',
      jobId: 'spawn-1',
      reply,
      ok: true,
      text: 'clawdinator-3 online',
      startedAt: started,
    });
    const result = await standIn.waitForCall((c) => c.method === 'PATCH' && content(c).includes('online'));
    expect(content(result)).toMatch(/^✅ `spawn-1` clawdinator-3 online · 1m/);
    expect(standIn.channelMessages(OPS_CHANNEL)).toEqual([]);
  });

  it('after the interaction token expires, results go to the channel and progress is dropped', async () => {
    const { interactionId, token } = await start(300);
    await new Promise((r) => setTimeout(r, 400));
    const reply = { channelId: OPS_CHANNEL, interactionId };
    const editsBefore = standIn.calls.filter((c) => c.method === 'PATCH' && c.path.includes(token)).length;
    await publish(redis, workers, { kind: 'progress', jobId: 'spawn-2', reply, text: 'waiting for EC2', percent: 70 });
    await publish(redis, workers, {
      kind: 'result',
      jobId: 'spawn-2',
      reply,
      ok: false,
      text: 'failed at step apply: quota',
    });
    const posted = await standIn.waitForCall(
      (c) => c.method === 'POST' && c.path === `/channels/${OPS_CHANNEL}/messages`,
    );
    expect(content(posted)).toBe('❌ `spawn-2` failed at step apply: quota');
    expect(posted.auth).toMatch(/^Bot /);
    expect(standIn.calls.filter((c) => c.method === 'PATCH' && c.path.includes(token)).length).toBe(editsBefore);
    expect(standIn.channelMessages(OPS_CHANNEL)).toHaveLength(1);
  });

  it('a deleted progress message: the result goes to the channel, exactly once with two relays racing', async () => {
    const { interactionId, tokens } = await start(60_000);
    const reply = { channelId: OPS_CHANNEL, interactionId };
    await publish(redis, workers, { kind: 'progress', jobId: 'spawn-5', reply, text: 'apply', percent: 40 });
    await standIn.waitForCall((c) => c.method === 'PATCH' && content(c).includes('apply'));
    // Someone deletes the reply the job's progress was editing.
    const original = standIn.responsesFor(interactionId).original as MessageRecord;
    original.deleted = true;
    // A second gateway with its own REST client (another host); both get the result, as when
    // one took the event over from the other after it posted and died before acknowledging.
    const other = new REST({ api: standIn.apiUrl }).setToken(TOKEN);
    const event = verified({
      kind: 'result',
      jobId: 'spawn-5',
      reply,
      ok: false,
      text: 'clawdinator-5: apply failed: Error: quota',
      at: Date.now(),
    });
    const outcomes = await Promise.all([
      renderToDiscord(event, renderOptions({ rest: gateway.client.rest, tokens })),
      renderToDiscord(event, renderOptions({ rest: other, tokens, consumer: 'b' })),
    ]);
    expect(outcomes).toEqual(['posted', 'posted']);
    const posted = standIn.channelMessages(OPS_CHANNEL);
    expect(posted.map((m) => m.content)).toEqual(['❌ `spawn-5` clawdinator-5: apply failed: Error: quota']);
    const posts = standIn.calls.filter((c) => c.method === 'POST' && c.path === `/channels/${OPS_CHANNEL}/messages`);
    expect(posts).toHaveLength(2);
    for (const post of posts) {
      expect(post.body).toMatchObject({ enforce_nonce: true, allowed_mentions: { parse: [] } });
      expect(String((post.body as { nonce: string }).nonce).length).toBeLessThanOrEqual(25);
    }
    const nonces = posts.map((p) => (p.body as { nonce: string }).nonce);
    expect(nonces[0]).toBe(nonces[1]);
    // Through the stream as well: the result of another job, its reply deleted, lands once.
    await publish(redis, workers, { kind: 'result', jobId: 'spawn-6', reply, ok: true, text: 'clawdinator-6 online' });
    await standIn.waitForCall((c) => c.method === 'POST' && content(c).includes('clawdinator-6 online'));
    expect(standIn.channelMessages(OPS_CHANNEL)).toHaveLength(2);
  });

  it('an expired token (401, 50027) still in the token store: the result is posted to the channel', async () => {
    const { interactionId } = await start(60_000);
    standIn.expireInteraction(interactionId);
    const reply = { channelId: OPS_CHANNEL, interactionId };
    await publish(redis, workers, { kind: 'progress', jobId: 'spawn-7', reply, text: 'apply', percent: 40 });
    await publish(redis, workers, { kind: 'result', jobId: 'spawn-7', reply, ok: true, text: 'clawdinator-7 online' });
    const posted = await standIn.waitForCall((c) => c.method === 'POST' && content(c).includes('clawdinator-7'));
    expect(content(posted)).toBe('✅ `spawn-7` clawdinator-7 online');
    // The progress is not posted: a channel should not fill with progress bars.
    expect(standIn.channelMessages(OPS_CHANNEL).map((m) => m.content)).toEqual([content(posted)]);
  });

  it("an agent's request whose question was deleted: the result goes to the ops channel", async () => {
    const { tokens } = await start(60_000);
    const messages = new JobMessages(redis, gatewaySigner);
    const question = await gateway.client.rest.post(Routes.channelMessages(OPS_CHANNEL), {
      body: { content: '❓ clawdinator-2 asks to retire clawdinator-4' },
    });
    const questionId = (question as { id: string }).id;
    await messages.save('retire-agent-1', { channelId: OPS_CHANNEL, messageId: questionId });
    await messages.answered('retire-agent-1');
    (standIn.message(questionId) as MessageRecord).deleted = true;
    const outcome = await renderToDiscord(
      verified({
        kind: 'result',
        jobId: 'retire-agent-1',
        reply: { channelId: OPS_CHANNEL },
        ok: true,
        text: 'clawdinator-4 retired',
        at: Date.now(),
      }),
      renderOptions({ rest: gateway.client.rest, tokens, messages }),
    );
    expect(outcome).toBe('posted');
    expect(
      standIn
        .channelMessages(OPS_CHANNEL)
        .filter((m) => !m.deleted)
        .map((m) => m.content),
    ).toEqual(['✅ `retire-agent-1` clawdinator-4 retired']);
  });

  it('a forged, moved or unsigned token or question record is never used: the result is posted, nothing overwritten', async () => {
    const { tokens, interactionId: theirs, token: theirToken } = await start(60_000);
    const messages = new JobMessages(redis, gatewaySigner);
    const result = (jobId: string, interactionId?: string) =>
      verified({
        kind: 'result',
        jobId,
        reply: { channelId: OPS_CHANNEL, ...(interactionId ? { interactionId } : {}) },
        ok: true,
        text: `${jobId} done`,
        at: Date.now(),
      });
    // A job's reply names interaction 5001; a Redis writer puts under it the token of an
    // interaction they hold: bare, and as the gateway's signed record of theirs, moved.
    const signedTheirs = (await redis.get(keys.interactionToken(theirs))) as string;
    await redis.set(keys.interactionToken('5001'), JSON.stringify({ appId: standIn.appId, token: theirToken }));
    await redis.set(keys.interactionToken('5002'), signedTheirs);
    // A question record pointing at another of the bot's messages: unsigned, and signed for another job.
    const other = (await gateway.client.rest.post(Routes.channelMessages(OPS_CHANNEL), {
      body: { content: 'keep me' },
    })) as { id: string };
    await redis.set(
      keys.jobMessage('retire-agent-5'),
      JSON.stringify({ channelId: OPS_CHANNEL, messageId: other.id, answered: true }),
    );
    await messages.save('retire-agent-9', { channelId: OPS_CHANNEL, messageId: other.id });
    await redis.set(keys.jobMessage('retire-agent-6'), (await redis.get(keys.jobMessage('retire-agent-9'))) as string);
    expect(await tokens.get('5001')).toBeNull();
    expect(await tokens.get('5002')).toBeNull();
    expect(await tokens.get(theirs)).toEqual({ appId: standIn.appId, token: theirToken });
    expect(await messages.get('retire-agent-5')).toBeNull();
    expect(await messages.get('retire-agent-6')).toBeNull();

    const before = standIn.calls.length;
    for (const event of [
      result('spawn-5', '5001'),
      result('spawn-6', '5002'),
      result('retire-agent-5'),
      result('retire-agent-6'),
    ]) {
      expect(await renderToDiscord(event, renderOptions({ rest: gateway.client.rest, tokens, messages }))).toBe(
        'posted',
      );
    }
    const calls = standIn.calls.slice(before);
    expect(calls.filter((c) => c.path.includes(theirToken))).toEqual([]);
    expect(calls.filter((c) => c.method === 'PATCH')).toEqual([]);
    expect(standIn.message(other.id)?.content).toBe('keep me');
    expect(
      standIn
        .channelMessages(OPS_CHANNEL)
        .map((m) => m.content)
        .filter((c) => c.includes(' done')),
    ).toEqual([
      '✅ `spawn-5` spawn-5 done',
      '✅ `spawn-6` spawn-6 done',
      '✅ `retire-agent-5` retire-agent-5 done',
      '✅ `retire-agent-6` retire-agent-6 done',
    ]);
  });

  it('the same interaction delivered twice is handled once (claimed in Redis)', async () => {
    await start(60_000);
    const claim = redisClaim(redis);
    expect(await claim('999')).toBe(true);
    expect(await claim('999')).toBe(false);
  });

  it('drops and logs what does not verify, with no Discord call: unsigned, an agent’s, moved, replayed', async () => {
    await start(60_000);
    const before = standIn.calls.length;
    const posted = (text: string): EventInput => ({
      kind: 'result',
      jobId: 'spawn-7',
      reply: { channelId: OPS_CHANNEL },
      ok: true,
      text,
    });
    const add = (value: string) => redis.xadd(keys.events, '*', 'event', value);
    // The pre-signing shape, and the signed shape without a signature.
    await add(JSON.stringify({ kind: 'result', text: 'unsigned', at: Date.now(), reply: { channelId: OPS_CHANNEL } }));
    const valid = JSON.parse(signEvent(workers, posted('valid')));
    await add(JSON.stringify({ event: valid.event, keyId: 'schedule' }));
    // Signed by an agent's key; by a key that is not the workers' but claims to be.
    await add(signEvent(agent, posted('from an agent')));
    await add(signEvent({ keyId: 'schedule', key: keyPair().privateKey }, posted('from a stranger')));
    // The gateway may publish a cancel's result, nothing else.
    await add(signEvent(gatewaySigner, { kind: 'alert', text: 'from the gateway' }));
    // A worker's signed event, moved to another channel, and to another job.
    const moved = JSON.parse(signEvent(workers, posted('moved')));
    await add(JSON.stringify({ ...moved, event: { ...moved.event, reply: { channelId: OTHER_CHANNEL } } }));
    await add(JSON.stringify({ ...moved, event: { ...moved.event, jobId: 'retire-8' } }));
    // A worker's signed event, rendered once, then added again as it was.
    const once = signEvent(workers, posted('rendered once'));
    await add(once);
    await add(once);
    await publish(redis, workers, posted('the last one'));
    await standIn.waitForCall((c) => content(c).includes('the last one'));
    const made = standIn.calls.slice(before);
    expect(made.map((c) => content(c))).toEqual(['✅ `spawn-7` rendered once', '✅ `spawn-7` the last one']);
    expect(standIn.channelMessages(OTHER_CHANNEL)).toEqual([]);
    const dropped = logLines.filter((l) => l.includes('relay: event dropped')).map((l) => JSON.parse(l).reason);
    expect(dropped).toEqual([
      'unsigned or malformed',
      'unsigned or malformed',
      'agent:clawdinator-2 may not publish events',
      'bad signature',
      'gateway may not publish alert',
      'bad signature',
      'bad signature',
      'replayed',
    ]);
  });

  it('a question’s buttons come only from its job’s signed pending record', async () => {
    await start(60_000);
    const expiresAt = Math.floor(Date.now() / 1000) + 600;
    const question = (jobId: string): EventInput => ({
      kind: 'confirm',
      jobId,
      type: 'retire',
      reply: { channelId: OPS_CHANNEL },
      text: `clawdinator-1 asks to retire **clawdinator-3** (${jobId})`,
    });
    const record = (jobId: string, over: Partial<Pending> = {}): Pending => ({
      jobId,
      requestId: jobId.slice('retire-'.length),
      action: 'retire',
      name: 'clawdinator-3',
      askedBy: 'clawdinator-1',
      permission: 'retire',
      channelId: OPS_CHANNEL,
      expiresAt,
      buttons: [
        {
          id: approvalButtonId({ action: 'retire', decision: 'confirm', jobId, expiresAt }),
          label: 'Retire clawdinator-3',
          style: 'danger',
        },
        {
          id: approvalButtonId({ action: 'retire', decision: 'cancel', jobId, expiresAt }),
          label: 'Cancel',
          style: 'secondary',
        },
      ],
      ...over,
    });
    // No record; a record signed by another key; a worker's record whose button is the human
    // flow's (`retire:confirm:<name>:<user>:<expiry>`, labelled to mislead); one for another
    // channel; and the real one.
    await writePending(redis, { keyId: 'schedule', key: keyPair().privateKey }, record('retire-a2'));
    const humanFlow = `retire:confirm:clawdinator-1:${ALICE}:${expiresAt}`;
    await writePending(
      redis,
      workers,
      record('retire-a3', { buttons: [{ id: humanFlow, label: 'Acknowledge', style: 'primary' }] }),
    );
    await writePending(redis, workers, record('retire-a4', { channelId: OTHER_CHANNEL }));
    await writePending(redis, workers, record('retire-a5'));
    for (const id of ['retire-a1', 'retire-a2', 'retire-a3', 'retire-a4', 'retire-a5']) {
      await publish(redis, workers, question(id));
    }
    await standIn.waitForCall((c) => content(c).includes('retire-a5'));
    const messages = standIn.channelMessages(OPS_CHANNEL);
    const ids = (m: (typeof messages)[number]) =>
      (m.components as { components: { custom_id: string }[] }[]).flatMap((r) => r.components.map((b) => b.custom_id));
    expect(messages.map((m) => [m.content.match(/retire-a\d/)?.[0], ids(m)])).toEqual([
      ['retire-a1', []],
      ['retire-a2', []],
      ['retire-a3', []],
      ['retire-a4', []],
      ['retire-a5', record('retire-a5').buttons.map((b) => b.id)],
    ]);
    expect(JSON.stringify(standIn.calls)).not.toContain(humanFlow);
  });
});
