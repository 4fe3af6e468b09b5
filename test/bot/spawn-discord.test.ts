import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { commands } from '../../bot/commands/index.js';
import { attachmentOriginsFor, type Gateway, startGateway } from '../../bot/discord/gateway.js';
import { createDispatcher } from '../../bot/dispatch.js';
import { botJobs, redisClaim, TokenStore } from '../../bot/engine.js';
import { startRelay } from '../../bot/relay.js';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';
import { ALICE, botDeps, GUILD, OPERATOR_ROLE, OPS_CHANNEL, policy } from '../support/bot.js';
import { DiscordStandIn, type RestCall } from '../support/discord-standin.js';
import { simFleet } from '../support/fleet.js';
import { keyPair, lifecycleSettings } from '../support/jobs.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const TOKEN = 'spawn-test-bot-token';
let server: TestRedis;
const closers: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  server = await startRedis();
});
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});
afterAll(async () => {
  await server.stop();
});

describe('/spawn through Discord', () => {
  it('the reply shows progress edits, then "online"; the new member is in the registry', async () => {
    const redis = server.client();
    const conn = { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null };
    const { cloud, registry, memory, fleet, close } = simFleet(redis);
    closers.push(close);
    const types = new JobTypes(
      jobTypes({ redis, registry: async () => (await registry.read()).registry, memory, fleet }),
    );
    const gatewayKey = keyPair();
    const worker = startWorker(
      FLEET_QUEUE,
      {
        connection: conn,
        redis: server.client(),
        types,
        publicKey: async (id) => (id === 'gateway' ? gatewayKey.publicKey : null),
        policy: { policy, redis, agentRequestsPerHour: 3 },
        log: createLogger('silent'),
      },
      lifecycleSettings,
    );
    closers.push(() => worker.close());

    const standIn = new DiscordStandIn({
      token: TOKEN,
      guilds: [{ id: GUILD, channels: [{ id: OPS_CHANNEL }], roles: [{ id: OPERATOR_ROLE }] }],
    });
    await standIn.start();
    closers.push(() => standIn.stop());
    const deps = await botDeps();
    const enqueuer = new Enqueuer(conn, server.client(), types, { keyId: 'gateway', key: gatewayKey.privateKey });
    closers.push(() => enqueuer.close());
    deps.jobs = botJobs(enqueuer);
    const tokens = new TokenStore(redis);
    const gateway: Gateway = await startGateway({
      token: TOKEN,
      apiUrl: standIn.apiUrl,
      dispatcher: createDispatcher(commands, deps, redisClaim(redis)),
      attachmentOrigins: attachmentOriginsFor(standIn.apiUrl),
      log: deps.log,
      tokens,
    });
    closers.push(() => gateway.stop(500));
    const relay = startRelay({
      redis: server.client(),
      rest: gateway.client.rest,
      tokens,
      consumer: 'test',
      log: deps.log,
      blockMs: 100,
    });
    closers.push(() => relay.stop());

    const i = standIn.injectCommand({
      name: 'spawn',
      user: { id: ALICE, username: 'alice' },
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
      options: [{ type: 3, name: 'name', value: 'clawdinator-3' }],
    });
    const content = (c: RestCall) => (c.body as { content?: string }).content ?? '';
    const edits = (c: RestCall) => c.method === 'PATCH' && c.path.includes(i.token);
    const done = await standIn.waitForCall((c) => edits(c) && content(c).startsWith('✅'), 30_000);
    expect(content(done)).toMatch(
      /^✅ `spawn-\d+` clawdinator-3 online: i-[0-9a-f]+, ami-00000000000000a11, 10\.0\.\d+\.\d+, in \d+s/,
    );
    const progress = standIn.calls.filter((c) => edits(c) && content(c).startsWith('⏳'));
    expect(progress.length).toBeGreaterThan(3);
    expect(progress.map(content).join('\n')).toContain('apply');
    expect(Object.keys((await registry.read()).registry)).toEqual(['clawdinator-1', 'clawdinator-3']);
    expect((await cloud.listFleetInstances()).filter((x) => x.name === 'clawdinator-3')).toHaveLength(1);
    // The bot's token and the agent's private key never went anywhere near Discord.
    const sent = JSON.stringify(standIn.calls.map((c) => c.body));
    expect(sent).not.toContain(TOKEN);
    expect(sent).not.toContain('PRIVATE KEY');
  });
});
