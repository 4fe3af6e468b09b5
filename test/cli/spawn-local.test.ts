// `fleet spawn NAME --local` (day 0): runLocal in-process with the simulated fleet — its own
// real redis-server, the real worker, job types and signed operator job — and the CLI's
// checks through the built binary, which must start no redis-server when they refuse.
import { createPublicKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_MISSING } from '../../bot/sandbox/redis.js';
import { type LocalRunResult, runLocal } from '../../cli/spawn-local.js';
import { generateSigningKeyPair } from '../../jobs/signing.js';
import { createLogger } from '../../lib/log.js';
import { runCli, tempDir } from '../support/cli.js';
import { type SimFleet, simFleet } from '../support/fleet.js';
import { keyPair } from '../support/jobs.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const operator = keyPair();
let heartbeats: TestRedis;
let sim: SimFleet | undefined;

beforeAll(async () => {
  // Only for the fixture's simulated hosts, which write a heartbeat as their worker would.
  heartbeats = await startRedis();
});
afterAll(async () => {
  await heartbeats.stop();
});
afterEach(() => {
  sim?.close();
  sim = undefined;
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function localTempDirs(): string[] {
  return readdirSync(tmpdir()).filter((f) => f.startsWith('clawdinator-local-'));
}

async function local(name: string, tokens?: string[], stop?: Promise<void>) {
  sim = simFleet(heartbeats.client(), { tokens });
  const { fleet, memory, registry } = sim;
  const printed: string[] = [];
  let redisPid = 0;
  const dirsBefore = localTempDirs();
  const result: LocalRunResult = await runLocal({
    type: 'spawn',
    data: { name },
    signer: { keyId: 'operator:alice', key: operator.privateKey },
    fleet,
    memory,
    registry: async () => (await registry.read()).registry,
    log: createLogger('silent'),
    print: (line) => printed.push(line),
    timeoutMs: 30_000,
    stop,
    onRedis: ({ pid }) => {
      redisPid = pid;
    },
  });
  const leftDirs = localTempDirs().filter((d) => !dirsBefore.includes(d));
  return { result, printed: printed.join('\n'), redisPid, leftDirs, sim };
}

describe('runLocal (fleet spawn --local)', () => {
  it('spawns to SSM online on its own redis-server, then stops it; the heartbeat is not awaited', async () => {
    const { result, printed, redisPid, leftDirs, sim } = await local('clawdinator-3');
    expect(result.ok).toBe(true);
    expect(result.text).toMatch(
      /^clawdinator-3 online \(SSM agent; its worker’s heartbeat not awaited\): i-[0-9a-f]+, ami-00000000000000a11, /,
    );
    expect(printed).toMatch(/^local engine: redis-server redis:\/\/127\.0\.0\.1:\d+ \(temporary, stopped at the end\)/);
    expect(printed).toMatch(/running spawn-local-[A-Za-z0-9_-]+ in this process/);
    for (const step of ['  checks', '  agent-key', '  plan: 5 to add', ' launched', '  record'])
      expect(printed).toContain(step);
    expect(printed).not.toMatch(/ {2}heartbeat/);
    expect(printed).not.toContain('PRIVATE KEY');
    expect(sim.cloud.calls.byOperation.RunInstances).toBe(1);
    expect(Object.keys((await sim.registry.read()).registry)).toEqual(['clawdinator-1', 'clawdinator-3']);
    const entry = (await sim.registry.read()).registry['clawdinator-3'];
    const hostKey = (await sim.cloud.getSecrets(['clawdinator/host/clawdinator-3/agent-key'])).get(
      'clawdinator/host/clawdinator-3/agent-key',
    ) as string;
    expect(createPublicKey(hostKey).export({ type: 'spki', format: 'pem' })).toBe(entry?.agentPublicKey);
    expect(printed).not.toContain(hostKey.split('\n')[1]);
    expect(readFileSync(join(sim.dir, 'memory', 'ops.md'), 'utf8')).toMatch(
      /spawn clawdinator-3: i-[0-9a-f]+, ami-00000000000000a11, t3\.large — requested by operator alice \(job spawn-local-/,
    );
    expect(readFileSync(registryHistory(sim), 'utf8')).toContain('requested by operator alice via the CLI');
    expect(redisPid).toBeGreaterThan(0);
    expect(alive(redisPid)).toBe(false);
    expect(leftDirs).toEqual([]);
  });

  it('a name without its token secret: refused naming the secret, nothing created, redis-server stopped', async () => {
    const { result, redisPid, leftDirs, sim } = await local('clawdinator-4', ['clawdinator-3']);
    expect(result).toMatchObject({
      ok: false,
      text: 'refused: the Discord token secret clawdinator/discord-token/clawdinator-4 does not exist: create it before spawning clawdinator-4',
    });
    expect(Object.keys((await sim.registry.read()).registry)).toEqual(['clawdinator-1']);
    expect(sim.cloud.calls.byOperation.RunInstances).toBeUndefined();
    expect(sim.cloud.calls.byOperation.CreateSecret).toBeUndefined();
    expect(await sim.cloud.listKeys('clawdinator-test-bucket', 'bootstrap/')).toEqual([]);
    expect(alive(redisPid)).toBe(false);
    expect(leftDirs).toEqual([]);
  });
});

describe('runLocal, interrupted', () => {
  it('a stop request ends the wait: not ok, says so, the running step ends, redis-server stopped', async () => {
    const { result, redisPid, leftDirs } = await local('clawdinator-3', undefined, Promise.resolve());
    expect(result.ok).toBe(false);
    expect(result.text).toMatch(/^spawn-local-\S+ interrupted while \w+: the temporary Redis keeps nothing/);
    expect(alive(redisPid)).toBe(false);
    expect(leftDirs).toEqual([]);
  });
});

function registryHistory(s: SimFleet): string {
  return s.registry.historyPath;
}

describe('clawdinator fleet spawn --local (the binary)', () => {
  /** A PATH whose only redis-server records that it was started, and fails. */
  function spyPath(): { path: string; marker: string } {
    const bin = join(tempDir('clawdinator-bin-'), 'bin');
    mkdirSync(bin);
    const marker = join(bin, '..', 'started');
    writeFileSync(join(bin, 'redis-server'), `#!/bin/sh\ntouch '${marker}'\nexit 1\n`);
    chmodSync(join(bin, 'redis-server'), 0o755);
    return { path: `${bin}:/usr/bin:/bin`, marker };
  }

  function settings(): Record<string, string> {
    const dir = tempDir('clawdinator-day0-');
    const pair = generateSigningKeyPair();
    writeFileSync(join(dir, 'operator.pem'), pair.privateKeyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'fleet.json'), '{}\n');
    mkdirSync(join(dir, 'memory'));
    return {
      CLAWDINATOR_BOOTSTRAP_BUCKET: 'clawdinator-day0',
      CLAWDINATOR_STATE_BUCKET: 'clawdinator-day0-state',
      CLAWDINATOR_AWS_REGION: 'eu-central-1',
      CLAWDINATOR_JOB_SIGNING_KEY_FILE: join(dir, 'operator.pem'),
      CLAWDINATOR_JOB_KEY_ID: 'operator:alice',
      CLAWDINATOR_FLEET_REGISTRY: join(dir, 'fleet.json'),
      CLAWDINATOR_MEMORY_DIR: join(dir, 'memory'),
    };
  }

  it('a bad name: one line, exit 2, no redis-server started', async () => {
    const spy = spyPath();
    const r = await runCli(['fleet', 'spawn', 'Clawdinator_3', '--local'], { env: { ...settings(), PATH: spy.path } });
    expect(r).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'clawdinator: Clawdinator_3 is not a fleet member\'s name: expected clawdinator-<a-z0-9>, words joined by single "-", at most 40 characters\n',
    });
    expect(existsSync(spy.marker)).toBe(false);
  });

  it('missing settings: one line naming the setting, exit 2, no redis-server started', async () => {
    const spy = spyPath();
    const { CLAWDINATOR_BOOTSTRAP_BUCKET: _, ...rest } = settings();
    const noBucket = await runCli(['fleet', 'spawn', 'clawdinator-3', '--local'], { env: { ...rest, PATH: spy.path } });
    expect(noBucket).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'clawdinator: config: CLAWDINATOR_BOOTSTRAP_BUCKET (or bootstrapBucket in the config file) is not set: expected the S3 bucket of the bootstrap bundles (the base stack’s bucket output)\n',
    });
    const gateway = await runCli(['fleet', 'spawn', 'clawdinator-3', '--local'], {
      env: { ...settings(), CLAWDINATOR_JOB_KEY_ID: 'gateway', PATH: spy.path },
    });
    expect(gateway.code).toBe(2);
    expect(gateway.stderr).toBe(
      'clawdinator: config: CLAWDINATOR_JOB_KEY_ID must be operator:<name> for fleet changes from the CLI\n',
    );
    const noMemory = await runCli(['fleet', 'spawn', 'clawdinator-3', '--local'], {
      env: { ...settings(), CLAWDINATOR_MEMORY_DIR: '/nonexistent/memory', PATH: spy.path },
    });
    expect(noMemory.code).toBe(2);
    expect(noMemory.stderr).toMatch(
      /^clawdinator: config: CLAWDINATOR_MEMORY_DIR \(\/nonexistent\/memory\) is not a directory/,
    );
    expect(existsSync(spy.marker)).toBe(false);
  });

  it('without redis-server on PATH: how to install it, one line, exit 1', async () => {
    const dirsBefore = localTempDirs();
    const r = await runCli(['fleet', 'spawn', 'clawdinator-3', '--local'], {
      env: { ...settings(), PATH: join(tempDir(), 'empty-bin') },
    });
    expect(r).toEqual({ code: 1, stdout: '', stderr: `clawdinator: ${REDIS_MISSING}\n` });
    expect(localTempDirs().filter((d) => !dirsBefore.includes(d))).toEqual([]);
  });
});
