// `clawdinator jobs …`: the built binary against a real redis-server, with jobs made by the
// real enqueuer and worker.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope, Principal } from '../../jobs/engine/envelope.js';
import { FLEET_QUEUE, keys } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { HEALTH_SWEEP } from '../../jobs/types/health-sweep.js';
import { jobTypes } from '../../jobs/types/index.js';
import { ALICE, alicePrincipal as alice, policy, READER_ROLE } from '../support/bot.js';
import { runCli, tempDir } from '../support/cli.js';
import { enqueuer, fastSettings, harness, setEffectsClient, startWorker } from '../support/jobs.js';
import { startRedis, type TestRedis } from '../support/redis.js';

let server: TestRedis;
let redis: Redis;
let conn: { host: string; port: number };
let env: Record<string, string>;
const h = harness();
const reader: Principal = { ...alice, roles: [READER_ROLE] };

/** The public keys of the test's principals, as CLAWDINATOR_JOB_PUBLIC_KEYS gives them. */
function publicKeysEnv(): Record<string, string> {
  const pem = (id: string) => h.keys[id]?.export({ type: 'spki', format: 'pem' }).toString() as string;
  return {
    CLAWDINATOR_JOB_PUBLIC_KEYS: JSON.stringify({ gateway: pem('gateway'), 'operator:ops': pem('operator:ops') }),
  };
}
let closers: (() => Promise<void>)[] = [];

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
  setEffectsClient(redis);
  env = { CLAWDINATOR_REDIS_URL: server.url };
});
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
});

/** The test job types and the production ones, so the CLI (which knows only the latter) can retry. */
function types(): JobTypes {
  return new JobTypes([...h.types.all(), ...jobTypes({ redis, registry: async () => ({}) })]);
}

function worker() {
  const w = startWorker(FLEET_QUEUE, { ...h.deps(server.client(), conn, policy), types: types() }, fastSettings);
  closers.push(() => w.close());
  return w;
}

async function enqueue(type: string, data: unknown, principal: Principal, requestId: string): Promise<string> {
  const e = enqueuer(server.client(), conn, types(), h.gateway);
  closers.push(() => e.close());
  return (await e.enqueue({ type, data, principal, requestId })).jobId;
}

async function finished(jobId: string): Promise<Job<Envelope>> {
  const q = new Queue(FLEET_QUEUE, { connection: conn });
  closers.push(() => q.close());
  for (let i = 0; i < 400; i++) {
    const state = await q.getJobState(jobId);
    if (state === 'completed' || state === 'failed') return (await q.getJob(jobId)) as Job<Envelope>;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${jobId} did not finish`);
}

/** A failed job (refused by policy) and a waiting one, newest last. */
async function failedAndWaiting(): Promise<{ failed: string; waiting: string }> {
  worker();
  const failed = await enqueue(HEALTH_SWEEP, {}, reader, 'denied');
  await finished(failed);
  for (const close of closers.splice(0).reverse()) await close();
  const waiting = await enqueue('two-step', { name: 'clawdinator-3', pauseMs: 0 }, alice, 'waits');
  return { failed, waiting };
}

const SUMMARY_KEYS = [
  'attempts',
  'createdAt',
  'failedReason',
  'finishedAt',
  'id',
  'instance',
  'percent',
  'queue',
  'requestedBy',
  'startedAt',
  'state',
  'step',
  'type',
];

describe('clawdinator jobs (CLI)', () => {
  it('list --json: job summaries, newest first, filtered; the human list is an aligned table', async () => {
    const { failed, waiting } = await failedAndWaiting();
    const [all, failedOnly, human, running] = await Promise.all([
      runCli(['jobs', 'list', '--json'], { env }),
      runCli(['jobs', 'list', '--filter', 'failed', '--json'], { env }),
      runCli(['jobs', 'list'], { env }),
      runCli(['jobs', 'list', '--filter', 'running'], { env }),
    ]);
    expect(all.code).toBe(0);
    const jobs = JSON.parse(all.stdout) as Record<string, unknown>[];
    expect(jobs.map((j) => j.id)).toEqual([waiting, failed]);
    for (const j of jobs) expect(Object.keys(j).sort()).toEqual(SUMMARY_KEYS);
    expect(jobs[0]).toMatchObject({
      type: 'two-step',
      state: 'waiting',
      queue: FLEET_QUEUE,
      requestedBy: `alice (Discord ${ALICE})`,
      instance: 'clawdinator-3',
      createdAt: expect.any(Number),
      startedAt: null,
      attempts: 0,
    });
    expect(jobs[1]).toMatchObject({
      type: HEALTH_SWEEP,
      state: 'failed',
      failedReason: expect.stringMatching(/^rejected: not allowed/),
    });

    expect(JSON.parse(failedOnly.stdout).map((j: { id: string }) => j.id)).toEqual([failed]);

    expect(human.code).toBe(0);
    const lines = human.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^ID +TYPE +STATE +INSTANCE +ASKED BY +AGE +STEP \/ REASON$/);
    expect(lines[1]).toMatch(
      new RegExp(`^${waiting} +two-step +waiting +clawdinator-3 +alice \\(Discord \\d+\\) +\\d+s +-$`),
    );
    // Columns line up: each row's state starts where the header's STATE does.
    const stateColumn = lines[0]?.indexOf('STATE');
    expect(lines[1]?.indexOf('waiting')).toBe(stateColumn);
    expect(lines[2]?.indexOf('failed')).toBe(stateColumn);
    expect(running.stdout).toBe('no running jobs\n');
  });

  it('show: the detail as JSON or text; an unknown id exits 1, a bad id 2', async () => {
    const { failed } = await failedAndWaiting();
    const [json, text, missing, bad] = await Promise.all([
      runCli(['jobs', 'show', failed, '--json'], { env }),
      runCli(['jobs', 'show', failed], { env }),
      runCli(['jobs', 'show', 'two-step-none'], { env }),
      runCli(['jobs', 'show', 'a:b'], { env }),
    ]);
    expect(json.code).toBe(0);
    const detail = JSON.parse(json.stdout);
    expect(Object.keys(detail).sort()).toEqual(
      [
        ...SUMMARY_KEYS,
        'cancelRequestedBy',
        'logCount',
        'logs',
        'requestId',
        'requestedAt',
        'result',
        'signature',
        'steps',
      ].sort(),
    );
    expect(detail).toMatchObject({
      id: failed,
      state: 'failed',
      requestId: 'denied',
      requestedAt: expect.any(Number),
      // No public keys configured: what the job claims, unchecked.
      signature: 'not checked',
      steps: [],
      // The job's end is in its log (the finalizer writes it).
      logs: [expect.stringMatching(/^ended: rejected: not allowed/)],
      logCount: 1,
    });
    expect(text.stdout).toMatch(/^state +failed$/m);
    expect(text.stdout).toMatch(/^failed +rejected: not allowed/m);
    expect(text.stdout).toMatch(/^log \(last 1 of 1 lines\)\n {2}ended: rejected: not allowed/m);
    // Type, target, who asked and when; with the public keys, whether that claim verifies.
    expect(text.stdout).toMatch(/^type +health-sweep$/m);
    expect(text.stdout).toMatch(/^target +-$/m);
    expect(text.stdout).toMatch(new RegExp(`^asked by +alice \\(Discord ${ALICE}\\)$`, 'm'));
    expect(text.stdout).toMatch(/^asked at +\d{4}-\d\d-\d\dT/m);
    const checked = await runCli(['jobs', 'show', failed], { env: { ...env, ...publicKeysEnv() } });
    expect(checked.stdout).toMatch(/^signature +verified$/m);

    expect(missing).toMatchObject({ code: 1, stdout: '', stderr: 'clawdinator: no such job: two-step-none\n' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('clawdinator: not a job id: expected <type>-<request id>, e.g. spawn-1234567890\n');
  });

  it('cancel: removes a waiting job (exit 0); a finished or unknown one exits 1', async () => {
    const { failed, waiting } = await failedAndWaiting();
    // A worker that takes no jobs: its finalizer ends the removed one (the `removed` event).
    await worker().worker.pause(true);
    const [removed, finishedOne] = await Promise.all([
      runCli(['jobs', 'cancel', waiting], { env }),
      runCli(['jobs', 'cancel', failed], { env }),
    ]);
    expect(removed).toMatchObject({ code: 0, stdout: `removed ${waiting} (it had not started)\n` });
    for (let i = 0; i < 400 && (await redis.get(keys.finalized(waiting))) !== 'done'; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBeNull();
    expect(await runCli(['jobs', 'cancel', waiting], { env })).toMatchObject({
      code: 1,
      stderr: `clawdinator: no such job: ${waiting}\n`,
    });
    expect(finishedOne).toMatchObject({
      code: 1,
      stderr: `clawdinator: cannot cancel ${failed}: it has already finished\n`,
    });
  });

  it('retry: a new request signed by the operator; only failed jobs; only with an operator key', async () => {
    const { failed, waiting } = await failedAndWaiting();
    const dir = tempDir();
    const keyFile = join(dir, 'operator.pem');
    writeFileSync(keyFile, h.operator.key.export({ type: 'pkcs8', format: 'pem' }).toString());
    const operatorEnv = {
      ...env,
      ...publicKeysEnv(),
      CLAWDINATOR_JOB_SIGNING_KEY_FILE: keyFile,
      CLAWDINATOR_JOB_KEY_ID: 'operator:ops',
    };

    const [notFailed, asGateway] = await Promise.all([
      runCli(['jobs', 'retry', waiting], { env: operatorEnv }),
      runCli(['jobs', 'retry', failed], { env: { ...operatorEnv, CLAWDINATOR_JOB_KEY_ID: 'gateway' } }),
    ]);
    expect(notFailed).toMatchObject({
      code: 1,
      stderr: `clawdinator: only failed jobs can be retried: ${waiting} is waiting\n`,
    });
    expect(asGateway.code).toBe(2);
    expect(asGateway.stderr).toBe(
      'clawdinator: jobs retry signs as an operator: CLAWDINATOR_JOB_KEY_ID is gateway, expected operator:<name>\n',
    );

    const retried = await runCli(['jobs', 'retry', failed], { env: operatorEnv });
    expect(retried.code).toBe(0);
    const newId = /^retried \S+ as (health-sweep-cli-[\w-]+) \(queue clawdinator-fleet\)\n$/.exec(retried.stdout)?.[1];
    expect(newId).toBeDefined();
    worker();
    const job = await finished(newId as string);
    expect(job.data.signed.principal).toEqual({ kind: 'cli', operator: 'ops' });
    expect(job.failedReason).toBeUndefined();
  });

  it('retry: never of a request that does not verify; a destructive one only with --yes', async () => {
    const { failed } = await failedAndWaiting();
    worker();
    const retire = await enqueue('retire', { name: 'clawdinator-4' }, reader, 'denied-retire');
    expect((await finished(retire)).failedReason).toMatch(/^rejected: not allowed/);
    for (const close of closers.splice(0).reverse()) await close();
    const dir = tempDir();
    const keyFile = join(dir, 'operator.pem');
    writeFileSync(keyFile, h.operator.key.export({ type: 'pkcs8', format: 'pem' }).toString());
    const operatorEnv = {
      ...env,
      ...publicKeysEnv(),
      CLAWDINATOR_JOB_SIGNING_KEY_FILE: keyFile,
      CLAWDINATOR_JOB_KEY_ID: 'operator:ops',
    };
    // The failed job's request, changed in Redis to a retire of clawdinator-1.
    const stored = JSON.parse((await redis.hget(`bull:${FLEET_QUEUE}:${failed}`, 'data')) as string);
    await redis.hset(
      `bull:${FLEET_QUEUE}:${failed}`,
      'data',
      JSON.stringify({ ...stored, signed: { ...stored.signed, data: { name: 'clawdinator-1' } } }),
    );
    const [planted, noKeys, unconfirmed] = await Promise.all([
      runCli(['jobs', 'retry', failed], { env: operatorEnv }),
      runCli(['jobs', 'retry', retire], { env: { ...operatorEnv, CLAWDINATOR_JOB_PUBLIC_KEYS: '{}' } }),
      runCli(['jobs', 'retry', retire], { env: operatorEnv }),
    ]);
    expect(planted).toMatchObject({
      code: 1,
      stderr: `clawdinator: cannot retry ${failed}: its signature does not verify\n`,
    });
    expect(noKeys).toMatchObject({
      code: 1,
      stderr: `clawdinator: cannot retry ${retire}: its signature does not verify\n`,
    });
    expect(unconfirmed).toMatchObject({
      code: 2,
      stderr: `clawdinator: retrying ${retire} runs retire of clawdinator-4 again, which cannot be undone: confirm with --yes\n`,
    });
    const q = new Queue(FLEET_QUEUE, { connection: conn });
    closers.push(() => q.close());
    const count = async () => (await q.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed'])).length;
    expect(await count()).toBe(3);
    const confirmed = await runCli(['jobs', 'retry', retire, '--yes'], { env: operatorEnv });
    expect(confirmed.code).toBe(0);
    const newId = /^retried \S+ as (retire-cli-[\w-]+) /.exec(confirmed.stdout)?.[1] as string;
    expect((await q.getJob(newId))?.data.signed).toMatchObject({
      type: 'retire',
      data: { name: 'clawdinator-4' },
      principal: { kind: 'cli', operator: 'ops' },
    });
  });

  it('settings and arguments: a missing Redis URL or a bad filter exits 2, an unreachable Redis 1', async () => {
    const [noUrl, badFilter, down] = await Promise.all([
      runCli(['jobs', 'list'], { env: {} }),
      runCli(['jobs', 'list', '--filter', 'all'], { env }),
      runCli(['jobs', 'list'], { env: { CLAWDINATOR_REDIS_URL: 'redis://127.0.0.1:1' } }),
    ]);
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toMatch(/^clawdinator: config: CLAWDINATOR_REDIS_URL .*is not set[^\n]*\n$/);
    expect(badFilter.code).toBe(2);
    expect(badFilter.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^clawdinator: cannot reach Redis at 127\.0\.0\.1:1: .*ECONNREFUSED.*\n$/);
  });
});
