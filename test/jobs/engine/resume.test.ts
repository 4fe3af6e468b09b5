// Workers that die, and a Redis that restarts: jobs resume at their last saved step.
import { type ChildProcess, spawn } from 'node:child_process';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { Principal } from '../../../jobs/engine/envelope.js';
import { FLEET_QUEUE } from '../../../jobs/engine/keys.js';
import { projectPath } from '../../../lib/paths.js';
import { EFFECTS, enqueuer, fastSettings, harness, setEffectsClient, startWorker } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

const h = harness();
const operator: Principal = { kind: 'cli', operator: 'ops' };
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  cleanup.length = 0;
});

function publicPems(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(h.keys).map(([id, k]) => [id, k.export({ type: 'spki', format: 'pem' }).toString()]),
  );
}

async function workerProcess(port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [projectPath('dist/test/support/worker-process.js'), JSON.stringify({ port, keys: publicPems() })],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  cleanup.push(async () => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`worker exited ${c}`)));
  });
  return child;
}

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function setup(persist = false): Promise<{ server: TestRedis; redis: Redis; queue: Queue }> {
  const server = await startRedis({ persist });
  cleanup.push(() => server.stop());
  const redis = server.client();
  setEffectsClient(redis);
  const queue = new Queue(FLEET_QUEUE, { connection: { host: '127.0.0.1', port: server.port } });
  cleanup.push(() => queue.close());
  return { server, redis, queue };
}

describe('resuming jobs', () => {
  it('a worker SIGKILLed mid-step is followed by another that resumes without repeating the completed step', async () => {
    const { server, redis, queue } = await setup();
    const first = await workerProcess(server.port);
    const q = enqueuer(server.client(), { host: '127.0.0.1', port: server.port }, h.types, h.operator);
    cleanup.push(() => q.close());
    const { jobId } = await q.enqueue({
      type: 'two-step',
      data: { name: 'clawdinator-3', pauseMs: 3000 },
      principal: operator,
      requestId: 'kill-me',
    });
    await until(async () =>
      (await redis.lrange(EFFECTS, 0, -1)).some((e) => e.startsWith('pause-start')) ? true : undefined,
    );
    first.kill('SIGKILL');
    const second = await workerProcess(server.port);
    await until(async () => ((await queue.getJobState(jobId)) === 'completed' ? true : undefined), 30_000);
    const effects = await redis.lrange(EFFECTS, 0, -1);
    const byStep = (step: string) => effects.filter((e) => e.startsWith(`${step}:`));
    expect(byStep('first')).toHaveLength(1);
    expect(byStep('first')[0]).toContain(`:${first.pid}`);
    // The interrupted step ran again (it had not been saved); the last ran once, on the survivor.
    expect(byStep('pause-start').map((e) => e.split(':')[2])).toEqual([String(first.pid), String(second.pid)]);
    expect(byStep('second')).toEqual([`second:${jobId}:${second.pid}`]);
  });

  it('Redis restarted (same port, persistence on) while a job waits: the job completes after reconnect', async () => {
    const { server, redis, queue } = await setup(true);
    const conn = { host: '127.0.0.1', port: server.port };
    const w = startWorker(FLEET_QUEUE, h.deps(server.client(), conn), fastSettings);
    cleanup.push(() => w.close());
    const q = enqueuer(server.client(), conn, h.types, h.operator);
    cleanup.push(() => q.close());
    const { jobId } = await q.enqueue({
      type: 'wait-for-key',
      data: { key: 'test:go', pollMs: 300 },
      principal: operator,
      requestId: 'through-restart',
    });
    await until(async () => ((await queue.getJobState(jobId)) === 'delayed' ? true : undefined));
    await server.restart();
    await until(async () =>
      (await redis.set('test:go', 'after-restart').catch(() => undefined)) === 'OK' ? true : undefined,
    );
    await until(
      async () => ((await queue.getJobState(jobId).catch(() => undefined)) === 'completed' ? true : undefined),
      30_000,
    );
    expect(await redis.lrange(EFFECTS, 0, -1)).toEqual(['waited:after-restart']);
  });
});
