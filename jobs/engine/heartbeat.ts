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
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';
import { keys } from './keys.js';

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
});
export type Heartbeat = z.output<typeof heartbeatSchema>;

export interface HeartbeatOptions {
  redis: Redis;
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
    const value = JSON.stringify(heartbeat);
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

/** The heartbeats of these hosts in one round trip; null where missing or malformed. */
export async function readHeartbeats(redis: Redis, hosts: string[]): Promise<Map<string, Heartbeat | null>> {
  const out = new Map<string, Heartbeat | null>();
  if (hosts.length === 0) return out;
  const values = await redis.mget(hosts.map((host) => keys.heartbeat(host)));
  hosts.forEach((host, i) => {
    out.set(host, parseHeartbeat(values[i] ?? null, host));
  });
  return out;
}

/** One stored heartbeat, null when missing, malformed, or filed under another host's key. */
export function parseHeartbeat(raw: string | null, host: string): Heartbeat | null {
  if (raw === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return null;
  }
  const parsed = heartbeatSchema.safeParse(json);
  // A heartbeat filed under another host's key says nothing about this one.
  return parsed.success && parsed.data.host === host ? parsed.data : null;
}
