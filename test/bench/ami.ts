// Bench rows of the image pipeline: the orchestration overhead of a rebuild in the simulated
// cloud with zero delays (a peer builds on its host queue, then import, register, and a canary
// rollout), with its cloud calls; and what a job costs Redis while it waits on an hour-long
// import: one delayed wake-up per 30-second poll, counted with INFO commandstats.

import type { AmiDeps } from '../../jobs/ami/deps.js';
import { ManualClock } from '../../jobs/cloud/clock.js';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../jobs/cloud/sim.js';
import { hostWorkers, rebuild, simAmiDeps } from '../support/ami.js';
import { SIM_BUCKET, simFleet } from '../support/fleet.js';
import { startRedis } from '../support/redis.js';
import { benchFleet } from './harness.js';
import type { Row } from './table.js';

const MEMBERS = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];

export async function rebuildOverhead(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const rollout of ['none', 'canary'] as const) {
    const server = await startRedis();
    const redis = server.client();
    const sim = simFleet(redis, { members: MEMBERS });
    // Zero delays in the cloud; the job's own waits look again every 10 ms.
    const ami = simAmiDeps(server, sim, { waits: { pollMs: 10, importPollMs: 10 } });
    const h = await benchFleet(server, redis, sim, { ami });
    const hosts = hostWorkers(server, redis, h, MEMBERS);
    sim.cloud.resetCalls();
    const t = performance.now();
    const job = await rebuild(h, { rollout });
    const wall = performance.now() - t;
    const { calls } = sim.cloud;
    const ops = calls.byOperation;
    const creates = ['PutObject', 'ImportSnapshot', 'RegisterImage', 'CreateTags', 'RunInstances'];
    const wanted: Record<string, number> = {
      ImportSnapshot: 1,
      RegisterImage: 1,
      CreateTags: 1,
      RunInstances: rollout === 'canary' ? 1 : 0,
    };
    // The image upload is the rebuild's one object; a rollout's replace also saves the
    // member's terraform state (an update of an existing object, not a create of the rebuild).
    const puts = sim.cloud
      .records()
      .filter((r) => r.operation === 'PutObject')
      .map((r) => r.requests[0]?.resource.split(':::')[1] ?? '?');
    const imagePuts = puts.filter((key) => /\/images\//.test(key)).length;
    const once = imagePuts === 1 && creates.every((op) => op === 'PutObject' || (ops[op] ?? 0) === wanted[op]);
    const total = calls.ec2 + calls.s3 + calls.ssm + calls.secrets;
    await hosts.close();
    await h.close();
    sim.close();
    await server.stop();
    rows.push({
      what: `rebuild-ami orchestration, request → ${rollout === 'none' ? 'image available' : 'canary online on it'}, simulated cloud with zero delays (peer build on its host queue, 10 ms polls${rollout === 'canary' ? ', the real synth of the canary’s stack' : ''})`,
      project: `${job.failedReason ? `FAILED (${job.failedReason}) ` : ''}${(wall / 1000).toFixed(2)} s; ${total} cloud calls (EC2 ${calls.ec2}, S3 ${calls.s3}, SSM ${calls.ssm}); creates: ${creates.map((op) => `${op} ${ops[op] ?? 0}`).join(', ')} (objects put: ${puts.map((k) => k.replace(/^[^/]+\//, '')).join(', ')})`,
      floor: '—',
      ratio: null,
      budget: 'printed; each create exactly once',
      ok: job.failedReason === undefined && once,
    });
  }
  rows.push(await importWaitCommands());
  return rows;
}

/**
 * A job waiting on a 60-minute import, on a manual clock: each look at the task moves the
 * simulated clock on by the real poll interval (30 s), so the hour passes in 120 wake-ups of a
 * few milliseconds each. Redis commands are counted with MONITOR between the first and the
 * last look; the idle worker's own background (its blocking pop, its stall checks) is counted
 * alone over as long a time and left out.
 */
async function importWaitCommands(): Promise<Row> {
  const POLL_S = 30;
  const server = await startRedis();
  const redis = server.client();
  const clock = new ManualClock();
  const sim = simFleet(redis, { members: MEMBERS });
  const slow: SimCloud = createSimCloud({
    clock,
    timings: { ...instantSimTimings, importMs: 60 * 60_000 },
    buckets: [SIM_BUCKET],
  });
  const monitor = await server.monitor();
  const counts = monitor.counts;
  let looks = 0;
  // The import's looks move the simulated clock by one poll interval each.
  const cloud = new Proxy(slow, {
    get(target, prop, receiver) {
      if (prop === 'describeImportSnapshot') {
        return async (id: string) => {
          looks++;
          monitor.counting = true;
          const task = await target.describeImportSnapshot(id);
          if (task.status === 'completed') monitor.counting = false;
          await clock.advance(POLL_S * 1000);
          return task;
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
  const WAKE_MS = 20;
  const ami: AmiDeps = simAmiDeps(server, sim, {
    cloud,
    hostJobs: undefined,
    waits: { pollMs: WAKE_MS, importPollMs: WAKE_MS },
  });
  const h = await benchFleet(server, redis, sim, { ami });
  // The idle worker alone, as long as the wait will take.
  monitor.counting = true;
  await new Promise((r) => setTimeout(r, 120 * WAKE_MS * 1.5));
  monitor.counting = false;
  const idle = { ...counts, ms: 120 * WAKE_MS * 1.5 };
  counts.client = 0;
  counts.script = 0;
  const t = performance.now();
  const job = await rebuild(h, { build: 'local' });
  const waitMs = performance.now() - t;
  monitor.stop();
  await h.close();
  slow.close();
  sim.close();
  await server.stop();
  const wakeUps = looks - 1;
  const per = (n: number, idleN: number) => (n - (idleN * waitMs) / idle.ms) / Math.max(1, wakeUps);
  const client = per(counts.client, idle.client);
  const script = per(counts.script, idle.script);
  const perHour = (n: number) => Math.round(n * (3600 / POLL_S));
  // Sent per wake-up, measured: BullMQ's own fetch, lock and delay (≈ 12), the job's progress
  // (2 × updateProgress + XADD), the admission's nonce check (2), the cancel flag (1).
  const ok = job.failedReason === undefined && looks === 3600 / POLL_S + 1 && client <= 25;
  return {
    what: 'a rebuild waiting on a 60-minute import (30 s polls, the hour on a manual clock): Redis commands while it waits (MONITOR), the idle worker’s own left out',
    project: `${job.failedReason ? `FAILED (${job.failedReason}) ` : ''}${looks} looks at the task = ${wakeUps} delayed wake-ups; per wake-up ${client.toFixed(1)} commands sent (+ ${script.toFixed(1)} run inside BullMQ’s scripts) ⇒ ${perHour(client)} sent per hour of import (${perHour(client + script)} with the scripts’); no worker slot held between looks`,
    floor: '—',
    ratio: null,
    budget: 'one delayed wake-up per poll interval, a few commands each (≤ 25 sent)',
    ok,
  };
}
