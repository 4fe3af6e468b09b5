// /jobs through the console adapter, on a real Redis with the real worker and admin code.
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commands } from '../../../bot/commands/index.js';
import { ConsoleSession } from '../../../bot/console/adapter.js';
import { createDispatcher } from '../../../bot/dispatch.js';
import { botJobAdmin } from '../../../bot/engine.js';
import { JobAdmin } from '../../../jobs/engine/admin.js';
import { FLEET_QUEUE } from '../../../jobs/engine/keys.js';
import { ALICE, actor, botDeps, GUILD, OPERATOR_ROLE, OPS_CHANNEL, READER_ROLE } from '../../support/bot.js';
import { enqueuer, fastSettings, harness, setEffectsClient, startWorker } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

let server: TestRedis;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});

describe('/jobs', () => {
  it('lists jobs, shows one, retries a failed one as a new request, cancels', async () => {
    const conn = { host: '127.0.0.1', port: server.port };
    const redis = server.client();
    setEffectsClient(redis);
    const h = harness();
    const policy = { '*': { guilds: [GUILD], channels: [OPS_CHANNEL], roles: [OPERATOR_ROLE], users: [] } };
    const worker = startWorker(FLEET_QUEUE, h.deps(server.client(), conn, policy), fastSettings);
    const q = enqueuer(server.client(), conn, h.types, h.gateway);
    const admin = new JobAdmin(conn, server.client(), () => [FLEET_QUEUE], h.types, {
      publicKey: async (id) => h.keys[id] ?? null,
    });
    const deps = await botDeps();
    deps.policy = policy;
    deps.jobAdmin = botJobAdmin(q, admin, policy);
    const out: string[] = [];
    const session = new ConsoleSession(createDispatcher(commands, deps), actor(), (t) => out.push(t));
    const reader = {
      kind: 'discord' as const,
      userId: ALICE,
      userName: 'alice',
      roles: [READER_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
    };
    const { jobId } = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 0 },
      principal: reader,
      requestId: 'denied-1',
    });
    const queue = new Queue(FLEET_QUEUE, { connection: conn });
    while ((await queue.getJobState(jobId)) !== 'failed') await new Promise((r) => setTimeout(r, 50));

    const listed = await session.run('/jobs list filter:failed');
    expect(listed, out.join('\n')).toBe(true);
    expect(out.join('\n')).toContain(`failed    ${jobId}  by alice (Discord ${ALICE}) · rejected: not allowed`);
    expect(await session.run(`/jobs show id:${jobId}`)).toBe(true);
    // Type, target, who asked and when, and whether that claim verifies.
    expect(out.at(-1)).toContain(
      `two-step of clawdinator-3, asked by alice (Discord ${ALICE}) at ${new Date().toISOString().slice(0, 10)}`,
    );
    expect(out.at(-1)).toContain('; signature verified');
    expect(await session.run(`/jobs retry id:${jobId}`)).toBe(true);
    const retried = /Retrying as `([^`]+)`/.exec(out.join('\n'))?.[1] as string;
    while ((await queue.getJobState(retried)) !== 'completed') await new Promise((r) => setTimeout(r, 50));
    expect(await session.run('/jobs cancel id:two-step-nothing-here')).toBe(true);
    expect(out.at(-1)).toContain('does not exist');
    expect(await session.run('/jobs show id:../../etc')).toBe(false);
    await queue.close();
    await admin.close();
    await q.close();
    await worker.close();
  });
});
