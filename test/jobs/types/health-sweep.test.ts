// The health sweep on a real redis-server, with its clock injected: one alert per change of
// state, never one per sweep, and a grace period for hosts it has never seen.
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../jobs/cloud/clock.js';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../../jobs/cloud/sim.js';
import type { JobContext } from '../../../jobs/engine/job-type.js';
import { keys } from '../../../jobs/engine/keys.js';
import type { JobEvent } from '../../../jobs/engine/notify.js';
import { readStrayOffer } from '../../../jobs/engine/stray-offer.js';
import { type HealthSweepResult, healthSweep } from '../../../jobs/types/health-sweep.js';
import { createLogger } from '../../../lib/log.js';
import { OPS_CHANNEL } from '../../support/bot.js';
import { testStepSigner, testWorkersKey, writeHeartbeat } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 24, 20, 41);

let server: TestRedis;
let redis: Redis;
let clock = T0;
let fleet: string[] = [];

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  clock = T0;
  fleet = ['clawdinator-1', 'clawdinator-2'];
});

const sweepType = () =>
  healthSweep({ redis: server.client(), fleet: async () => fleet, opsChannelId: OPS_CHANNEL, now: () => clock });

const ctx = {
  jobId: 'repeat:clawdinator-health-sweep:1',
  data: {},
  principal: { kind: 'schedule', scheduler: 'clawdinator-health-sweep' },
  requestId: 'clawdinator-health-sweep',
  steps: undefined as never,
  signer: testStepSigner,
  log: createLogger('silent'),
  progress: async () => {},
} satisfies JobContext<Record<string, never>>;

async function sweepAt(at: number, type = sweepType()): Promise<HealthSweepResult> {
  clock = at;
  return (await type.run(ctx)) as HealthSweepResult;
}

/** A heartbeat written at `at` on the sweep's clock; it lasts until a test deletes it. */
async function beat(host: string, at: number): Promise<void> {
  await writeHeartbeat(
    redis,
    { host, instanceId: 'i-0123', version: '0.1.0', revision: 'abc', startedAt: T0 - MIN, at },
    3600,
  );
}

async function alerts(): Promise<JobEvent[]> {
  const entries = await redis.xrange(keys.events, '-', '+');
  return entries
    .map(([, fields]) => (JSON.parse(fields[1] as string) as { event: JobEvent }).event)
    .filter((e) => e.kind === 'alert');
}

describe('health sweep', () => {
  it('a silent host is one alert, however many sweeps; coming back is one more', async () => {
    await beat('clawdinator-1', T0);
    await beat('clawdinator-2', T0);
    expect((await sweepAt(T0)).summary).toBe('2 hosts: 2 up, 0 missing, 0 silent; 0 alerts');

    // clawdinator-2's heartbeat expires; within the grace period it is only missing.
    await redis.del(keys.heartbeat('clawdinator-2'));
    await beat('clawdinator-1', T0 + MIN);
    expect((await sweepAt(T0 + MIN)).summary).toBe('2 hosts: 1 up, 1 missing, 0 silent; 0 alerts');
    expect(await alerts()).toEqual([]);

    const silent = await sweepAt(T0 + 3 * MIN);
    expect(silent).toMatchObject({ up: 1, silent: 1, alerts: 1 });
    for (const minute of [4, 5, 6]) expect((await sweepAt(T0 + minute * MIN)).alerts).toBe(0);
    expect(await alerts()).toEqual([
      expect.objectContaining({
        kind: 'alert',
        type: 'health-sweep',
        text: 'clawdinator-2 silent for 3 min (last seen 2026-11-24 20:41 UTC)',
        reply: { channelId: OPS_CHANNEL },
      }),
    ]);

    await beat('clawdinator-2', T0 + 7 * MIN);
    expect((await sweepAt(T0 + 7 * MIN)).summary).toBe('2 hosts: 2 up, 0 missing, 0 silent; 1 alerts');
    await sweepAt(T0 + 8 * MIN);
    expect((await alerts()).map((e) => e.text)).toEqual([
      'clawdinator-2 silent for 3 min (last seen 2026-11-24 20:41 UTC)',
      'clawdinator-2 back (silent for 7 min)',
    ]);
    expect(JSON.parse((await redis.get(keys.health('clawdinator-2'))) as string)).toEqual({
      state: 'up',
      since: T0 + 7 * MIN,
      lastSeen: T0 + 7 * MIN,
    });
  });

  it('a heartbeat that does not verify with the workers’ key is no heartbeat', async () => {
    await beat('clawdinator-1', T0);
    const forged = { host: 'clawdinator-2', instanceId: 'i-0123', version: '0.1.0', revision: 'abc', activeJobs: 0 };
    await redis.set(keys.heartbeat('clawdinator-2'), JSON.stringify({ ...forged, startedAt: T0, at: T0 }));
    expect((await sweepAt(T0)).summary).toBe('2 hosts: 1 up, 1 missing, 0 silent; 0 alerts');
  });

  it('a host never seen (freshly spawned) gets a longer grace before it is silent', async () => {
    fleet = ['clawdinator-3', 'clawdinator-4'];
    await sweepAt(T0);
    expect((await sweepAt(T0 + 10 * MIN)).summary).toBe('2 hosts: 0 up, 2 missing, 0 silent; 0 alerts');
    // clawdinator-3 boots and writes its first heartbeat: no alert at all for it.
    await beat('clawdinator-3', T0 + 12 * MIN);
    await sweepAt(T0 + 12 * MIN);
    await beat('clawdinator-3', T0 + 20 * MIN);
    expect((await sweepAt(T0 + 20 * MIN)).summary).toBe('2 hosts: 1 up, 0 missing, 1 silent; 1 alerts');
    expect((await alerts()).map((e) => e.text)).toEqual([
      'clawdinator-4 silent for 20 min (never seen since 2026-11-24 20:41 UTC)',
    ]);
  });

  it('two sweeps at once publish one alert; malformed state starts tracking afresh; retired hosts are ignored', async () => {
    fleet = ['clawdinator-1', 'clawdinator-2', 'clawdinator-5'];
    await beat('clawdinator-1', T0);
    await beat('clawdinator-2', T0);
    await sweepAt(T0);
    await redis.del(keys.heartbeat('clawdinator-2'));
    await redis.set(keys.health('clawdinator-5'), '{"state":"sideways"}');
    clock = T0 + 4 * MIN;
    const [a, b] = await Promise.all([sweepType().run(ctx), sweepType().run(ctx)]);
    expect((a as HealthSweepResult).alerts + (b as HealthSweepResult).alerts).toBe(1);
    expect((await alerts()).map((e) => e.text)).toEqual([
      'clawdinator-2 silent for 4 min (last seen 2026-11-24 20:41 UTC)',
    ]);
    expect(JSON.parse((await redis.get(keys.health('clawdinator-5'))) as string)).toEqual({
      state: 'up',
      since: T0 + 4 * MIN,
      lastSeen: null,
    });
    expect(await redis.ttl(keys.health('clawdinator-5'))).toBeGreaterThan(0);

    // clawdinator-2 retired (gone from the registry) while silent: no more words about it.
    fleet = ['clawdinator-1'];
    await beat('clawdinator-2', T0 + 5 * MIN);
    await sweepAt(T0 + 5 * MIN);
    expect(await alerts()).toHaveLength(1);
  });

  describe('with the cloud', () => {
    let sim: SimCloud;
    const withCloud = () =>
      healthSweep({
        redis: server.client(),
        fleet: async () => fleet,
        cloud: sim,
        opsChannelId: OPS_CHANNEL,
        now: () => clock,
      });
    beforeEach(() => {
      sim = createSimCloud({
        clock: new ManualClock({ auto: true }),
        timings: instantSimTimings,
        amis: [{ name: 'base', imageId: 'ami-0123456789abcdef0' }],
        fleet: [{ name: 'clawdinator-1' }, { name: 'clawdinator-2' }],
      });
    });
    afterEach(() => sim.close());
    const instanceOf = async (name: string) =>
      (await sim.listFleetInstances()).find((i) => i.name === name)?.instanceId as string;

    it('AWS cannot be asked: "no heartbeat, cannot ask AWS", never a false "silent"; then silent once AWS answers', async () => {
      await beat('clawdinator-1', T0);
      await beat('clawdinator-2', T0);
      await sweepAt(T0, withCloud());
      await redis.del(keys.heartbeat('clawdinator-2'));
      await beat('clawdinator-1', T0 + 4 * MIN);
      sim.faults.arm('DescribeInstances', { code: 'UnauthorizedOperation', times: 2 });
      const blind = await sweepAt(T0 + 4 * MIN, withCloud());
      expect(blind).toMatchObject({ silent: 0, unknown: 1, alerts: 1 });
      await sweepAt(T0 + 5 * MIN, withCloud());
      const texts = (await alerts()).map((e) => e.text);
      expect(texts).toEqual([
        'clawdinator-2: no heartbeat for 4 min (last seen 2026-11-24 20:41 UTC); cannot ask AWS whether its instance runs (UnauthorizedOperation on DescribeInstances)',
      ]);
      expect(texts.join('\n')).not.toContain('silent');
      // AWS answers again: the instance runs, the host says nothing — silent, said once.
      await sweepAt(T0 + 6 * MIN, withCloud());
      await sweepAt(T0 + 7 * MIN, withCloud());
      expect((await alerts()).map((e) => e.text).slice(1)).toEqual([
        `clawdinator-2 silent for 6 min (last seen 2026-11-24 20:41 UTC); EC2: ${await instanceOf('clawdinator-2')} running`,
      ]);
    });

    it('strays: an instance of ours the registry does not know, and a member whose instance is gone — one alert each', async () => {
      fleet = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
      await beat('clawdinator-1', T0);
      const orphan = await sim.launchInstance({
        name: 'clawdinator-7',
        ami: 'ami-0123456789abcdef0',
        instanceType: 't3.large',
      });
      await sweepAt(T0, withCloud());
      for (const minute of [1, 2, 25, 26]) {
        await beat('clawdinator-1', T0 + minute * MIN);
        await beat('clawdinator-2', T0 + minute * MIN);
        await sweepAt(T0 + minute * MIN, withCloud());
      }
      const texts = (await alerts()).map((e) => e.text);
      expect(texts).toEqual([
        `stray: ${orphan} (clawdinator-7) is tagged app=clawdinator but not in the registry (running): \`clawdinator fleet cleanup ${orphan} --yes\` terminates it`,
        'clawdinator-3 is in the registry, but EC2 has no instance of it (never seen since 2026-11-24 20:41 UTC): `clawdinator fleet cleanup clawdinator-3 --yes` retires the entry',
      ]);
      expect((await alerts()).every((e) => e.reply?.channelId === OPS_CHANNEL)).toBe(true);
      // Each offers its clean-up: the alert names its target, the button is in the sweep's signed offer.
      expect((await alerts()).map((e) => e.offer)).toEqual([orphan, 'clawdinator-3']);
      const offer = async (target: string) => (await readStrayOffer(redis, target, testWorkersKey))?.offer;
      expect(await offer(orphan)).toMatchObject({
        action: 'terminate',
        instanceName: 'clawdinator-7',
        jobId: ctx.jobId,
        channelId: OPS_CHANNEL,
        buttons: [{ id: expect.stringMatching(new RegExp(`^retire:stray:${orphan}:\\d+$`)), style: 'danger' }],
      });
      expect(await offer('clawdinator-3')).toMatchObject({
        action: 'retire',
        buttons: [{ label: "Retire clawdinator-3's entry" }],
      });
      // A member that is back is offered no more; the stray still is.
      await beat('clawdinator-3', T0 + 27 * MIN);
      await sweepAt(T0 + 27 * MIN, withCloud());
      const back = (await alerts()).at(-1);
      expect(back?.text).toMatch(/^clawdinator-3 back/);
      expect(back?.offer).toBeUndefined();
      expect(await offer('clawdinator-3')).toBeUndefined();
      expect(await offer(orphan)).toBeDefined();
    });

    it('without an ops channel, no offer is made (nobody could press it)', async () => {
      const orphan = await sim.launchInstance({
        name: 'clawdinator-7',
        ami: 'ami-0123456789abcdef0',
        instanceType: 't3.large',
      });
      const sweep = healthSweep({ redis: server.client(), fleet: async () => fleet, cloud: sim, now: () => clock });
      await sweepAt(T0, sweep);
      expect((await alerts()).map((e) => [e.offer, e.reply])).toEqual([[undefined, undefined]]);
      expect(await redis.exists(keys.strayOffer(orphan))).toBe(0);
    });

    it('a member a job is working on (its instance lock held) is not reported while it lasts', async () => {
      fleet = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
      await beat('clawdinator-1', T0);
      await redis.set(keys.instanceLock('clawdinator-3'), 'spawn-req-3');
      await sweepAt(T0, withCloud());
      await beat('clawdinator-1', T0 + 30 * MIN);
      await beat('clawdinator-2', T0 + 30 * MIN);
      expect((await sweepAt(T0 + 30 * MIN, withCloud())).alerts).toBe(0);
      await redis.del(keys.instanceLock('clawdinator-3'));
      expect((await sweepAt(T0 + 31 * MIN, withCloud())).alerts).toBe(1);
    });
  });
});
