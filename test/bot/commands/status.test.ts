// /status through the console adapter and the real dispatcher, over the simulated cloud and a
// real Redis: a failing SSM call loses only SSM, and name autocomplete never waits on the cloud.
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { commands } from '../../../bot/commands/index.js';
import { ConsoleSession } from '../../../bot/console/adapter.js';
import { createDispatcher } from '../../../bot/dispatch.js';
import type { Choice, Responder } from '../../../bot/types.js';
import type { FleetRegistry } from '../../../infra/registry.js';
import { ManualClock } from '../../../jobs/cloud/clock.js';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../../jobs/cloud/sim.js';
import { fleetStatus } from '../../../jobs/status.js';
import { actor, botDeps, GUILD, OPERATOR_ROLE, OPS_CHANNEL } from '../../support/bot.js';
import { testWorkersKey, writeHeartbeat } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

let server: TestRedis;
let redis: Redis;
let queue: Queue;
let sim: SimCloud;

const registry: FleetRegistry = Object.fromEntries(
  ['clawdinator-1', 'clawdinator-2'].map((n) => [
    n,
    {
      host: n,
      instanceType: 't3.large',
      bootstrapPrefix: `bootstrap/${n}`,
      discordTokenSecret: `clawdinator/discord-token/${n}`,
      ami: 'ami-0123456789abcdef0',
    },
  ]),
);

beforeAll(async () => {
  server = await startRedis();
  redis = server.client();
  queue = new Queue('clawdinator-fleet', { connection: { host: '127.0.0.1', port: server.port } });
});
afterAll(async () => {
  await queue.close();
  await server.stop();
});
beforeEach(async () => {
  await redis.flushall();
  sim?.close();
  sim = createSimCloud({
    clock: new ManualClock({ auto: true }),
    timings: instantSimTimings,
    amis: [{ name: 'base', imageId: 'ami-0123456789abcdef0' }],
    fleet: [{ name: 'clawdinator-1' }, { name: 'clawdinator-2' }],
  });
});

async function session(cloud: Pick<SimCloud, 'listFleetInstances' | 'pingStatus' | 'findLatestAmi'> = sim) {
  const deps = await botDeps();
  deps.policy = { status: { guilds: [GUILD], channels: [OPS_CHANNEL], roles: [OPERATOR_ROLE], users: [] } };
  deps.status = () =>
    fleetStatus({ registry: async () => registry, cloud, redis, workersKey: testWorkersKey, queues: [queue] });
  deps.fleetNames = async () => Object.keys(registry);
  const out: string[] = [];
  const dispatcher = createDispatcher(commands, deps);
  return { out, dispatcher, console: new ConsoleSession(dispatcher, actor(), (t) => out.push(t)) };
}

describe('/status', () => {
  it('SSM denied: EC2 and heartbeats are shown, SSM is marked unavailable with its cause', async () => {
    const [first] = await sim.listFleetInstances();
    // Signed with the workers' key, as a worker writes it: /status verifies every heartbeat.
    await writeHeartbeat(redis, {
      host: 'clawdinator-1',
      instanceId: first?.instanceId as string,
      version: '0.1.0',
      revision: 'abc123',
    });
    sim.faults.arm('ssm', { code: 'AccessDeniedException', times: 2 });
    const s = await session();
    expect(await s.console.run('/status'), s.out.join('\n')).toBe(true);
    const fleet = s.out.join('\n');
    expect(fleet).toContain('⚠️ SSM: unavailable (AccessDeniedException on DescribeInstanceInformation)');
    expect(fleet).toContain(`🟢 clawdinator-1  online  ${first?.instanceId}`);
    expect(fleet).toContain('(partial: a source did not answer)');
    expect(fleet).not.toMatch(/unreachable|Something went wrong/);
    s.out.length = 0;
    expect(await s.console.run('/status name:clawdinator-1')).toBe(true);
    const detail = s.out.join('\n');
    expect(detail).toContain(`instance: ${first?.instanceId} (running)`);
    expect(detail).toContain('SSM: unavailable (AccessDeniedException on DescribeInstanceInformation)');
    expect(detail).toContain('worker: v0.1.0 rev abc123');
  });

  it('name autocomplete answers from the registry alone: a cloud that never answers is not asked', async () => {
    let asked = 0;
    const hanging = {
      listFleetInstances: () => {
        asked++;
        return new Promise<never>(() => {});
      },
      pingStatus: () => {
        asked++;
        return new Promise<never>(() => {});
      },
      findLatestAmi: () => {
        asked++;
        return new Promise<never>(() => {});
      },
    };
    const s = await session(hanging);
    let choices: Choice[] | undefined;
    const res = {
      acknowledged: false,
      autocomplete: async (c: Choice[]) => {
        choices = c;
      },
    } as unknown as Responder;
    await s.dispatcher.handle(
      {
        kind: 'autocomplete',
        id: 'autocomplete-1',
        actor: actor(),
        command: 'status',
        focused: { name: 'name', value: '-2' },
      },
      res,
    );
    expect(choices).toEqual([{ name: 'clawdinator-2', value: 'clawdinator-2' }]);
    expect(asked).toBe(0);
    expect(sim.calls.ec2 + sim.calls.ssm).toBe(0);
  });
});
