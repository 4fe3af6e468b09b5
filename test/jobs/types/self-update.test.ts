// The scheduled self-update: one scheduler for the fleet however many workers upsert it, only
// with a cron from the settings; a run does nothing when the fleet runs the branch head,
// deploys it otherwise and posts what it did to the ops channel, and does not retry a head
// whose deploy failed.
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import type { JobEvent } from '../../../jobs/engine/notify.js';
import { FLEET_SCHEDULES, upsertSchedules } from '../../../jobs/engine/schedulers.js';
import { fastLaneSchedules, SELF_UPDATE_SCHEDULER } from '../../../jobs/fastlane/deps.js';
import { loadConfig } from '../../../lib/config.js';
import { MAIN_SHA } from '../../support/ami.js';
import { testStepSigner } from '../../support/jobs.js';
import { runDeploy, simLane, switches } from '../../support/lane.js';
import { lifecycleSuite } from '../../support/lifecycle.js';

const MEMBERS = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
const OPS = '920000000000000001';
const SCHEDULE = { kind: 'schedule', scheduler: SELF_UPDATE_SCHEDULER } as const;

describe('self-update schedule', () => {
  const suite = lifecycleSuite({ members: MEMBERS });

  it('exists once with three workers upserting, and only when the cron is set', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim) } });
    const connection = { host: '127.0.0.1', port: suite.server.port };
    const cron = loadConfig(['selfUpdateCron'], { env: { CLAWDINATOR_SELF_UPDATE_CRON: '0 3 * * *' } });
    const defs = [...FLEET_SCHEDULES, ...fastLaneSchedules(cron)];
    const queues = [1, 2, 3].map(() => new Queue(FLEET_QUEUE, { connection }));
    for (const q of queues) suite.defer(() => q.close());
    // Three workers, each checking its schedules a few times, at once.
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        queues.map((queue, n) =>
          upsertSchedules({
            queue,
            redis: suite.server.client(),
            signer: testStepSigner,
            types: h.types,
            defs,
            workerId: `clawdinator-${n + 1}-${round}`,
          }),
        ),
      );
    }
    const schedulers = await (queues[0] as Queue).getJobSchedulers();
    const selfUpdate = schedulers.filter((s) => s.key === SELF_UPDATE_SCHEDULER);
    expect(selfUpdate).toHaveLength(1);
    expect(selfUpdate[0]).toMatchObject({ name: 'deploy', pattern: '0 3 * * *' });
    const waiting = (await (queues[0] as Queue).getJobs(['delayed', 'wait'])).filter(
      (j) => j.repeatJobKey === SELF_UPDATE_SCHEDULER,
    );
    expect(waiting).toHaveLength(1);

    // Without the setting: no self-update, and a leader removes one left from before.
    expect(fastLaneSchedules(loadConfig(['selfUpdateCron'], { env: {} }))).toEqual([]);
    await upsertSchedules({
      queue: queues[0] as Queue,
      redis: suite.server.client(),
      signer: testStepSigner,
      types: h.types,
      defs: FLEET_SCHEDULES,
      workerId: 'clawdinator-1-off',
    });
    expect((await (queues[0] as Queue).getJobSchedulers()).map((s) => s.key)).not.toContain(SELF_UPDATE_SCHEDULER);
  });

  it('deploys the branch head when the fleet runs something else, and posts it to the ops channel', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim), opsChannelId: OPS } });
    const job = await runDeploy(h, { target: 'all' }, SCHEDULE);
    expect(job.returnvalue.summary).toBe('deployed 5a4dbee (main) to clawdinator-1, clawdinator-2, clawdinator-3');
    const events = (await suite.redis.xrange(keys.events, '-', '+')).map(
      ([, fields]) => (JSON.parse(fields[1] as string) as { event: JobEvent }).event,
    );
    const posted = events.filter((e) => e.kind === 'result' && e.jobId === job.id);
    expect(posted).toHaveLength(1);
    expect(posted[0]).toMatchObject({
      reply: { channelId: OPS },
      ok: true,
      text: 'self-update: deployed 5a4dbee (main) to clawdinator-1, clawdinator-2, clawdinator-3',
    });
  });

  it('does not retry a head whose last deploy failed', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim) } });
    suite.sim.cloud.faults.arm('switch');
    const failed = await runDeploy(h, {});
    expect(failed.failedReason).toMatch(/stopped at the canary clawdinator-1/);
    const sent = suite.sim.cloud.sentCommands().length;

    const job = await runDeploy(h, { target: 'all' }, SCHEDULE);

    expect(job.returnvalue.summary).toBe(
      `nothing to do: the last deploy of 5a4dbee failed (job ${failed.id}): deploy a fix by hand`,
    );
    expect(suite.sim.cloud.sentCommands()).toHaveLength(sent);
  });
});

describe('self-update on a fleet that runs the head', () => {
  const suite = lifecycleSuite({
    members: MEMBERS,
    hosts: { revisions: Object.fromEntries(MEMBERS.map((m) => [m, MAIN_SHA])) },
  });

  it('does nothing: no host is asked anything', async () => {
    const h = suite.harness({ types: { lane: simLane(suite.sim), opsChannelId: OPS } });

    const job = await runDeploy(h, { target: 'all' }, SCHEDULE);

    expect(job.returnvalue.summary).toBe('nothing to do: the fleet runs 5a4dbee (main) already');
    expect(suite.sim.cloud.calls.ssm).toBe(0);
    expect(switches(suite.sim)).toEqual([]);
    // A routine no-op posts no result (its progress has no reply target: shown nowhere).
    const events = (await suite.redis.xrange(keys.events, '-', '+')).map(
      ([, fields]) => (JSON.parse(fields[1] as string) as { event: JobEvent }).event,
    );
    expect(events.filter((e) => e.jobId === job.id && (e.kind === 'result' || e.reply !== undefined))).toEqual([]);
  });
});
