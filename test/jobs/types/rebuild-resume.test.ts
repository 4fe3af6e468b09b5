import { afterEach, describe, expect, it } from 'vitest';
import { MAIN_SHA, REPO } from '../../support/ami.js';
import { simFleet } from '../../support/fleet.js';
import { operatorClient, startFleetWorker } from '../../support/fleet-worker.js';
import { keyPair } from '../../support/jobs.js';
import { startRedis } from '../../support/redis.js';
import { serveSim } from '../../support/sim-server.js';
import { until } from '../../support/until.js';

const operator = keyPair();
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => {});
  cleanup.length = 0;
});

describe('rebuild-ami, resumed by another worker process', () => {
  it('SIGKILLed while polling its import: the next worker polls the same task, no second ImportSnapshot', async () => {
    const server = await startRedis();
    cleanup.push(() => server.stop());
    const redis = server.client();
    const sim = simFleet(redis);
    cleanup.push(() => sim.close());
    // The first look at the import task is held: the first worker is stuck polling it.
    let polled: () => void = () => {};
    const firstPoll = new Promise<void>((r) => {
      polled = r;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((r) => {
      release = r;
    });
    const looks: unknown[] = [];
    const http = await serveSim(sim.cloud, async (method, args) => {
      if (method !== 'describeImportSnapshot') return;
      looks.push(args[0]);
      polled();
      await released;
    });
    cleanup.push(() => http.close());

    const first = await startFleetWorker(
      { server, sim, simUrl: http.url, operator: operator.publicKey, cleanup },
      { ami: { repo: REPO, refs: { main: MAIN_SHA } } },
    );
    const { enqueuer, queue } = operatorClient({ server, sim, cleanup }, redis, operator.privateKey);
    const { jobId } = await enqueuer.enqueue({
      type: 'rebuild-ami',
      data: { build: 'local' },
      principal: { kind: 'cli', operator: 'ops' },
      requestId: 'resume-while-importing',
    });

    await firstPoll;
    const steps = ((await queue.getJob(jobId))?.data.steps ?? {}) as Record<string, unknown>;
    const { importTaskId } = steps.import as { importTaskId: string };
    expect(importTaskId).toMatch(/^import-snap-[0-9a-f]+$/);
    expect(steps['import-wait']).toBeUndefined();
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    await startFleetWorker(
      { server, sim, simUrl: http.url, operator: operator.publicKey, cleanup },
      { ami: { repo: REPO, refs: { main: MAIN_SHA } } },
    );
    release();
    await until('the job to complete', async () =>
      (await queue.getJobState(jobId)) === 'completed' ? true : undefined,
    );

    const job = await queue.getJob(jobId);
    expect(job?.returnvalue.summary).toMatch(/^ami-[0-9a-f]+ \(clawdinator-nixos-\d{14}\) from 5a4dbee \(main\)/);
    const ops = sim.cloud.calls.byOperation;
    expect(ops.ImportSnapshot).toBe(1);
    expect(ops.RegisterImage).toBe(1);
    // Every look, the dead worker's and the survivor's, was at the one task it started.
    expect(looks.length).toBeGreaterThanOrEqual(2);
    expect(new Set(looks)).toEqual(new Set([importTaskId]));
    expect(job?.data.steps?.import).toEqual({ importTaskId });
    expect((await sim.cloud.describeImportSnapshot(importTaskId)).status).toBe('completed');
  });
});
