// Job schedulers on a real redis-server: many hosts upserting at once make one scheduler per
// definition, its jobs pass the real worker's checks, stale and damaged schedulers are put right.
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FLEET_QUEUE, keys } from '../../../jobs/engine/keys.js';
import { JobTypes, type Signer, signRequest } from '../../../jobs/engine/queues.js';
import {
  FLEET_SCHEDULES,
  fleetSchedules,
  type ScheduleDef,
  scheduleSlot,
  upsertSchedules,
} from '../../../jobs/engine/schedulers.js';
import { githubSyncJob } from '../../../jobs/types/github-sync.js';
import { type HealthSweepResult, healthSweep } from '../../../jobs/types/health-sweep.js';
import { fastSettings, harness, keyPair, startWorker } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

const SWEEP_ID = 'clawdinator-health-sweep';
const SYNC_ID = 'clawdinator-github-sync';

let server: TestRedis;
let redis: Redis;
let conn: { host: string; port: number };
let closers: (() => Promise<void>)[] = [];
const h = harness();
const scheduleKeys = keyPair();
h.keys.schedule = scheduleKeys.publicKey;
const signer: Signer = { keyId: 'schedule', key: scheduleKeys.privateKey };

beforeAll(async () => {
  server = await startRedis();
  conn = { host: '127.0.0.1', port: server.port };
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
});
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
});

function types(): JobTypes {
  return new JobTypes([
    healthSweep({ redis: server.client(), fleet: async () => ['clawdinator-1'] }),
    githubSyncJob({}),
  ]);
}

function queue(): Queue {
  const q = new Queue(FLEET_QUEUE, { connection: conn });
  closers.push(() => q.close());
  return q;
}

function upsert(workerId: string, defs: ScheduleDef[] = FLEET_SCHEDULES, q = queue()) {
  return upsertSchedules({ queue: q, redis: server.client(), signer, types: types(), defs, workerId });
}

async function pendingOf(q: Queue, id: string): Promise<Job[]> {
  return (await q.getJobs(['delayed', 'wait', 'prioritized', 'paused'])).filter((j) => j.repeatJobKey === id);
}

describe('job schedulers', () => {
  it('five hosts upserting at once make one scheduler; its job passes the real worker', async () => {
    // A short period, so its first run (in the middle of the next slot) comes soon.
    const defs = fleetSchedules({ healthSweepMs: 2000 });
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => upsert(`clawdinator-${n}-1000`, defs)));
    expect(results.flatMap((r) => r.upserted)).toEqual([SWEEP_ID, SYNC_ID]);
    expect(results.filter((r) => r.leader).every((r) => r.verified)).toBe(true);
    expect(results.filter((r) => !r.leader)).toEqual(
      results.filter((r) => !r.leader).map(() => ({ leader: false, upserted: [], removed: [], verified: false })),
    );
    const q = queue();
    const schedulers = await q.getJobSchedulers();
    expect(schedulers.map((s) => [s.key, s.name, s.every]).sort()).toEqual([
      [SYNC_ID, 'github-sync', 900_000],
      [SWEEP_ID, 'health-sweep', 2000],
    ]);
    // Runs fall in the middle of their slots: a late pickup or a skewed clock stays in its slot.
    const sweep = schedulers.find((s) => s.key === SWEEP_ID);
    expect(Number(sweep?.next) % 2000).toBe(1000);
    expect(await pendingOf(q, SWEEP_ID)).toHaveLength(1);
    expect(await redis.exists(keys.schedulerLeader)).toBe(0);

    // Its first run: the worker admits and runs it.
    const w = startWorker(
      FLEET_QUEUE,
      { ...h.deps(server.client(), conn), types: types(), schedules: defs },
      fastSettings,
    );
    closers.push(() => w.close());
    const outcome = await new Promise<string>((resolve) => {
      w.worker.on('completed', (job) => {
        // The github-sync schedule's first run is due at once too; this test follows the sweep.
        if (job.repeatJobKey !== SWEEP_ID) return;
        resolve(`completed ${job.repeatJobKey}: ${(job.returnvalue as HealthSweepResult).summary}`);
      });
      w.worker.on('failed', (job, err) => resolve(`failed ${job?.id}: ${err.message}`));
    });
    expect(outcome).toBe(`completed ${SWEEP_ID}: 1 hosts: 0 up, 1 missing, 0 silent; 0 alerts`);
    // The next run is due in 2 s: no worker takes it while the test goes on or closes.
    await w.close();
    expect(await redis.exists(keys.health('clawdinator-1'))).toBe(1);
    // The run added its successor; a later leader finds everything as defined and changes nothing.
    expect(await pendingOf(q, SWEEP_ID)).toHaveLength(1);
    expect(await upsert('clawdinator-2-1000', defs)).toEqual({
      leader: true,
      upserted: [],
      removed: [],
      verified: true,
    });
  });

  it('a caller that does not hold the lease touches nothing', async () => {
    await redis.set(keys.schedulerLeader, 'clawdinator-9-1', 'PX', 30_000);
    expect(await upsert('clawdinator-2-1000')).toEqual({ leader: false, upserted: [], removed: [], verified: false });
    expect(await queue().getJobSchedulers()).toEqual([]);
    expect(await redis.get(keys.schedulerLeader)).toBe('clawdinator-9-1');
  });

  it('stale schedulers of ours are removed, others’ kept', async () => {
    const q = queue();
    await q.upsertJobScheduler('clawdinator-old-sync', { every: 900_000 }, { name: 'github-sync', data: {} });
    await q.upsertJobScheduler('someone-else', { every: 900_000 }, { name: 'theirs', data: {} });
    const result = await upsert('clawdinator-1-1000', FLEET_SCHEDULES, q);
    expect(result).toEqual({
      leader: true,
      upserted: [SWEEP_ID, SYNC_ID],
      removed: ['clawdinator-old-sync'],
      verified: true,
    });
    expect((await q.getJobSchedulers()).map((s) => s.key).sort()).toEqual([SYNC_ID, SWEEP_ID, 'someone-else']);
    expect(await pendingOf(q, 'clawdinator-old-sync')).toEqual([]);
  });

  it('a changed definition, a forged template and duplicate jobs are each put right', async () => {
    const q = queue();
    await upsert('clawdinator-1-1000', [{ id: SWEEP_ID, type: 'health-sweep', every: 120_000, data: {} }], q);
    const changed = await upsert('clawdinator-1-1000', FLEET_SCHEDULES, q);
    expect(changed).toMatchObject({ upserted: [SWEEP_ID, SYNC_ID], verified: true });
    expect((await q.getJobSchedulers()).find((j) => j.key === SWEEP_ID)?.every).toBe(60_000);

    // A template signed with another key (written by anyone who can write to Redis) is replaced.
    const forged = signRequest(
      { keyId: 'schedule', key: keyPair().privateKey },
      {
        type: 'health-sweep',
        jobId: '*',
        schema: 1,
        data: {},
        principal: { kind: 'schedule', scheduler: SWEEP_ID },
        requestId: SWEEP_ID,
      },
    );
    await q.upsertJobScheduler(SWEEP_ID, { every: 60_000 }, { name: 'health-sweep', data: forged });
    expect(await upsert('clawdinator-1-1000', FLEET_SCHEDULES, q)).toMatchObject({
      upserted: [SWEEP_ID],
      verified: true,
    });
    const scheduler = (await q.getJobSchedulers()).find((j) => j.key === SWEEP_ID);
    const stored = scheduler?.template?.data;
    expect(stored.signature).not.toBe(forged.signature);
    // Re-made in the middle of its slot (the forged one ran at whatever phase it was added).
    expect(Number(scheduler?.next) % 60_000).toBe(30_000);

    // A second waiting job of the same scheduler, as the concurrent-upsert bug left them.
    await q.add('health-sweep', stored, { jobId: 'stray-1', delay: 600_000, repeatJobKey: SWEEP_ID });
    expect(await pendingOf(q, SWEEP_ID)).toHaveLength(2);
    expect(await upsert('clawdinator-1-1000', FLEET_SCHEDULES, q)).toMatchObject({
      upserted: [SWEEP_ID],
      verified: true,
    });
    expect((await pendingOf(q, SWEEP_ID)).map((j) => j.id)).not.toContain('stray-1');
    expect(await pendingOf(q, SWEEP_ID)).toHaveLength(1);
  });

  it('a signed template added again from Redis runs once per slot, by the worker’s clock', async () => {
    const q = queue();
    const defs: ScheduleDef[] = [{ id: SWEEP_ID, type: 'health-sweep', every: 3_600_000, data: {} }];
    await upsert('clawdinator-1-1000', defs, q);
    // What anyone who can write to Redis can read and add again: the signed template.
    const template = (await q.getJobSchedulers())[0]?.template?.data;
    expect(template.signed.principal).toEqual({ kind: 'schedule', scheduler: SWEEP_ID });
    let clock = Date.UTC(2026, 10, 24, 20, 0, 0);
    const ran: string[] = [];
    const refused: string[] = [];
    const w = startWorker(
      FLEET_QUEUE,
      { ...h.deps(server.client(), conn), types: types(), schedules: defs, now: () => clock },
      fastSettings,
    );
    closers.push(() => w.close());
    w.worker.on('completed', (job) => ran.push(job.id as string));
    w.worker.on('failed', (job, err) => refused.push(`${job?.id}: ${err.message}`));
    // Copies of the scheduler's own run: its template and BullMQ options (a run's `repeat`,
    // written into the job hash as a Redis writer would; Queue.add would take them for a
    // legacy repeatable job), due now. Added while the queue is paused, so each is complete
    // before a worker sees it.
    const [run] = await pendingOf(q, SWEEP_ID);
    const { repeat, ...opts } = run?.opts ?? {};
    const replay = async (tag: string, n: number) => {
      await q.pause();
      for (let i = 0; i < n; i++) {
        const id = `${tag}-${i}`;
        await q.add('health-sweep', template, { ...opts, jobId: id, delay: 0, repeatJobKey: SWEEP_ID });
        await redis.hset(q.toKey(id), 'opts', JSON.stringify({ ...opts, repeat, jobId: id, delay: 0 }));
      }
      await q.resume();
      const deadline = Date.now() + 15_000;
      while (ran.length + refused.length < n) {
        if (Date.now() > deadline) throw new Error(`the replayed runs did not all end: ${[...ran, ...refused]}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    await replay('copy', 5);
    expect(ran).toHaveLength(1);
    expect(refused.sort()).toEqual(
      ['copy-0', 'copy-1', 'copy-2', 'copy-3', 'copy-4']
        .filter((id) => id !== ran[0])
        .map((id) => `${id}: rejected: replayed schedule run: ${SWEEP_ID} already ran in this slot`),
    );
    const slot = scheduleSlot(defs[0] as ScheduleDef, clock).slot;
    expect(await redis.get(keys.scheduleSlot(FLEET_QUEUE, SWEEP_ID, slot))).toBe(ran[0]);

    // The next slot on the worker's clock: one run again, however many copies.
    clock += 3_600_000;
    ran.length = 0;
    refused.length = 0;
    await replay('later', 5);
    expect(ran).toHaveLength(1);
    expect(refused).toHaveLength(4);
  });

  it('refuses definitions that could not run, before taking the lease', async () => {
    await expect(
      upsert('clawdinator-1-1000', [{ id: 'clawdinator-x', type: 'two-step', every: 60_000, data: {} }]),
    ).rejects.toThrow('schedule clawdinator-x: two-step is not a scheduled job type');
    await expect(
      upsert('clawdinator-1-1000', [{ id: 'other-x', type: 'health-sweep', every: 60_000, data: {} }]),
    ).rejects.toThrow(/id must be clawdinator-/);
    await expect(
      upsert('clawdinator-1-1000', [
        { id: 'clawdinator-x', type: 'health-sweep', every: 60_000, pattern: '* * * * *', data: {} },
      ]),
    ).rejects.toThrow(/exactly one of every and pattern/);
    await expect(
      upsertSchedules({
        queue: queue(),
        redis,
        signer: h.gateway,
        types: types(),
        defs: FLEET_SCHEDULES,
        workerId: 'clawdinator-1-1000',
      }),
    ).rejects.toThrow(/signed with the "schedule" key/);
    expect(await redis.exists(keys.schedulerLeader)).toBe(0);
  });
});
