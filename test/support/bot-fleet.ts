// The bot over a lifecycle harness (test/support/lifecycle.ts): its commands queue jobs signed
// by the gateway, which the real worker runs against the simulated fleet. Through the console
// adapter, or through the real discord.js gateway against the loopback Discord stand-in, with
// the relay posting the jobs' progress back.
import type { KeyObject } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { beforeEach } from 'vitest';
import { commands } from '../../bot/commands/index.js';
import { ConsoleSession } from '../../bot/console/adapter.js';
import { attachmentOriginsFor, type Gateway, startGateway } from '../../bot/discord/gateway.js';
import { createDispatcher } from '../../bot/dispatch.js';
import { botJobAdmin, botJobs, JobMessages, redisClaim, TokenStore } from '../../bot/engine.js';
import { startRelay } from '../../bot/relay.js';
import type { BotDeps } from '../../bot/types.js';
import type { SimCloud } from '../../jobs/cloud/sim.js';
import { JobAdmin } from '../../jobs/engine/admin.js';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import type { EventTrust } from '../../jobs/engine/notify.js';
import type { FileRegistryStore } from '../../jobs/registry/file.js';
import { actor, BOB, botDeps, GUILD, OPERATOR_ROLE, OPS_CHANNEL, policy } from './bot.js';
import { DiscordStandIn } from './discord-standin.js';
import { testWorkersKey } from './jobs.js';
import { type Lifecycle, lifecycleSuite } from './lifecycle.js';
import type { TestRedis } from './redis.js';

export interface ConsoleBot {
  /** alice, an operator in the ops channel, and bob, another operator. */
  alice: ConsoleSession;
  bob: ConsoleSession;
  /** What either was shown, line by line. */
  printed: string[];
}

/** The public keys the harness's worker knows, for what verifies jobs outside it (/jobs). */
export function harnessKeys(h: Lifecycle): (keyId: string) => Promise<KeyObject | null> {
  const known: Record<string, KeyObject> = {
    'operator:ops': h.keys.operator.publicKey,
    'agent:clawdinator-1': h.keys.agent.publicKey,
    gateway: h.keys.gateway.publicKey,
  };
  return async (keyId) => known[keyId] ?? null;
}

/**
 * `now`: the bot's clock (a confirmation's expiry is checked against it). /jobs works on the
 * harness's fleet queue, verifying with the keys its worker knows; `close` closes its admin.
 */
export async function consoleBot(
  h: Lifecycle,
  redis: Redis,
  now: () => Date,
): Promise<ConsoleBot & { close(): Promise<void> }> {
  const deps = await botDeps();
  const enqueuer = h.enqueuer('gateway');
  deps.jobs = botJobs(enqueuer);
  const admin = new JobAdmin(h.queue.opts.connection as RedisOptions, redis, () => [FLEET_QUEUE], h.types, {
    publicKey: harnessKeys(h),
  });
  deps.jobAdmin = botJobAdmin(enqueuer, admin, deps.policy);
  deps.now = now;
  const dispatcher = createDispatcher(commands, deps);
  const printed: string[] = [];
  return {
    alice: new ConsoleSession(dispatcher, actor(), (t) => printed.push(t)),
    bob: new ConsoleSession(dispatcher, actor({ userId: BOB, userName: 'bob' }), (t) => printed.push(t)),
    printed,
    close: () => admin.close(),
  };
}

export interface ConsoleWorld extends ConsoleBot {
  cloud: SimCloud;
  registry: FileRegistryStore;
  /** The fleet queue the bot's jobs go to. */
  queue: Queue;
}

/**
 * Registers the hooks of a console test file: for each test, a fleet of clawdinator-1 and
 * clawdinator-3 (both running, their workers beating), the worker under the bot's policy,
 * and the console sessions on the clock `now`.
 */
export function consoleSuite(now: () => Date): { readonly world: ConsoleWorld } {
  const suite = lifecycleSuite({ members: ['clawdinator-1', 'clawdinator-3'], tokens: [] });
  let world: ConsoleWorld | undefined;
  beforeEach(async () => {
    const h = suite.harness({ policy });
    const { cloud, registry } = suite.sim;
    const bot = await consoleBot(h, suite.redis, now);
    suite.defer(() => bot.close());
    world = { cloud, registry, queue: h.queue, ...bot };
  });
  return {
    get world() {
      if (world === undefined) throw new Error('the console world is only there inside a test');
      return world;
    },
  };
}

/** What the relay believes in these tests: the workers', the gateway's and the operator's keys. */
export function relayTrust(h: Lifecycle): EventTrust {
  const known: Record<string, KeyObject> = {
    schedule: testWorkersKey,
    gateway: h.keys.gateway.publicKey,
    'operator:ops': h.keys.operator.publicKey,
  };
  return { publicKey: async (keyId) => known[keyId] ?? null };
}

export interface DiscordBot {
  standIn: DiscordStandIn;
  gateway: Gateway;
  deps: BotDeps;
  /** Stops the relay, the gateway and the stand-in. */
  close(): Promise<void>;
}

/**
 * A guild with the ops channel and the operator role. `approvals`: the gateway answers agents'
 * confirmation questions (it signs the presses, the relay keeps the questions' messages) on
 * the real clock, which their expiry is checked against.
 */
export async function discordBot(
  server: TestRedis,
  redis: Redis,
  h: Lifecycle,
  options: { token: string; approvals?: boolean },
): Promise<DiscordBot> {
  const stops: (() => Promise<void> | void)[] = [];
  const close = async () => {
    for (const stop of stops.reverse()) await stop();
    stops.length = 0;
  };
  try {
    const standIn = new DiscordStandIn({
      token: options.token,
      guilds: [{ id: GUILD, channels: [{ id: OPS_CHANNEL }], roles: [{ id: OPERATOR_ROLE }] }],
    });
    await standIn.start();
    stops.push(() => standIn.stop());
    const deps = await botDeps();
    if (options.approvals) deps.now = () => new Date();
    const enqueuer = h.enqueuer('gateway');
    deps.jobs = options.approvals
      ? botJobs(enqueuer, { redis, signer: h.signers.gateway, workersKey: testWorkersKey })
      : botJobs(enqueuer);
    const tokens = new TokenStore(redis, h.signers.gateway);
    const gateway = await startGateway({
      token: options.token,
      apiUrl: standIn.apiUrl,
      dispatcher: createDispatcher(commands, deps, redisClaim(redis)),
      attachmentOrigins: attachmentOriginsFor(standIn.apiUrl),
      log: deps.log,
      tokens,
    });
    stops.push(() => gateway.stop(500));
    const relay = startRelay({
      redis: server.client(),
      trust: relayTrust(h),
      workersKey: testWorkersKey,
      rest: gateway.client.rest,
      tokens,
      ...(options.approvals ? { messages: new JobMessages(redis, h.signers.gateway) } : {}),
      consumer: 'test',
      log: deps.log,
      blockMs: 100,
    });
    stops.push(() => relay.stop());
    return { standIn, gateway, deps, close };
  } catch (err) {
    await close();
    throw err;
  }
}
