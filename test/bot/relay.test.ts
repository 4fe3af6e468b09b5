// Workers' events reach Discord through the relay: the deferred reply is edited with
// progress and the result while the interaction token lives; after it expires (a shortened
// clock here), the result is posted to the channel instead.
import { REST, Routes } from 'discord.js';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { commands } from '../../bot/commands/index.js';
import { attachmentOriginsFor, type Gateway, startGateway } from '../../bot/discord/gateway.js';
import { createDispatcher } from '../../bot/dispatch.js';
import { JobMessages, redisClaim, TokenStore } from '../../bot/engine.js';
import { renderToDiscord, startRelay } from '../../bot/relay.js';
import { publish } from '../../jobs/engine/notify.js';
import { createLogger } from '../../lib/log.js';
import { ALICE, botDeps, GUILD, OPERATOR_ROLE, OPS_CHANNEL } from '../support/bot.js';
import { DiscordStandIn, type MessageRecord, type RestCall } from '../support/discord-standin.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const TOKEN = 'relay-test-bot-token';
let server: TestRedis;
let redis: Redis;
let standIn: DiscordStandIn;
let gateway: Gateway;
let stopRelay: (() => Promise<void>) | undefined;

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  standIn = new DiscordStandIn({
    token: TOKEN,
    guilds: [{ id: GUILD, channels: [{ id: OPS_CHANNEL }], roles: [{ id: OPERATOR_ROLE }] }],
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
  const tokens = new TokenStore(redis, tokenTtlMs);
  gateway = await startGateway({
    token: TOKEN,
    apiUrl: standIn.apiUrl,
    dispatcher: createDispatcher(commands, deps, redisClaim(redis)),
    attachmentOrigins: attachmentOriginsFor(standIn.apiUrl),
    log: deps.log,
    tokens,
  });
  const relay = startRelay({
    redis: server.client(),
    rest: gateway.client.rest,
    tokens,
    consumer: 'test-gateway',
    log: deps.log,
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

const content = (c: RestCall) => (c.body as { content?: string }).content ?? '';

describe('relay', () => {
  it('edits the reply with progress, then the result', async () => {
    const { interactionId, token } = await start(60_000);
    const reply = { channelId: OPS_CHANNEL, interactionId };
    const started = Date.now() - 65_000;
    await publish(redis, { kind: 'progress', jobId: 'spawn-1', reply, text: 'apply', percent: 40, startedAt: started });
    const progress = await standIn.waitForCall(
      (c) => c.method === 'PATCH' && c.path.includes(token) && content(c).includes('apply'),
    );
    expect(content(progress)).toMatch(/⏳ `spawn-1`\n▰{5}▱{7} 40%\napply · 1m 0[5-6]s/);
    expect(progress.auth).toBeUndefined();
    await publish(redis, {
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
    await publish(redis, { kind: 'progress', jobId: 'spawn-2', reply, text: 'waiting for EC2', percent: 70 });
    await publish(redis, { kind: 'result', jobId: 'spawn-2', reply, ok: false, text: 'failed at step apply: quota' });
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
    await publish(redis, { kind: 'progress', jobId: 'spawn-5', reply, text: 'apply', percent: 40 });
    await standIn.waitForCall((c) => c.method === 'PATCH' && content(c).includes('apply'));
    // Someone deletes the reply the job's progress was editing.
    const original = standIn.responsesFor(interactionId).original as MessageRecord;
    original.deleted = true;
    // A second gateway with its own REST client (another host); both get the result, as when
    // one took the event over from the other after it posted and died before acknowledging.
    const other = new REST({ api: standIn.apiUrl }).setToken(TOKEN);
    const event = {
      kind: 'result' as const,
      jobId: 'spawn-5',
      reply,
      ok: false,
      text: 'clawdinator-5: apply failed: Error: quota',
      at: Date.now(),
    };
    const log = createLogger('silent');
    const outcomes = await Promise.all([
      renderToDiscord(event, { redis, rest: gateway.client.rest, tokens, consumer: 'a', log }),
      renderToDiscord(event, { redis, rest: other, tokens, consumer: 'b', log }),
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
    await publish(redis, { kind: 'result', jobId: 'spawn-6', reply, ok: true, text: 'clawdinator-6 online' });
    await standIn.waitForCall((c) => c.method === 'POST' && content(c).includes('clawdinator-6 online'));
    expect(standIn.channelMessages(OPS_CHANNEL)).toHaveLength(2);
  });

  it('an expired token (401, 50027) still in the token store: the result is posted to the channel', async () => {
    const { interactionId } = await start(60_000);
    standIn.expireInteraction(interactionId);
    const reply = { channelId: OPS_CHANNEL, interactionId };
    await publish(redis, { kind: 'progress', jobId: 'spawn-7', reply, text: 'apply', percent: 40 });
    await publish(redis, { kind: 'result', jobId: 'spawn-7', reply, ok: true, text: 'clawdinator-7 online' });
    const posted = await standIn.waitForCall((c) => c.method === 'POST' && content(c).includes('clawdinator-7'));
    expect(content(posted)).toBe('✅ `spawn-7` clawdinator-7 online');
    // The progress is not posted: a channel should not fill with progress bars.
    expect(standIn.channelMessages(OPS_CHANNEL).map((m) => m.content)).toEqual([content(posted)]);
  });

  it("an agent's request whose question was deleted: the result goes to the ops channel", async () => {
    const { tokens } = await start(60_000);
    const messages = new JobMessages(redis);
    const question = await gateway.client.rest.post(Routes.channelMessages(OPS_CHANNEL), {
      body: { content: '❓ clawdinator-2 asks to retire clawdinator-4' },
    });
    const questionId = (question as { id: string }).id;
    await messages.save('retire-agent-1', { channelId: OPS_CHANNEL, messageId: questionId });
    await messages.answered('retire-agent-1');
    (standIn.message(questionId) as MessageRecord).deleted = true;
    const outcome = await renderToDiscord(
      {
        kind: 'result',
        jobId: 'retire-agent-1',
        reply: { channelId: OPS_CHANNEL },
        ok: true,
        text: 'clawdinator-4 retired',
        at: Date.now(),
      },
      { redis, rest: gateway.client.rest, tokens, messages, consumer: 'a', log: createLogger('silent') },
    );
    expect(outcome).toBe('posted');
    expect(
      standIn
        .channelMessages(OPS_CHANNEL)
        .filter((m) => !m.deleted)
        .map((m) => m.content),
    ).toEqual(['✅ `retire-agent-1` clawdinator-4 retired']);
  });

  it('the same interaction delivered twice is handled once (claimed in Redis)', async () => {
    await start(60_000);
    const claim = redisClaim(redis);
    expect(await claim('999')).toBe(true);
    expect(await claim('999')).toBe(false);
  });
});
