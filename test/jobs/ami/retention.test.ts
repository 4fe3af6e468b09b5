// Image retention on the simulated cloud: prune keeps the newest N, every image a member runs
// or is recorded to run, and never the newest; what it removes goes with its snapshots (one
// DeregisterImage with DeleteAssociatedSnapshots) and its uploaded raw object. The weekly
// ami-prune job runs the same and posts what it removed to the ops channel.
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { OBJECT_TAG } from '../../../jobs/ami/image.js';
import { formatImageRows, imageRows, planPrune, pruneImages } from '../../../jobs/ami/retention.js';
import type { Tags } from '../../../jobs/cloud/types.js';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { Enqueuer } from '../../../jobs/engine/queues.js';
import { simAmiDeps, workersOn } from '../../support/ami.js';
import { SIM_BUCKET, simMember } from '../../support/fleet.js';
import { testStepSigner } from '../../support/jobs.js';
import { lifecycleSuite } from '../../support/lifecycle.js';

const OPS_CHANNEL = '920000000000000077';
const ids = ['a', 'b', 'c', 'd', 'e', 'f'].map((x) => `ami-00000000000000${x}${x}${x}`);
const object = (i: number) => `images/clawdinator-nixos-2026010${i}000000-${'abcdef0'.slice(0, 7)}.raw`;
const tags = (i: number): Tags => ({ [OBJECT_TAG]: object(i), 'clawdinator:revision': `${i}`.repeat(40) });

// Six images, oldest first (seeded images are hours apart, the last the newest): `a` is
// recorded for clawdinator-2 in the registry, `b` runs on clawdinator-1, `f` is the newest.
const suite = lifecycleSuite({
  members: ['clawdinator-1'],
  amis: ids.map((imageId, i) => ({ name: `clawdinator-nixos-2026010${i}000000`, imageId })),
});

async function world() {
  const { cloud, registry } = suite.sim;
  // The registry records `a` for a member whose instance is gone; clawdinator-1 runs `b`.
  await registry.update(
    (r) => ({
      ...r,
      'clawdinator-1': { ...simMember('clawdinator-1'), ami: ids[1] as string },
      'clawdinator-2': { ...simMember('clawdinator-2'), ami: ids[0] as string },
    }),
    { message: 'test' },
  );
  await cloud.terminateInstance((await cloud.listFleetInstances())[0]?.instanceId as string);
  await cloud.launchInstance({ name: 'clawdinator-1', ami: ids[1] as string, instanceType: 't3.large' });
  for (const [i, id] of ids.entries()) {
    await cloud.tagResources([id], tags(i));
    await cloud.putBytes(SIM_BUCKET, object(i), Buffer.from(`image ${i}`));
  }
  return (await registry.read()).registry;
}

describe('prune', () => {
  it('keeps the newest N, the images members run or are recorded for; removes the rest with snapshots and objects', async () => {
    const { cloud } = suite.sim;
    const registry = await world();
    const before = await cloud.listAmis();
    cloud.resetCalls();

    const result = await pruneImages(cloud, { registry, keep: 2, bucket: SIM_BUCKET });

    expect(result.plan.keep.map((k) => [k.image.imageId, k.reasons.join(',')])).toEqual([
      [ids[5], 'newest'],
      [ids[4], 'recent'],
      [ids[1], 'in use'],
      [ids[0], 'in use'],
    ]);
    const removed = result.removed.map((r) => r.image.imageId);
    expect(removed).toEqual([ids[3], ids[2]]);
    expect(cloud.calls.byOperation.DeregisterImage).toBe(2);
    // Their snapshots are gone: nothing can be registered on them any more.
    for (const r of result.removed) {
      const snapshot = before.find((i) => i.imageId === r.image.imageId)?.rootSnapshotId as string;
      expect(r.deregister.snapshots).toEqual([{ snapshotId: snapshot, result: 'success' }]);
      await expect(
        cloud.registerImage({
          name: `again-${snapshot}`,
          snapshotId: snapshot,
          architecture: 'x86_64',
          bootMode: 'legacy-bios',
          clientToken: 't',
        }),
      ).rejects.toThrow(/InvalidSnapshot\.NotFound/);
    }
    expect((await cloud.listAmis()).map((i) => i.imageId).sort()).toEqual([ids[0], ids[1], ids[4], ids[5]].sort());
    expect((await cloud.listKeys(SIM_BUCKET, 'images/')).sort()).toEqual([object(0), object(1), object(4), object(5)]);
    // A second run finds nothing more to do.
    expect((await pruneImages(cloud, { registry, keep: 2, bucket: SIM_BUCKET })).removed).toEqual([]);
  });

  it('never the newest, whatever N; never an image not yet available; a dry run changes nothing', async () => {
    const { cloud } = suite.sim;
    const registry = await world();
    const images = await cloud.listAmis();
    const plan = planPrune(images, new Set(), 1);
    expect(plan.keep.map((k) => k.image.imageId)).toEqual([ids[5]]);
    expect(() => planPrune(images, new Set(), 0)).toThrow(RangeError);
    const pending = planPrune(
      [{ ...(images[3] as (typeof images)[0]), state: 'pending' }, ...images.slice(4)],
      new Set(),
      1,
    );
    expect(pending.keep.map((k) => k.reasons)).toContainEqual(['newest', 'pending']);
    cloud.resetCalls();
    const dry = await pruneImages(cloud, { registry, keep: 1, bucket: SIM_BUCKET, dryRun: true });
    expect(dry.plan.remove).toHaveLength(3);
    expect(cloud.calls.byOperation.DeregisterImage).toBeUndefined();
    expect(cloud.calls.byOperation.DeleteObjects).toBeUndefined();
  });

  it('ami list: revision, age and who runs or records each image', async () => {
    const registry = await world();
    const rows = await imageRows(suite.sim.cloud, registry);
    const text = formatImageRows(rows, Date.now());
    expect(text.split('\n')[0]).toMatch(
      new RegExp(
        `^${ids[5]}  clawdinator-nixos-20260105000000  available  rev 555555555555  \\d+ (min|h) old  runs nowhere \\(newest\\)$`,
      ),
    );
    expect(text).toContain(`${ids[1]}  clawdinator-nixos-20260101000000  available  rev 111111111111`);
    expect(text).toMatch(new RegExp(`${ids[1]} .* runs on clawdinator-1`));
    expect(text).toMatch(new RegExp(`${ids[0]} .* runs nowhere; recorded for clawdinator-2`));
  });

  it('the weekly ami-prune job prunes and posts what it removed to the ops channel', async () => {
    await world();
    const ami = simAmiDeps(suite.server, suite.sim, { keep: 3 });
    const h = suite.harness({ types: { ami, opsChannelId: OPS_CHANNEL } });
    await h.close();
    const workers = workersOn(suite.server, suite.redis, h, [FLEET_QUEUE]);
    suite.defer(() => workers.close());
    const enqueuer = new Enqueuer(
      { host: '127.0.0.1', port: suite.server.port, maxRetriesPerRequest: null },
      suite.redis,
      h.types,
      testStepSigner,
    );
    suite.defer(() => enqueuer.close());
    const { jobId } = await enqueuer.enqueue({
      type: 'ami-prune',
      data: {},
      principal: { kind: 'schedule', scheduler: 'clawdinator-ami-prune' },
      requestId: 'weekly',
    });
    const queue = new Queue(FLEET_QUEUE, { connection: suite.redis });
    suite.defer(() => queue.close());
    for (let i = 0; i < 400 && (await queue.getJobState(jobId)) !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    expect((await queue.getJob(jobId))?.returnvalue).toMatchObject({ removed: [ids[2]] });
    const events = (await suite.redis.xrange(keys.events, '-', '+')).map(([, f]) => JSON.parse(f[1] as string).event);
    const posted = events.filter((e) => e.jobId === jobId && e.kind === 'result');
    expect(posted).toHaveLength(1);
    expect(posted[0]).toMatchObject({ ok: true, reply: { channelId: OPS_CHANNEL } });
    expect(posted[0].text).toContain(`removed ${ids[2]}  clawdinator-nixos-20260102000000  snapshots: snap-`);
    expect(posted[0].text).toContain(`object: ${object(2)}`);
  });
});
