// Every host's worker says it is alive: a JSON heartbeat under `clawdinator:heartbeat:<host>`
// with a TTL, rewritten every TTL/3, so a host that dies disappears within one TTL and a
// missed write or two does not. Readers (the health sweep, /status) read all of them in one
// MGET.
//
// A clean shutdown deletes the heartbeat — only if it is still the one this process wrote,
// since a new process on the same host may already have written its own. A stopped worker
// must not look alive for another TTL: whatever checks that the fleet keeps a host running
// a worker (before a retire or a replace) has to see it gone at once. The health sweep's
// grace period keeps a restart's short gap from becoming an alert.
//
// Heartbeats drive safety rails (the last healthy host, never-deploy-yourself, a spawn's or a
// replace's "its own worker is up"), so each is signed by the host's worker with the workers'
// key (`schedule`) and verified wherever it is read: a value a Redis writer made up reads as
// absent. The signature covers the whole record as written — canonical JSON of every field,
// whatever fields a later version adds — and its expiry (written + TTL), so a dead host's
// last heartbeat written back after it expired reads as absent too. Within its TTL a copy
// written back is indistinguishable from the host's own — the same window in which a host
// that crashed still looks alive.
import type { KeyObject } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';
import { parseStored } from '../../lib/json.js';
import { signPayload, verifyPayload } from '../signing.js';
import { dayUsageSchema } from '../usage.js';
import { keys } from './keys.js';
import type { Signer } from './queues.js';

// Not strict: a newer version may add fields during a rolling deploy, and its heartbeats
// must still read as alive on hosts that run the older one.
export const heartbeatSchema = z.object({
  host: instanceName,
  instanceId: z.string().min(1).max(64),
  version: z.string().min(1).max(64),
  /** The deployed revision (the flake's configurationRevision), or "unknown". */
  revision: z.string().min(1).max(64),
  startedAt: z.number().int().positive(),
  activeJobs: z.number().int().min(0),
  at: z.number().int().positive(),
  // What the host learned about itself (jobs/engine/host-facts.ts); optional: older workers
  // and the sandbox do not say.
  /** Why instanceId is `unavailable` (IMDS did not answer). */
  instanceIdError: z.string().max(300).optional(),
  /** Whether the memory dir is the shared file system (EFS), not a local directory. */
  memoryShared: z.boolean().optional(),
  /** Whether the host's build came from a flake with a committed flake.lock; null: unknown. */
  locked: z.boolean().nullable().optional(),
  /** When the host switched to `revision` (ms since the epoch): /run/current-system's change. */
  switchedAt: z.number().int().positive().optional(),
  /** This member's model usage today, as its model proxy counted it (jobs/usage.ts). */
  usage: dayUsageSchema.optional(),
});
export type Heartbeat = z.output<typeof heartbeatSchema>;

/** What is stored: the heartbeat as written, its expiry, and the workers' signature over both. */
const storedSchema = z
  .object({
    heartbeat: z.record(z.unknown()),
    expiresAt: z.number().int().positive(),
    keyId: z.literal('schedule'),
    signature: z.string().max(200),
  })
  .strict();

/** The value stored under a host's heartbeat key, signed with the workers' key. */
export function signedHeartbeat(heartbeat: Heartbeat & Record<string, unknown>, signer: Signer, ttlSeconds: number) {
  const signed = { heartbeat, expiresAt: heartbeat.at + ttlSeconds * 1000, keyId: signer.keyId };
  return JSON.stringify({ ...signed, signature: signPayload(signed, signer.key) });
}

export interface HeartbeatOptions {
  redis: Redis;
  /** The workers' key (`schedule`): every heartbeat is signed with it. */
  signer: Signer;
  host: string;
  instanceId: string;
  version: string;
  revision: string;
  ttlSeconds: number;
  activeJobs: () => number;
  /** Asked at every beat; what it gives replaces instanceId and revision (host-facts.ts). */
  facts?: () => Promise<Partial<Omit<Heartbeat, 'host' | 'version' | 'startedAt' | 'activeJobs' | 'at'>>>;
  /** A failed write; the next one is tried on schedule. */
  onError: (err: unknown) => void;
}

const DELETE_IF_OURS = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export function startHeartbeat(opts: HeartbeatOptions): { stop(): Promise<void> } {
  const key = keys.heartbeat(opts.host);
  const startedAt = Date.now();
  const intervalMs = Math.floor((opts.ttlSeconds * 1000) / 3);
  let lastWritten: string | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();

  async function beat(): Promise<void> {
    const heartbeat: Heartbeat = {
      host: opts.host,
      instanceId: opts.instanceId,
      version: opts.version,
      revision: opts.revision,
      ...(await opts.facts?.()),
      startedAt,
      activeJobs: opts.activeJobs(),
      at: Date.now(),
    };
    const value = signedHeartbeat(heartbeat, opts.signer, opts.ttlSeconds);
    await opts.redis.set(key, value, 'EX', opts.ttlSeconds);
    lastWritten = value;
  }

  // The next write is timed from the end of the last one: writes never pile up while Redis
  // is unreachable (commands wait for the reconnect).
  function tick(): void {
    inFlight = beat()
      .catch(opts.onError)
      .finally(() => {
        if (stopped) return;
        timer = setTimeout(tick, intervalMs);
        timer.unref();
      });
  }
  tick();

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await inFlight;
      if (lastWritten !== undefined) await opts.redis.eval(DELETE_IF_OURS, 1, key, lastWritten);
    },
  };
}

/** A heartbeat that verified, with the value it was read as (a caller may check it is still there). */
export interface VerifiedHeartbeat {
  heartbeat: Heartbeat;
  raw: string;
}

/**
 * The heartbeats of these hosts in one round trip, each verified with the workers' public key;
 * with the values as read, for a check that must know they are still the same (retire's).
 * Missing, malformed, unsigned, forged, expired or filed under another host's key: absent.
 */
export async function readHeartbeatRecords(
  redis: Redis,
  hosts: string[],
  workersKey: KeyObject,
  now = Date.now(),
): Promise<Map<string, VerifiedHeartbeat | null>> {
  const out = new Map<string, VerifiedHeartbeat | null>();
  if (hosts.length === 0) return out;
  const values = await redis.mget(hosts.map((host) => keys.heartbeat(host)));
  hosts.forEach((host, i) => {
    const raw = values[i] ?? null;
    const heartbeat = raw === null ? null : parseHeartbeat(raw, host, workersKey, now);
    out.set(host, heartbeat === null || raw === null ? null : { heartbeat, raw });
  });
  return out;
}

/** The verified heartbeats of these hosts in one round trip; null where absent (see readHeartbeatRecords). */
export async function readHeartbeats(
  redis: Redis,
  hosts: string[],
  workersKey: KeyObject,
  now = Date.now(),
): Promise<Map<string, Heartbeat | null>> {
  const records = await readHeartbeatRecords(redis, hosts, workersKey, now);
  return new Map([...records].map(([host, record]) => [host, record?.heartbeat ?? null]));
}

// A value that verified once verifies again (Ed25519 is deterministic): readers that look
// often (/status over a large fleet, 500 verifies) reuse the verification of values that have
// not changed since (each heartbeat changes every TTL/3). Bounded; the expiry is checked anew.
const VERIFIED_MAX = 4096;
const verifiedCache = new WeakMap<KeyObject, Map<string, { heartbeat: Record<string, unknown>; expiresAt: number }>>();

function verifiedRecord(raw: string, workersKey: KeyObject) {
  let cache = verifiedCache.get(workersKey);
  const hit = cache?.get(raw);
  if (hit !== undefined) return hit;
  const stored = parseStored(storedSchema, raw);
  if (stored === null) return null;
  const { signature, ...signed } = stored;
  if (!verifyPayload(signed, signature, workersKey)) return null;
  if (cache === undefined) {
    cache = new Map();
    verifiedCache.set(workersKey, cache);
  }
  if (cache.size >= VERIFIED_MAX) cache.delete(cache.keys().next().value as string);
  const record = { heartbeat: signed.heartbeat, expiresAt: signed.expiresAt };
  cache.set(raw, record);
  return record;
}

/**
 * One stored heartbeat, verified; null when malformed, unsigned, forged, expired or filed
 * under another host's key. For a reader that fetches heartbeats with other keys in one MGET
 * (/status: with the last deploy).
 */
export function parseHeartbeat(raw: string, host: string, workersKey: KeyObject, now: number): Heartbeat | null {
  const record = verifiedRecord(raw, workersKey);
  if (record === null || now > record.expiresAt) return null;
  const parsed = heartbeatSchema.safeParse(record.heartbeat);
  // A heartbeat filed under another host's key says nothing about this one.
  return parsed.success && parsed.data.host === host ? parsed.data : null;
}
