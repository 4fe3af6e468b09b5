// The rebuild-ami job on a simulated fleet (instant timings), with the real worker, the real
// job types and each member's host-queue worker: a peer builds and uploads, the job imports,
// registers and tags, and rolls out to the canary or to all, one at a time; the refusals
// (a hostile or unknown rev, the same sha twice, no builder, a scheduled rollout) change
// nothing; an import AWS deletes ends the job with AWS's message.

import { Queue, UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import type { ImageBuilder } from '../../../jobs/ami/builder.js';
import { OBJECT_TAG, REVISION_TAG } from '../../../jobs/ami/image.js';
import type { Deployer } from '../../../jobs/deploy/types.js';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { Enqueuer } from '../../../jobs/engine/queues.js';
import { FLEET_ROLLOUT_LOCK } from '../../../jobs/engine/rollout.js';
import { fleetStatus } from '../../../jobs/status.js';
import { shaLockKey } from '../../../jobs/types/rebuild-ami.js';
import { UsageError } from '../../../lib/errors.js';
import { hostWorkers, MAIN_SHA, rebuild, simAmiDeps, workersOn } from '../../support/ami.js';
import { SIM_AMI, SIM_BUCKET } from '../../support/fleet.js';
import { testStepSigner, testWorkersKey } from '../../support/jobs.js';
import { lifecycleSuite } from '../../support/lifecycle.js';
import { HOSTILE_REVS } from '../../support/revs.js';

const MEMBERS = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
const suite = lifecycleSuite({ members: MEMBERS });

function setUp(options: { ami?: Parameters<typeof simAmiDeps>[2]; deployer?: (d: Deployer) => Deployer } = {}) {
  const ami = simAmiDeps(suite.server, suite.sim, options.ami);
  const h = suite.harness({ types: { ami }, deployer: options.deployer });
  const hosts = hostWorkers(suite.server, suite.redis, h, MEMBERS);
  suite.defer(() => hosts.close());
  return { h, ami };
}

describe('rebuild-ami', () => {
  it('builds on a peer, imports, registers and tags image and snapshot, each create once; no rollout', async () => {
    const { h } = setUp();
    const { cloud } = suite.sim;
    cloud.resetCalls();
    const job = await rebuild(h, {});
    expect(job.failedReason).toBeUndefined();
    const result = job.returnvalue as { summary: string; imageId: string; sha: string; rolledOut: string[] };
    expect(result.sha).toBe(MAIN_SHA);
    expect(result.rolledOut).toEqual([]);
    // Built by a member other than the job's own host (clawdinator-1).
    expect(result.summary).toMatch(
      /^ami-[0-9a-f]+ \(clawdinator-nixos-\d{14}\) from 5a4dbee \(main\), built by clawdinator-2: available$/,
    );

    const image = await cloud.describeImage(result.imageId);
    expect(image.state).toBe('available');
    expect(image.bootMode).toBe('legacy-bios');
    expect(image.architecture).toBe('x86_64');
    expect(image.tags).toMatchObject({
      Name: image.name,
      clawdinator: 'true',
      [REVISION_TAG]: MAIN_SHA,
      'clawdinator:built-by': 'clawdinator-2',
      [OBJECT_TAG]: expect.stringMatching(/^images\/clawdinator-nixos-\d{14}-5a4dbee\.raw$/),
    });
    // The snapshot is tagged the same: prune may delete it later.
    const snapshotTags = cloud
      .records()
      .filter((r) => r.operation === 'CreateTags')
      .flatMap((r) => r.requests);
    expect(snapshotTags).toHaveLength(1);
    expect(snapshotTags[0]?.resource).toBe(`arn:aws:ec2:eu-central-1::snapshot/${image.rootSnapshotId}`);
    expect(snapshotTags[0]?.context['aws:RequestTag/clawdinator']).toBe('true');

    const object = await cloud.headObject(SIM_BUCKET, image.tags[OBJECT_TAG] as string);
    expect(object?.sha256).toMatch(/^[0-9a-f]{64}$/);
    const ops = cloud.calls.byOperation;
    expect([ops.PutObject, ops.ImportSnapshot, ops.RegisterImage, ops.CreateTags]).toEqual([1, 1, 1, 1]);
    expect(ops.RunInstances).toBeUndefined();
    // No member changed; the per-sha lock is gone.
    expect((await suite.sim.registry.read()).registry['clawdinator-2']?.ami).toBe(SIM_AMI);
    expect(await suite.redis.get(shaLockKey(MAIN_SHA))).toBeNull();
    expect((await suite.sim.memory.read('ops.md')).content.toString()).toContain(
      `rebuild-ami: ${result.imageId} (${image.name}) from ${MAIN_SHA} (main), built by clawdinator-2`,
    );
  });

  it('canary: replaces the first member in canary order onto the new image; /status flags the others', async () => {
    const { h } = setUp();
    const before = await suite.sim.cloud.listFleetInstances();
    const job = await rebuild(h, { rev: 'v2', rollout: 'canary' });
    expect(job.failedReason).toBeUndefined();
    const { imageId, summary, rolledOut } = job.returnvalue as {
      imageId: string;
      summary: string;
      rolledOut: string[];
    };
    // clawdinator-1 runs the job: it goes last, so clawdinator-2 is the canary.
    expect(rolledOut).toEqual(['clawdinator-2']);
    expect(summary).toContain(`canary online on ${imageId} (clawdinator-2)`);
    const after = await suite.sim.cloud.listFleetInstances();
    const on = (name: string) => after.find((i) => i.name === name);
    expect(on('clawdinator-2')?.imageId).toBe(imageId);
    expect(on('clawdinator-2')?.instanceId).not.toBe(before.find((i) => i.name === 'clawdinator-2')?.instanceId);
    expect(on('clawdinator-1')?.imageId).toBe(SIM_AMI);
    expect(on('clawdinator-3')?.imageId).toBe(SIM_AMI);
    const registry = (await suite.sim.registry.read()).registry;
    expect(registry['clawdinator-2']?.ami).toBe(imageId);
    expect(registry['clawdinator-3']?.ami).toBe(SIM_AMI);

    const status = await fleetStatus({
      registry: async () => (await suite.sim.registry.read()).registry,
      cloud: suite.sim.cloud,
      redis: suite.redis,
      queues: [],
      workersKey: testWorkersKey,
    });
    expect(status.newestAmi).toBe(imageId);
    expect(status.members.map((m) => [m.name, m.olderImage])).toEqual([
      ['clawdinator-1', true],
      ['clawdinator-2', false],
      ['clawdinator-3', true],
    ]);
    expect(await suite.redis.get('clawdinator:fleet-rollout-lock')).toBeNull();
  });

  it('a rollout waits (re-delayed) while a deploy holds the fleet, then goes on', async () => {
    const { h } = setUp();
    await h.queue.add('deploy', {}, { jobId: 'deploy-7', delay: 600_000 });
    await suite.redis.set(FLEET_ROLLOUT_LOCK, 'deploy-7');
    const { jobId } = await h.enqueuer('operator').enqueue({
      type: 'rebuild-ami',
      data: { rollout: 'canary' },
      principal: { kind: 'cli', operator: 'ops' },
      requestId: 'waits-for-the-fleet',
    });
    let waiting = false;
    for (let i = 0; i < 400 && !waiting; i++) {
      const events = (await suite.redis.xrange(keys.events, '-', '+')).map(([, f]) => JSON.parse(f[1] as string).event);
      waiting = events.some(
        (e) =>
          e.jobId === jobId &&
          e.text === 'rollout: waiting for deploy-7 (a deploy or rollout) to finish with the fleet',
      );
      if (!waiting) await new Promise((r) => setTimeout(r, 25));
    }
    expect(waiting).toBe(true);
    expect(suite.sim.cloud.calls.byOperation.RunInstances).toBeUndefined();
    expect(['delayed', 'active']).toContain(await h.queue.getJobState(jobId));
    await h.queue.remove('deploy-7');
    const job = await h.finished(jobId);
    expect(job.failedReason).toBeUndefined();
    expect(suite.sim.cloud.calls.byOperation.RunInstances).toBe(1);
    expect(await suite.redis.get(FLEET_ROLLOUT_LOCK)).toBeNull();
  });

  it('all: one at a time, and stops at the first failure with the rest untouched', async () => {
    const { h } = setUp({
      deployer: (sim) => ({
        planInstance: (name, o, c) => sim.planInstance(name, o, c),
        applyInstance: async (name, o, c) => {
          // A refusal no retry fixes (as the runner's PlanRefusedError becomes).
          if (name === 'clawdinator-3')
            throw new UnrecoverableError('terraform apply: Error: InsufficientInstanceCapacity');
          return sim.applyInstance(name, o, c);
        },
      }),
    });
    const job = await rebuild(h, { rollout: 'all' });
    expect(job.failedReason).toMatch(
      /^rebuild-ami: rollout failed: stopped at clawdinator-3: .*InsufficientInstanceCapacity.*; untouched: clawdinator-1$/,
    );
    const instances = await suite.sim.cloud.listFleetInstances();
    const images = await suite.sim.cloud.listAmis();
    const newest = images[0]?.imageId as string;
    expect(instances.find((i) => i.name === 'clawdinator-2')?.imageId).toBe(newest);
    expect(instances.find((i) => i.name === 'clawdinator-1')?.imageId).toBe(SIM_AMI);
    // Locks released: the fleet, the member, the sha.
    expect(await suite.redis.get('clawdinator:fleet-rollout-lock')).toBeNull();
    expect(await suite.redis.get('clawdinator:instance-lock:clawdinator-3')).toBeNull();
    expect(await suite.redis.get(shaLockKey(MAIN_SHA))).toBeNull();
  });

  it('an import AWS deletes ends the job with AWS’s message, and nothing is registered', async () => {
    const { h } = setUp();
    suite.sim.cloud.faults.arm('import-task', {
      message: 'ClientError: Disk validation failed [Unsupported specified file format]',
    });
    const job = await rebuild(h, {});
    expect(job.failedReason).toMatch(
      /^rebuild-ami: import failed: ImportSnapshot import-snap-[0-9a-f]+: failed: ClientError: Disk validation failed \[Unsupported specified file format\] \(ImportTask\.deleted\)$/,
    );
    expect(job.attemptsMade).toBe(1);
    expect(suite.sim.cloud.calls.byOperation.RegisterImage).toBeUndefined();
    expect(await suite.redis.get(shaLockKey(MAIN_SHA))).toBeNull();
  });

  it('AWS failing a look at the task (throttled, 5xx) is looked at again later, not a failure', async () => {
    const { h } = setUp();
    suite.sim.cloud.faults.arm('DescribeImportSnapshotTasks', { times: 2, code: 'RequestLimitExceeded' });
    const job = await rebuild(h, {});
    expect(job.failedReason).toBeUndefined();
    expect(job.attemptsMade).toBe(1);
    expect(suite.sim.cloud.calls.byOperation.DescribeImportSnapshotTasks).toBe(3);
    const events = (await suite.redis.xrange(keys.events, '-', '+')).map(([, f]) => JSON.parse(f[1] as string).event);
    expect(
      events.filter((e) => e.jobId === job.id && /RequestLimitExceeded from AWS, looking again later$/.test(e.text)),
    ).toHaveLength(2);
  });

  it('a refused ImportSnapshot (the vmimport role unusable) fails at once, naming the stage', async () => {
    const { h } = setUp();
    suite.sim.cloud.faults.arm('import', {
      code: 'InvalidParameter',
      message: 'role vmimport not found or not usable by VM Import',
    });
    const job = await rebuild(h, {});
    expect(job.failedReason).toBe(
      'rebuild-ami: import failed: ImportSnapshot s3://clawdinator-test-bucket/' +
        `${(await suite.sim.cloud.listKeys(SIM_BUCKET, 'images/'))[0]}: role vmimport not found or not usable by VM Import (InvalidParameter)`,
    );
    expect(job.attemptsMade).toBe(1);
  });

  it('refuses hostile revs at enqueue and an unknown rev before any cloud call', async () => {
    const { h } = setUp();
    const enqueuer = h.enqueuer('operator');
    suite.sim.cloud.resetCalls();
    for (const rev of HOSTILE_REVS) {
      await expect(
        enqueuer.enqueue({
          type: 'rebuild-ami',
          data: { rev },
          principal: { kind: 'cli', operator: 'ops' },
          requestId: 'r',
        }),
      ).rejects.toBeInstanceOf(UsageError);
    }
    const counts = await h.queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
    const unknown = await rebuild(h, { rev: 'deadbeef' });
    expect(unknown.failedReason).toBe('refused: deadbeef is not a commit, branch or tag of openclaw/clawdinators');
    expect(suite.sim.cloud.calls.ec2 + suite.sim.cloud.calls.s3).toBe(0);
  });

  it('a second request for the same sha is refused, naming the job that builds it', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let started: () => void = () => {};
    const building = new Promise<void>((r) => {
      started = r;
    });
    const standIn = simAmiDeps(suite.server, suite.sim).builder;
    // The build holds until released: the first job is in progress meanwhile.
    const slow: ImageBuilder = {
      kind: 'slow stand-in',
      async build(request) {
        started();
        await held;
        return standIn.build(request);
      },
    };
    const { h } = setUp({ ami: { builder: slow } });
    const first = await h.enqueuer('operator').enqueue({
      type: 'rebuild-ami',
      data: {},
      principal: { kind: 'cli', operator: 'ops' },
      requestId: 'first',
    });
    await building;
    const second = await rebuild(h, { rev: MAIN_SHA.slice(0, 9) });
    expect(second.failedReason).toBe(
      `already in progress: ${first.jobId} is building ${MAIN_SHA.slice(0, 12)} (${MAIN_SHA.slice(0, 9)})`,
    );
    release();
    expect((await h.finished(first.jobId)).failedReason).toBeUndefined();
    expect(suite.sim.cloud.calls.byOperation.ImportSnapshot).toBe(1);
  });

  it('refuses when no member but the job’s own host can build', async () => {
    const ami = simAmiDeps(suite.server, suite.sim);
    const h = suite.harness({ types: { ami } });
    // The others' heartbeats gone: only clawdinator-1 (the job's host) is healthy.
    await suite.redis.del('clawdinator:heartbeat:clawdinator-2', 'clawdinator:heartbeat:clawdinator-3');
    const job = await rebuild(h, {});
    expect(job.failedReason).toBe(
      'rebuild-ami: build failed: refused: no healthy member other than clawdinator-1 (which runs this job) can build the image: spawn one, or build on a machine with Nix (clawdinator ami rebuild --local)',
    );
    expect(suite.sim.cloud.calls.byOperation.PutObject).toBeUndefined();
    expect(await suite.redis.get(shaLockKey(MAIN_SHA))).toBeNull();
  });

  it('a scheduled rebuild never rolls out', async () => {
    const ami = simAmiDeps(suite.server, suite.sim);
    const h = suite.harness({ types: { ami } });
    // The schedule's own jobs are signed with the workers' key: a worker that admits them.
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
      type: 'rebuild-ami',
      data: { rollout: 'canary' },
      principal: { kind: 'schedule', scheduler: 'clawdinator-ami-rebuild' },
      requestId: 'scheduled',
    });
    const queue = new Queue(FLEET_QUEUE, { connection: suite.redis });
    suite.defer(() => queue.close());
    let state = await queue.getJobState(jobId);
    for (let i = 0; i < 400 && state !== 'failed' && state !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      state = await queue.getJobState(jobId);
    }
    expect((await queue.getJob(jobId))?.failedReason).toBe('refused: a scheduled rebuild never rolls out by itself');
    expect(suite.sim.cloud.calls.ec2 + suite.sim.cloud.calls.s3).toBe(0);
  });

  it('--local builds and uploads in the job’s own process (no build job)', async () => {
    const ami = simAmiDeps(suite.server, suite.sim, {
      hostJobs: undefined,
      hostName: undefined,
      builtBy: 'local-laptop',
    });
    const h = suite.harness({ types: { ami } });
    const job = await rebuild(h, { build: 'local' });
    expect(job.failedReason).toBeUndefined();
    expect((job.returnvalue as { summary: string }).summary).toContain('built by local-laptop');
    const steps = Object.keys(job.data.steps ?? {});
    expect(steps).toEqual(expect.arrayContaining(['resolve', 'build', 'upload', 'import', 'import-wait', 'register']));
    expect(steps).not.toContain('build-wait');
  });
});
