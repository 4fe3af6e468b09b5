import type { Redis } from 'ioredis';
import { hostCommandParameters } from '../../infra/host-document.js';
import { readHeartbeats } from '../../jobs/engine/heartbeat.js';
import { deployTokenSecret } from '../../jobs/fastlane/deps.js';
import { staticResolver } from '../../jobs/github/revision.js';
import { publicHalf } from '../../jobs/signing.js';
import { type SimFleet, simFleet } from '../support/fleet.js';
import { testStepSigner } from '../support/jobs.js';
import { startRedis } from '../support/redis.js';
import { benchFleet } from './harness.js';
import type { Row } from './table.js';

const MEMBERS = Array.from({ length: 10 }, (_, i) => `clawdinator-${i + 1}`);
const POLL_MS = 10;
const TOKEN = 'BenchFlakeToken000000000000000001';
// The branch head the deploy resolves (test/support/lane.ts's refs; that module needs vitest).
const MAIN_SHA = '5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5';
const WORKERS_KEY = publicHalf(testStepSigner.key);

interface Run {
  wallMs: number;
  ssm: number;
  /** Commands Redis received from clients, and those run inside scripts (BullMQ's Lua). */
  redis: { client: number; script: number };
  /** switch-start commands per member. */
  starts: Map<string, number>;
  /** Members whose heartbeat reports the sha at the end. */
  onSha: number;
  failed?: string;
}

/** The revision a member's heartbeat reports, verified with the workers' key as the job reads it. */
async function revisionOf(redis: Redis, member: string): Promise<string | undefined> {
  return (await readHeartbeats(redis, [member], WORKERS_KEY)).get(member)?.revision;
}

async function outcome(sim: SimFleet, redis: Redis, wallMs: number, counts: Run['redis'], failed?: string) {
  const starts = new Map<string, number>();
  for (const c of sim.cloud.sentCommands()) {
    if (c.parameters.action === 'switch-start') starts.set(c.host, (starts.get(c.host) ?? 0) + 1);
  }
  let onSha = 0;
  for (const m of MEMBERS) {
    if ((await revisionOf(redis, m)) === MAIN_SHA) onSha++;
  }
  return { wallMs, ssm: sim.cloud.calls.ssm, redis: { ...counts }, starts, onSha, failed } satisfies Run;
}

/** The deploy job, run by the real worker, queued by an operator's Enqueuer. */
async function project(): Promise<Run> {
  const server = await startRedis();
  const redis = server.client();
  const sim = simFleet(redis, { members: MEMBERS });
  const lane = {
    cloud: sim.cloud,
    resolver: staticResolver({ repo: 'openclaw/clawdinators', branch: 'main', refs: { main: MAIN_SHA } }),
    tokens: { mint: async () => TOKEN },
    waits: { pollMs: POLL_MS, switchTimeoutMs: 60_000, verifyTimeoutMs: 60_000, handoffMs: 60_000 },
  };
  const h = await benchFleet(server, redis, sim, { lane });
  const mon = await server.monitor();
  sim.cloud.resetCalls();
  mon.counting = true;
  const t = performance.now();
  const { jobId } = await h.enqueuer().enqueue({
    type: 'deploy',
    data: { target: 'all' },
    principal: { kind: 'cli', operator: 'ops' },
    requestId: 'bench-deploy',
  });
  const job = await h.finished(jobId);
  const wallMs = performance.now() - t;
  mon.counting = false;
  const run = await outcome(sim, redis, wallMs, mon.counts, job.failedReason);
  mon.stop();
  await h.close();
  sim.close();
  await server.stop();
  return run;
}

/** The same switches through the simulated cloud alone, one member after the other. */
async function floor(): Promise<Run> {
  const server = await startRedis();
  const redis = server.client();
  const sim = simFleet(redis, { members: MEMBERS });
  const { cloud } = sim;
  const ask = async (instanceId: string, params: Parameters<typeof hostCommandParameters>[0]) => {
    const id = await cloud.sendCommand(
      [instanceId],
      { document: 'clawdinator-host', parameters: hostCommandParameters(params) },
      { comment: 'bench' },
    );
    const result = await cloud.waitForInvocation(id, instanceId, { timeoutSeconds: 60 });
    return JSON.parse(result.stdout.trim().split('\n').at(-1) as string) as { state: string };
  };
  const later = () => new Promise((r) => setTimeout(r, POLL_MS));
  const mon = await server.monitor();
  cloud.resetCalls();
  mon.counting = true;
  const t = performance.now();
  const instances = await cloud.listFleetInstances();
  for (const [i, m] of MEMBERS.entries()) {
    const instanceId = instances.find((x) => x.name === m)?.instanceId as string;
    const run = `bench-${i}`;
    await cloud.putSecret(deployTokenSecret(m), TOKEN, { clientToken: run });
    await ask(instanceId, { action: 'switch-start', sha: MAIN_SHA, run });
    while ((await ask(instanceId, { action: 'switch-status', run })).state === 'running') await later();
    await cloud.deleteSecret(deployTokenSecret(m));
    for (;;) {
      if ((await revisionOf(redis, m)) === MAIN_SHA) break;
      await later();
    }
  }
  const wallMs = performance.now() - t;
  mon.counting = false;
  const run = await outcome(sim, redis, wallMs, mon.counts);
  mon.stop();
  sim.close();
  await server.stop();
  return run;
}

export async function deployOverhead(): Promise<Row[]> {
  const bare = await floor();
  const ours = await project();
  const once = MEMBERS.every((m) => ours.starts.get(m) === 1);
  const ok = ours.failed === undefined && ours.onSha === MEMBERS.length && once;
  const show = (r: Run) =>
    `${(r.wallMs / 1000).toFixed(2)} s; SSM ${r.ssm} calls; Redis ${r.redis.client} commands sent (+ ${r.redis.script} inside scripts)`;
  return [
    {
      what: `deploy orchestration, request → ${MEMBERS.length} members switched one by one and verified by their heartbeats, simulated cloud with zero delays (${POLL_MS} ms looks, a flake token per switch)`,
      project: `${ours.failed ? `FAILED (${ours.failed.split('\n')[0]}) ` : ''}${show(ours)}; switch-start per member: ${once ? 'exactly 1' : [...ours.starts.entries()].map(([m, n]) => `${m} ${n}`).join(', ')}; ${ours.onSha}/${MEMBERS.length} on the sha`,
      floor: `the same switches straight through the simulated cloud: ${show(bare)}`,
      ratio: ours.wallMs / bare.wallMs,
      budget: 'printed with its cloud calls; each switch started exactly once',
      ok,
    },
  ];
}
