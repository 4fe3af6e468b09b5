// A deploy has one end, whatever ends it. Here it is removed while it waits on a member's
// switch (no processor runs again): the engine's finalizer, from the request and the saved
// steps alone, releases the fleet lock and the member's lock, deletes the flake token the
// switch left, records the deploy as failed (the last deploy, ops.md, one audit line) and
// says which members were switched, which may be mid-switch and which are untouched.
import { describe, expect, it } from 'vitest';
import type { Cloud, CommandRequest, InvocationResult, SendCommandOptions } from '../../../jobs/cloud/types.js';
import { keys } from '../../../jobs/engine/keys.js';
import { FLEET_ROLLOUT_LOCK } from '../../../jobs/engine/rollout.js';
import { deployTokenSecret, LAST_DEPLOY_KEY } from '../../../jobs/fastlane/deps.js';
import { MAIN_SHA } from '../../support/ami.js';
import { queueDeploy, simLane, switches } from '../../support/lane.js';
import { lifecycleSuite } from '../../support/lifecycle.js';
import { until } from '../../support/until.js';

const MEMBERS = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
const suite = lifecycleSuite({ members: MEMBERS });

describe('the end of a deploy', () => {
  it('removed while a member switches: locks released, its token deleted, the members said, recorded once', async () => {
    const sim = suite.sim;
    const second = (await sim.cloud.listFleetInstances()).find((i) => i.name === 'clawdinator-2')?.instanceId;
    // clawdinator-2's host never answers whether its switch ended (its SSM agent restarted
    // and stays away): the job waits there, re-delayed, its token stored.
    const STUCK = 'stuck-switch-status';
    const cloud = new Proxy(sim.cloud, {
      get(target, prop, receiver) {
        if (prop === 'sendCommand') {
          return async (ids: string[], command: CommandRequest, options: SendCommandOptions) => {
            if (ids[0] === second && command.parameters.action?.[0] === 'switch-status') return STUCK;
            return target.sendCommand(ids, command, options);
          };
        }
        if (prop === 'waitForInvocation') {
          return async (commandId: string, instanceId: string, o: { timeoutSeconds: number }) =>
            commandId === STUCK
              ? ({
                  commandId,
                  instanceId,
                  status: 'TimedOut',
                  exitCode: null,
                  stdout: '',
                  stderr: '',
                } as InvocationResult)
              : target.waitForInvocation(commandId, instanceId, o);
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }) as Cloud;
    const lane = simLane(sim, { cloud, tokens: { mint: async () => 'FlakeTokenForTheEndTest0000000001' } });
    const h = suite.harness({ types: { lane }, settings: { finalizeSweepMs: 200, removedGraceMs: 2000 } });

    const { jobId } = await queueDeploy(h, {});
    await until('the deploy to wait on clawdinator-2', async () => {
      const job = await h.queue.getJob(jobId);
      const steps = (job?.data.steps ?? {}) as Record<string, unknown>;
      return Object.hasOwn(steps, 'clawdinator-2:start') && (await h.queue.getJobState(jobId)) === 'delayed';
    });
    expect((await sim.cloud.getSecrets([deployTokenSecret('clawdinator-2')])).size).toBe(1);
    expect(await suite.redis.get(FLEET_ROLLOUT_LOCK)).toBe(jobId);

    // Removed by hand: no processor runs again; the finalizer ends it.
    // BullMQ refuses (0) to remove a locked job: between our look and the remove, the delay
    // may have run out and a worker taken it for its next look; remove it between two runs.
    await until('the job to be removed between two runs', async () => (await h.queue.remove(jobId)) === 1);
    await until('the removal to be finalized', async () => (await suite.redis.get(keys.finalized(jobId))) === 'done');

    const results = (await suite.redis.xrange(keys.events, '-', '+'))
      .map(([, f]) => JSON.parse(f[1] as string).event)
      .filter((e) => e.kind === 'result' && e.jobId === jobId);
    expect(results).toEqual([
      expect.objectContaining({
        ok: false,
        text:
          `deploy of 5a4dbee (main) stopped at clawdinator-2: removed: ${jobId} was removed before it ended; ` +
          'switched to 5a4dbee: clawdinator-1; ' +
          'clawdinator-2 may be mid-switch or switched to 5a4dbee (not verified, not rolled back): look with /doctor name:clawdinator-2; ' +
          'untouched: clawdinator-3',
      }),
    ]);
    expect(await suite.redis.get(FLEET_ROLLOUT_LOCK)).toBeNull();
    expect(await suite.redis.get(keys.instanceLock('clawdinator-2'))).toBeNull();
    expect((await sim.cloud.getSecrets([deployTokenSecret('clawdinator-2')])).size).toBe(0);
    expect(JSON.parse((await suite.redis.get(LAST_DEPLOY_KEY)) as string)).toMatchObject({
      sha: MAIN_SHA,
      ok: false,
      jobId,
    });
    const ops = (await sim.memory.read('ops.md')).content.toString();
    expect(ops.split('\n').filter((l) => l.includes(`(job ${jobId})`))).toEqual([
      expect.stringMatching(/deploy all: 5a4dbee \(main\) failed at clawdinator-2 — requested by/),
    ]);
    const day = new Date().toISOString().slice(0, 10);
    const audit = (await sim.memory.read(`audit/${day}.md`)).content.toString();
    expect(audit.split('\n').filter((l) => l.includes(`job=${jobId} `))).toHaveLength(1);
    // clawdinator-3 was never asked anything.
    expect(switches(sim)).toEqual(['clawdinator-1:5a4dbee', 'clawdinator-2:5a4dbee']);
  });
});
