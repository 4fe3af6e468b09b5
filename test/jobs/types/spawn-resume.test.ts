import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { SIM_BUCKET, simFleet } from '../../support/fleet.js';
import { operatorClient, startFleetWorker } from '../../support/fleet-worker.js';
import { keyPair } from '../../support/jobs.js';
import { startRedis } from '../../support/redis.js';
import { APPLIES, serveSim } from '../../support/sim-server.js';
import { until } from '../../support/until.js';

const operator = keyPair();
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => {});
  cleanup.length = 0;
});

describe('spawn, resumed by another worker process', () => {
  it('SIGKILLed after the apply, before online: the next worker finishes it without a second apply', async () => {
    const server = await startRedis();
    cleanup.push(() => server.stop());
    const redis: Redis = server.client();
    const sim = simFleet(redis);
    cleanup.push(() => sim.close());
    // The host's SSM agent answers only once released: the first worker is stuck there.
    let pinged: () => void = () => {};
    const firstPing = new Promise<void>((r) => {
      pinged = r;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((r) => {
      release = r;
    });
    const http = await serveSim(sim.cloud, async (method) => {
      if (method !== 'pingStatus') return;
      pinged();
      await released;
    });
    cleanup.push(() => http.close());

    const first = await startFleetWorker({ server, sim, simUrl: http.url, operator: operator.publicKey, cleanup });
    const { enqueuer, queue } = operatorClient({ server, sim, cleanup }, redis, operator.privateKey);
    const { jobId } = await enqueuer.enqueue({
      type: 'spawn',
      data: { name: 'clawdinator-3' },
      principal: { kind: 'cli', operator: 'ops' },
      requestId: 'resume-after-apply',
    });

    await firstPing;
    const steps = ((await queue.getJob(jobId))?.data.steps ?? {}) as Record<string, unknown>;
    expect(Object.keys(steps)).toEqual(expect.arrayContaining(['apply', 'running']));
    expect(steps['ssm-online']).toBeUndefined();
    expect(await queue.getJobState(jobId)).toBe('active');
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    const second = await startFleetWorker({ server, sim, simUrl: http.url, operator: operator.publicKey, cleanup });
    release();
    await until('the job to complete', async () =>
      (await queue.getJobState(jobId)) === 'completed' ? true : undefined,
    );
    const job = await queue.getJob(jobId);
    expect(job?.returnvalue.summary).toMatch(/^clawdinator-3 online: i-[0-9a-f]+, ami-00000000000000a11, /);
    expect(sim.cloud.calls.byOperation.RunInstances).toBe(1);
    expect(await redis.lrange(APPLIES, 0, -1)).toEqual([`clawdinator-3:${first.pid}`]);
    const members = (await sim.cloud.listFleetInstances()).filter((i) => i.name === 'clawdinator-3');
    expect(members).toHaveLength(1);
    expect(job?.returnvalue.instanceId).toBe(members[0]?.instanceId);
    // The record step ran once, on the survivor.
    const ops = (await sim.memory.read('ops.md')).content.toString();
    expect(ops.match(/spawn clawdinator-3:/g)).toHaveLength(1);
    expect(second.exitCode).toBeNull();
  });

  it('SIGKILLed in the apply after the launch, before the state was saved: the next worker imports it, one instance', async () => {
    const server = await startRedis();
    cleanup.push(() => server.stop());
    const redis: Redis = server.client();
    const sim = simFleet(redis);
    cleanup.push(() => sim.close());
    // The simulated terraform's state write, after RunInstances, is held: the first worker dies there.
    let saving: () => void = () => {};
    const stateWrite = new Promise<void>((r) => {
      saving = r;
    });
    let held = false;
    const http = await serveSim(sim.cloud, async (method) => {
      if (method !== 'putJson' || held) return;
      held = true;
      saving();
      await new Promise(() => {});
    });
    cleanup.push(() => http.close());

    const first = await startFleetWorker({ server, sim, simUrl: http.url, operator: operator.publicKey, cleanup });
    const { enqueuer, queue } = operatorClient({ server, sim, cleanup }, redis, operator.privateKey);
    const { jobId } = await enqueuer.enqueue({
      type: 'spawn',
      data: { name: 'clawdinator-3' },
      principal: { kind: 'cli', operator: 'ops' },
      requestId: 'killed-in-apply',
    });

    await stateWrite;
    const launched = (await sim.cloud.listFleetInstances()).filter((i) => i.name === 'clawdinator-3');
    expect(launched).toHaveLength(1);
    expect(launched[0]?.tags['clawdinator:job']).toBe(jobId);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect(await sim.cloud.getJson(SIM_BUCKET, 'clawdinator/clawdinator-3.tfstate')).toBeNull();

    await startFleetWorker({ server, sim, simUrl: http.url, operator: operator.publicKey, cleanup });
    await until('the job to complete', async () =>
      (await queue.getJobState(jobId)) === 'completed' ? true : undefined,
    );
    const job = await queue.getJob(jobId);
    // One instance in the cloud, launched once, the one the job reports and the state holds.
    const members = (await sim.cloud.listFleetInstances()).filter((i) => i.name === 'clawdinator-3');
    expect(members.map((i) => i.instanceId)).toEqual([launched[0]?.instanceId]);
    expect(sim.cloud.calls.byOperation.RunInstances).toBe(1);
    expect(sim.cloud.calls.byOperation.CreateRole).toBe(1);
    expect(job?.returnvalue.instanceId).toBe(launched[0]?.instanceId);
    const state = (await sim.cloud.getJson(SIM_BUCKET, 'clawdinator/clawdinator-3.tfstate')) as {
      resources: Record<string, string>;
    };
    expect(state.resources['aws_instance.host']).toBe(launched[0]?.instanceId);
    expect(await redis.lrange(APPLIES, 0, -1)).toHaveLength(2);
  });
});
