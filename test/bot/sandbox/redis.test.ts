// The sandbox's own redis-server: a real one from PATH.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { REDIS_MISSING, startSandboxRedis } from '../../../bot/sandbox/redis.js';
import { tempDir } from '../../support/cli.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('sandbox redis', () => {
  it('starts redis-server on a loopback port without persistence, and stops it', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const server = await startSandboxRedis({ dir });
    const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
    try {
      expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
      expect(await client.ping()).toBe('PONG');
      expect(await client.config('GET', 'save')).toEqual(['save', '']);
      expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
      expect(await client.config('GET', 'dir')).toEqual(['dir', join(dir, 'redis')]);
    } finally {
      client.disconnect();
      await server.stop();
    }
    expect(alive(server.pid)).toBe(false);
  });

  it('says how to install redis-server when it is missing', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    await expect(startSandboxRedis({ dir, command: 'redis-server-not-installed-here' })).rejects.toThrow(REDIS_MISSING);
    expect(REDIS_MISSING).toBe(
      'redis-server not found: install it (Debian: apt-get install redis-server) or set CLAWDINATOR_REDIS_URL',
    );
  });

  it('stops the redis-server a killed sandbox left behind in the same directory', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const left = await startSandboxRedis({ dir });
    expect(readFileSync(join(dir, 'redis', 'redis-server.pid'), 'utf8').trim()).toBe(String(left.pid));
    // No stop(): as if the sandbox had been killed with SIGKILL.
    const next = await startSandboxRedis({ dir });
    try {
      expect(alive(left.pid)).toBe(false);
      expect(next.pid).not.toBe(left.pid);
    } finally {
      await next.stop();
      await left.stop();
    }
  });
});
