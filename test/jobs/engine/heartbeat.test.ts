// Heartbeats on a real redis-server: written with a TTL, signed with the workers' key,
// refreshed, read back in one round trip and verified, and deleted on a clean shutdown only
// when still this process's own. A heartbeat a Redis writer made up, moved or kept reads as
// absent.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readHeartbeats, signedHeartbeat, startHeartbeat } from '../../../jobs/engine/heartbeat.js';
import { keys } from '../../../jobs/engine/keys.js';
import { keyPair, testStepSigner, testWorkersKey } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

let server: TestRedis;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
});

function heartbeat(host: string, ttlSeconds: number, instanceId = 'i-0123456789abcdef0') {
  const errors: unknown[] = [];
  const hb = startHeartbeat({
    redis: server.client(),
    signer: testStepSigner,
    host,
    instanceId,
    version: '0.1.0',
    revision: 'abc123',
    ttlSeconds,
    activeJobs: () => 2,
    onError: (err) => errors.push(err),
  });
  return { ...hb, errors };
}

/** Counts the commands a client sends (one each here, so one command is one round trip). */
function counting(client: Redis): string[] {
  const sent: string[] = [];
  const send = client.sendCommand.bind(client);
  client.sendCommand = (command, stream) => {
    sent.push(command.name);
    return send(command, stream);
  };
  return sent;
}

async function until(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('heartbeats', () => {
  it('are written with a TTL, refreshed every TTL/3, and read back in one MGET', async () => {
    const hb = heartbeat('clawdinator-1', 3);
    const key = keys.heartbeat('clawdinator-1');
    await until(async () => (await redis.exists(key)) === 1);
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(2000);
    expect(ttl).toBeLessThanOrEqual(3000);
    const stored = JSON.parse((await redis.get(key)) as string);
    expect(stored).toEqual({
      heartbeat: expect.any(Object),
      expiresAt: stored.heartbeat.at + 3000,
      keyId: 'schedule',
      signature: expect.any(String),
    });
    const first = stored.heartbeat;
    expect(first).toEqual({
      host: 'clawdinator-1',
      instanceId: 'i-0123456789abcdef0',
      version: '0.1.0',
      revision: 'abc123',
      startedAt: expect.any(Number),
      activeJobs: 2,
      at: expect.any(Number),
    });
    // Refreshed after TTL/3 = 1 s: a later `at`, the TTL back near full.
    await until(async () => JSON.parse((await redis.get(key)) as string).heartbeat.at > first.at, 3000);
    expect(await redis.pttl(key)).toBeGreaterThan(2500);

    await redis.set(keys.heartbeat('clawdinator-3'), '{"host": "clawdinator-3", "at": "yesterday"}');
    await redis.set(keys.heartbeat('clawdinator-4'), 'not json');
    // clawdinator-1's own signed heartbeat, filed under clawdinator-5's key.
    await redis.set(keys.heartbeat('clawdinator-5'), (await redis.get(key)) as string);
    const reader = server.client();
    await reader.ping();
    const sent = counting(reader);
    const read = await readHeartbeats(
      reader,
      ['clawdinator-1', 'clawdinator-2', 'clawdinator-3', 'clawdinator-4', 'clawdinator-5'],
      testWorkersKey,
    );
    expect(sent).toEqual(['mget']);
    expect(read.get('clawdinator-1')).toMatchObject({
      host: 'clawdinator-1',
      activeJobs: 2,
      startedAt: first.startedAt,
    });
    // Missing, malformed, and filed under another host's key: all null.
    expect([...read.entries()].filter(([, v]) => v === null).map(([h]) => h)).toEqual([
      'clawdinator-2',
      'clawdinator-3',
      'clawdinator-4',
      'clawdinator-5',
    ]);
    expect(await readHeartbeats(reader, [], testWorkersKey)).toEqual(new Map());
    expect(sent).toEqual(['mget']);
    await hb.stop();
    expect(hb.errors).toEqual([]);
  });

  it('a clean stop deletes its own heartbeat, not a newer process’s on the same host', async () => {
    const key = keys.heartbeat('clawdinator-2');
    const alone = heartbeat('clawdinator-2', 60);
    await until(async () => (await redis.exists(key)) === 1);
    await alone.stop();
    expect(await redis.exists(key)).toBe(0);

    const old = heartbeat('clawdinator-2', 60, 'i-0000000000000000a');
    await until(async () => (await redis.get(key))?.includes('i-0000000000000000a') ?? false);
    const successor = heartbeat('clawdinator-2', 60, 'i-0000000000000000b');
    await until(async () => (await redis.get(key))?.includes('i-0000000000000000b') ?? false);
    await old.stop();
    expect(JSON.parse((await redis.get(key)) as string).heartbeat.instanceId).toBe('i-0000000000000000b');
    await successor.stop();
    expect(await redis.exists(key)).toBe(0);
  });

  it('a forged, altered, moved or expired heartbeat reads as absent; added fields are signed too', async () => {
    const at = Date.now();
    const beat = (host: string) => ({
      host,
      instanceId: 'i-0123456789abcdef0',
      version: '0.1.0',
      revision: 'abc123',
      startedAt: at,
      activeJobs: 0,
      at,
    });
    const signed = (host: string, extra: Record<string, unknown> = {}, ttl = 60) =>
      JSON.parse(signedHeartbeat({ ...beat(host), ...extra }, testStepSigner, ttl));
    const other = keyPair();
    const planted: Record<string, string> = {
      // The old, unsigned shape: what any Redis writer could write.
      'clawdinator-1': JSON.stringify(beat('clawdinator-1')),
      // Signed, but not with the workers' key (an agent's, say).
      'clawdinator-2': signedHeartbeat(beat('clawdinator-2'), { keyId: 'schedule', key: other.privateKey }, 60),
      // The workers' signature over another instance id.
      'clawdinator-3': JSON.stringify({
        ...signed('clawdinator-3'),
        heartbeat: { ...beat('clawdinator-3'), instanceId: 'i-0aaaaaaaaaaaaaaaa' },
      }),
      // A dead host's last heartbeat, written back after its expiry.
      'clawdinator-4': JSON.stringify(signed('clawdinator-4', { at: at - 120_000 }, 60)),
      // Its expiry pushed out under the same signature.
      'clawdinator-5': JSON.stringify({ ...signed('clawdinator-5', { at: at - 120_000 }, 60), expiresAt: at + 60_000 }),
      // A field a later version adds is covered as well: changed, it no longer verifies.
      'clawdinator-6': JSON.stringify({
        ...signed('clawdinator-6', { memoryMounted: true }),
        heartbeat: { ...beat('clawdinator-6'), memoryMounted: false },
      }),
      // The same with its field as signed: alive.
      'clawdinator-7': JSON.stringify(signed('clawdinator-7', { memoryMounted: true })),
    };
    for (const [host, value] of Object.entries(planted)) await redis.set(keys.heartbeat(host), value, 'EX', 60);
    const read = await readHeartbeats(redis, Object.keys(planted), testWorkersKey);
    expect([...read.entries()].filter(([, v]) => v !== null).map(([h]) => h)).toEqual(['clawdinator-7']);
  });
});
