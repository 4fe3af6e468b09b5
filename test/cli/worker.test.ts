// `clawdinator worker` as hosts run it: two of them on one real Redis.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../jobs/engine/keys.js';
import { generateSigningKeyPair } from '../../jobs/signing.js';
import { CLI, runCli, tempDir } from '../support/cli.js';
import { startImds } from '../support/imds.js';
import { startRedis, type TestRedis } from '../support/redis.js';

let server: TestRedis;
let env: Record<string, string>;
let dir: string;

beforeAll(async () => {
  server = await startRedis();
  dir = tempDir('clawdinator-worker-');
  const schedule = generateSigningKeyPair();
  writeFileSync(join(dir, 'schedule.pem'), schedule.privateKeyPem, { mode: 0o600 });
  const entry = (n: string) => ({
    host: n,
    instanceType: 't3.large',
    bootstrapPrefix: `bootstrap/${n}`,
    discordTokenSecret: `clawdinator/discord-token/${n}`,
  });
  writeFileSync(
    join(dir, 'fleet.json'),
    JSON.stringify({ 'clawdinator-1': entry('clawdinator-1'), 'clawdinator-2': entry('clawdinator-2') }),
  );
  env = {
    CLAWDINATOR_REDIS_URL: server.url,
    CLAWDINATOR_JOB_SIGNING_KEY_FILE: join(dir, 'schedule.pem'),
    CLAWDINATOR_JOB_KEY_ID: 'schedule',
    CLAWDINATOR_JOB_PUBLIC_KEYS: JSON.stringify({ schedule: schedule.publicKeyPem }),
    CLAWDINATOR_FLEET_REGISTRY: join(dir, 'fleet.json'),
    CLAWDINATOR_LOG_LEVEL: 'warn',
    CLAWDINATOR_HEARTBEAT_TTL: '30',
    // Runs fall in the middle of their slots: a short period, so the first comes soon.
    CLAWDINATOR_HEALTH_SWEEP_SECONDS: '2',
  };
});
afterAll(async () => {
  await server.stop();
});

function startWorker(host: string): { child: ChildProcess; exited: Promise<number> } {
  const child = spawn(process.execPath, [CLI, 'worker', '--instance-id', `i-${host}`], {
    env: { PATH: process.env.PATH ?? '', ...env, CLAWDINATOR_HOST_NAME: host },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { child, exited: new Promise((r) => child.on('exit', (code) => r(code ?? -1))) };
}

async function until(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('clawdinator worker', () => {
  it('two workers: both heartbeat, the schedule exists once and runs; SIGTERM stops them cleanly', async () => {
    const redis = server.client();
    const queue = new Queue('clawdinator-fleet', { connection: { host: '127.0.0.1', port: server.port } });
    const a = startWorker('clawdinator-1');
    const b = startWorker('clawdinator-2');
    try {
      await until(
        async () => (await redis.exists(keys.heartbeat('clawdinator-1'), keys.heartbeat('clawdinator-2'))) === 2,
      );
      const hb = JSON.parse((await redis.get(keys.heartbeat('clawdinator-2'))) as string).heartbeat;
      expect(hb).toMatchObject({
        host: 'clawdinator-2',
        instanceId: 'i-clawdinator-2',
        version: '0.1.0',
        activeJobs: 0,
      });
      expect(await redis.ttl(keys.heartbeat('clawdinator-2'))).toBeGreaterThan(0);
      await until(async () => (await queue.getJobSchedulers()).length > 0);
      // The health sweep runs right away and tracks both hosts.
      await until(async () => (await redis.exists(keys.health('clawdinator-1'), keys.health('clawdinator-2'))) === 2);
      const schedulers = await queue.getJobSchedulers();
      // The health sweep, the org sync, and the weekly image prune (the image rebuild's cron is off by default).
      expect(schedulers.map((s) => s.key).sort()).toEqual([
        'clawdinator-ami-prune',
        'clawdinator-github-sync',
        'clawdinator-health-sweep',
      ]);
      expect(await queue.getFailedCount()).toBe(0);
    } finally {
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
    }
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);
    expect(await redis.exists(keys.heartbeat('clawdinator-1'), keys.heartbeat('clawdinator-2'))).toBe(0);
    await queue.close();
  });

  it('without flags: its instance id from IMDSv2 (or why not, until IMDS answers), its revision re-read from the build info at every beat', async () => {
    const imds = await startImds({ instanceId: null });
    imds.refuseTokens = true;
    const buildInfo = join(dir, 'build-info.json');
    writeFileSync(buildInfo, JSON.stringify({ revision: 'aaaa1111', locked: false, version: '0.1.0' }));
    const redis = server.client();
    const stderr: Buffer[] = [];
    const child = spawn(process.execPath, [CLI, 'worker'], {
      env: {
        PATH: process.env.PATH ?? '',
        ...env,
        CLAWDINATOR_HOST_NAME: 'clawdinator-1',
        CLAWDINATOR_HEARTBEAT_TTL: '3',
        CLAWDINATOR_BUILD_INFO_FILE: buildInfo,
        CLAWDINATOR_MEMORY_DIR: dir,
        // The SDK's standard variable, as on a host whose IMDS is elsewhere (or a test).
        AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (d: Buffer) => stderr.push(d));
    const exited = new Promise((r) => child.on('exit', r));
    const beat = async () =>
      JSON.parse((await redis.get(keys.heartbeat('clawdinator-1'))) ?? 'null')?.heartbeat ?? null;
    try {
      await until(async () => (await beat()) !== null);
      expect(await beat()).toMatchObject({
        instanceId: 'unavailable',
        instanceIdError: `IMDS ${imds.url} gave no session token (HTTP 403)`,
        revision: 'aaaa1111',
        locked: false,
        memoryShared: false,
      });
      // IMDS comes back: the next beat carries the id, and a switch's new build info shows.
      imds.refuseTokens = false;
      imds.instanceId = 'i-0abc123def4567890';
      writeFileSync(buildInfo, JSON.stringify({ revision: 'bbbb2222', locked: true, version: '0.1.0' }));
      await until(async () => (await beat())?.instanceId === 'i-0abc123def4567890');
      await until(async () => (await beat())?.revision === 'bbbb2222');
      const last = await beat();
      expect(last.locked).toBe(true);
      expect(last.instanceIdError).toBeUndefined();
      // Token first, then the id with that token: IMDSv2 only.
      const asked = imds.requests.filter((r) => r.url === '/latest/meta-data/instance-id');
      expect(asked.at(-1)?.headers['x-aws-ec2-metadata-token']).toBeTruthy();
    } finally {
      child.kill('SIGTERM');
      await exited;
      await imds.close();
    }
    // Said once in its log, not once per beat.
    const log = Buffer.concat(stderr).toString();
    expect(log.match(/instance id unavailable/g)).toHaveLength(1);
  });

  it('a missing or wrong setting stops it with one line, exit 2', async () => {
    const missing = await runCli(['worker'], { env: { ...env, CLAWDINATOR_HOST_NAME: '' } });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      'clawdinator: config: CLAWDINATOR_HOST_NAME (or hostName in the config file) is not set: expected this host’s fleet name (clawdinator-<a-z0-9>, words joined by single "-", at most 40 characters)\n',
    );
    const wrongKey = await runCli(['worker'], {
      env: { ...env, CLAWDINATOR_HOST_NAME: 'clawdinator-1', CLAWDINATOR_JOB_KEY_ID: 'gateway' },
    });
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toContain('must be "schedule" for a worker');
    const withPassword = await runCli(['worker'], {
      env: { ...env, CLAWDINATOR_HOST_NAME: 'clawdinator-1', CLAWDINATOR_REDIS_URL: 'redis://:hunter2@127.0.0.1:1' },
    });
    expect(withPassword.code).toBe(2);
    expect(withPassword.stderr).not.toContain('hunter2');
  });
});
