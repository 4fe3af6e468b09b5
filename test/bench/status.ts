// Bench row of /status: the whole fleet status (registry, EC2, SSM, heartbeats, queues) over
// a simulated 500-instance fleet and a real Redis, with the calls each service received.
import { Queue } from 'bullmq';
import type { FleetRegistry } from '../../infra/registry.js';
import { ManualClock } from '../../jobs/cloud/clock.js';
import { createSimCloud, instantSimTimings } from '../../jobs/cloud/sim.js';
import { fleetStatus } from '../../jobs/status.js';
import { testWorkersKey, writeHeartbeat } from '../support/jobs.js';
import { startRedis } from '../support/redis.js';
import { median, ms, type Row } from './table.js';

const N = 500;

export async function fleetStatus500(): Promise<Row[]> {
  const server = await startRedis();
  const redis = server.client();
  const names = Array.from({ length: N }, (_, i) => `clawdinator-${i + 1}`);
  const sim = createSimCloud({
    clock: new ManualClock({ auto: true }),
    timings: instantSimTimings,
    amis: [{ name: 'base' }],
    fleet: names.map((name) => ({ name })),
  });
  const registry: FleetRegistry = Object.fromEntries(
    names.map((n) => [
      n,
      {
        host: n,
        instanceType: 't3.large',
        bootstrapPrefix: `bootstrap/${n}`,
        discordTokenSecret: `clawdinator/discord-token/${n}`,
      },
    ]),
  );
  // Signed, as the workers write them: /status verifies each one (500 Ed25519 verifies per call).
  for (const i of await sim.listFleetInstances()) {
    await writeHeartbeat(redis, { host: i.name as string, instanceId: i.instanceId, version: '0.1.0' }, 3600);
  }
  const queue = new Queue('clawdinator-fleet', { connection: { host: '127.0.0.1', port: server.port } });
  // Count what reaches Redis: every command the status code sends goes through sendCommand.
  let commands = 0;
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((cmd: Parameters<typeof send>[0]) => {
    commands++;
    return send(cmd);
  }) as typeof redis.sendCommand;
  const walls: number[] = [];
  let calls = { ec2: 0, ssm: 0, redis: 0 };
  for (let i = 0; i < 20; i++) {
    sim.resetCalls();
    commands = 0;
    const t = performance.now();
    const status = await fleetStatus({
      registry: async () => registry,
      cloud: sim,
      redis,
      workersKey: testWorkersKey,
      queues: [queue],
    });
    walls.push(performance.now() - t);
    if (status.members.filter((m) => m.state === 'online').length !== N) throw new Error('bench: not all online');
    calls = { ec2: sim.calls.ec2, ssm: sim.calls.ssm, redis: commands };
  }
  await queue.close();
  sim.close();
  await server.stop();
  const wall = median(walls);
  // The listing is ⌈N/1000⌉ calls; the newest image (the "older image" flag) one more, whatever N.
  const ok =
    wall <= 1000 && calls.ec2 <= Math.ceil(N / 1000) + 1 && calls.ssm <= Math.ceil(N / 50) && calls.redis === 1;
  return [
    {
      what: `/status over a simulated ${N}-instance fleet (fleetStatus: registry, EC2, SSM, heartbeats, queue counts), median of 20`,
      project: `${ms(wall)}; EC2 ${calls.ec2} calls (listing + newest image), SSM ${calls.ssm} calls, heartbeats ${calls.redis} Redis round trip`,
      floor: '—',
      ratio: null,
      budget: `≤ 1 s; EC2 ≤ ${Math.ceil(N / 1000)} + 1, SSM ≤ ${Math.ceil(N / 50)}, heartbeats 1 round trip`,
      ok,
    },
  ];
}
