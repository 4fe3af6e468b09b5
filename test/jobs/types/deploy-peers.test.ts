import { afterEach, describe, expect, it } from 'vitest';
import { FLEET_QUEUE } from '../../../jobs/engine/keys.js';
import { JobTypes } from '../../../jobs/engine/queues.js';
import { jobTypes } from '../../../jobs/types/index.js';
import { createLogger } from '../../../lib/log.js';
import { MAIN_SHA, REPO } from '../../support/ami.js';
import { simFleet } from '../../support/fleet.js';
import { operatorClient, startFleetWorker } from '../../support/fleet-worker.js';
import { keyPair, lifecycleSettings, startWorker, testStepSigner } from '../../support/jobs.js';
import { LANE_REFS, runDeploy, simLane, switches } from '../../support/lane.js';
import { lifecycleSuite } from '../../support/lifecycle.js';
import { startRedis } from '../../support/redis.js';
import { serveSim } from '../../support/sim-server.js';
import { until } from '../../support/until.js';

const MEMBERS = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];

describe('deploy: never yourself', () => {
  const suite = lifecycleSuite({ members: MEMBERS });

  it("with two healthy workers, each one's own host is switched by the other", async () => {
    const sim = suite.sim;
    // The harness's worker is clawdinator-1's; a second worker is clawdinator-2's.
    const h = suite.harness({ types: { lane: simLane(sim, { hostName: 'clawdinator-1' }) } });
    const second = startWorker(
      FLEET_QUEUE,
      {
        connection: { host: '127.0.0.1', port: suite.server.port, maxRetriesPerRequest: null },
        redis: suite.server.client(),
        types: new JobTypes(
          jobTypes({
            redis: suite.redis,
            registry: async () => (await sim.registry.read()).registry,
            memory: sim.memory,
            lane: simLane(sim, { hostName: 'clawdinator-2' }),
          }),
        ),
        publicKey: async (id) => (id === 'operator:ops' ? h.keys.operator.publicKey : null),
        policy: { policy: {}, redis: suite.redis, agentRequestsPerHour: 3 },
        log: createLogger('silent'),
        stepSigner: testStepSigner,
      },
      lifecycleSettings,
    );
    suite.defer(() => second.close());

    const job = await runDeploy(h, {});

    expect(job.failedReason).toBeUndefined();
    const steps = job.data.steps as Record<string, { by?: string | null }>;
    expect(steps['clawdinator-1:start']?.by).toBe('clawdinator-2');
    expect(steps['clawdinator-2:start']?.by).toBe('clawdinator-1');
    // The planner's own host went last; every member switched once.
    const planner = steps['clawdinator-3:start']?.by;
    expect(switches(sim).at(-1)).toBe(`${planner}:5a4dbee`);
    expect([...switches(sim)].sort()).toEqual(MEMBERS.map((m) => `${m}:5a4dbee`));
  });
});

const operator = keyPair();
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => {});
  cleanup.length = 0;
});

describe('deploy, resumed by another worker process', () => {
  it('the worker dies after the first member: a peer finishes the rest, the first is never switched again', async () => {
    const server = await startRedis();
    cleanup.push(() => server.stop());
    const redis = server.client();
    const sim = simFleet(redis, { members: MEMBERS });
    cleanup.push(() => sim.close());
    // The first switch-start of the second member is held, then refused: its worker dies there.
    let reached: () => void = () => {};
    const atSecond = new Promise<void>((r) => {
      reached = r;
    });
    let refuse: (err: Error) => void = () => {};
    const refused = new Promise<void>((_, reject) => {
      refuse = reject;
    });
    refused.catch(() => {});
    let held = false;
    const http = await serveSim(sim.cloud, async (method, args) => {
      const command = args[1] as { parameters?: Record<string, string[]> } | undefined;
      if (method !== 'sendCommand' || command?.parameters?.action?.[0] !== 'switch-start' || held) return;
      const target = sim.cloud.sentCommands().filter((c) => c.parameters.action === 'switch-start').length;
      if (target !== 1) return;
      held = true;
      reached();
      await refused;
    });
    cleanup.push(() => http.close());

    const first = await startFleetWorker(
      { server, sim, simUrl: http.url, operator: operator.publicKey, cleanup },
      { lane: { repo: REPO, refs: LANE_REFS, hostName: 'clawdinator-8' } },
    );
    const { enqueuer, queue } = operatorClient({ server, sim, cleanup }, redis, operator.privateKey);
    const { jobId } = await enqueuer.enqueue({
      type: 'deploy',
      data: {},
      principal: { kind: 'cli', operator: 'ops' },
      requestId: 'deploy-resume',
    });

    await atSecond;
    const before = ((await queue.getJob(jobId))?.data.steps ?? {}) as Record<string, unknown>;
    expect(before['clawdinator-1:done']).toMatchObject({ revision: MAIN_SHA });
    expect(before['clawdinator-2:start']).toBeUndefined();
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    refuse(new Error('the worker that asked is gone'));

    await startFleetWorker(
      { server, sim, simUrl: http.url, operator: operator.publicKey, cleanup },
      { lane: { repo: REPO, refs: LANE_REFS, hostName: 'clawdinator-9' } },
    );
    await until('the deploy to complete', async () =>
      (await queue.getJobState(jobId)) === 'completed' ? true : undefined,
    );

    const job = await queue.getJob(jobId);
    expect(job?.returnvalue.summary).toBe('deployed 5a4dbee (main) to clawdinator-1, clawdinator-2, clawdinator-3');
    // clawdinator-1 was switched once, by the dead worker; the peer took 2 and 3.
    expect(switches(sim)).toEqual(['clawdinator-1:5a4dbee', 'clawdinator-2:5a4dbee', 'clawdinator-3:5a4dbee']);
    const steps = job?.data.steps as Record<string, { by?: string }>;
    expect(steps['clawdinator-1:start']?.by).toBe('clawdinator-8');
    expect(steps['clawdinator-2:start']?.by).toBe('clawdinator-9');
    expect(steps['clawdinator-3:start']?.by).toBe('clawdinator-9');
  }, 60_000);
});
