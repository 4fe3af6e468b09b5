// The health sweep (scheduled every minute): reads every registry host's heartbeat in one
// round trip, compares with the state it last stored for that host, and publishes one alert
// per change of state — "silent" when a host stopped writing heartbeats, "back" when it
// starts again — never one per sweep.
//
// A host counts as silent once its heartbeat has been missing for a grace period (longer
// than the heartbeat TTL, so a worker restart is not an alert). A host the sweep has never
// seen gets a longer grace: a freshly spawned host needs minutes to boot and bootstrap
// before its first heartbeat, and its spawn job reports on it meanwhile.
//
// Two sweeps that overlap (a slow one, a duplicated run) must not both alert: each host's
// state is replaced only if it is still what this sweep read (compare-and-set), and only
// the sweep whose write landed publishes.
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { readHeartbeats } from '../engine/heartbeat.js';
import type { JobType } from '../engine/job-type.js';
import { keys } from '../engine/keys.js';
import { publish } from '../engine/notify.js';
import { publicHalf } from '../signing.js';

export const HEALTH_SWEEP = 'health-sweep';

const dataSchema = z.object({}).strict();

const recordSchema = z.object({
  state: z.enum(['up', 'silent']),
  /** up: when it came up or tracking began; silent: when the silence began. */
  since: z.number(),
  /** When its last heartbeat was written; null if never seen. */
  lastSeen: z.number().nullable(),
});
type HealthRecord = z.output<typeof recordSchema>;

export interface HealthSweepDeps {
  redis: Redis;
  /** The registry's host names. */
  fleet: () => Promise<string[]>;
  opsChannelId?: string;
  now?: () => number;
  /** Missing this long after its last heartbeat, a host is silent. */
  silentAfterMs?: number;
  /** Missing this long after tracking began, a host never seen is silent. */
  newHostGraceMs?: number;
}

export interface HealthSweepResult {
  summary: string;
  up: number;
  /** No heartbeat, not yet silent for the grace period. */
  missing: number;
  silent: number;
  alerts: number;
}

const MINUTE = 60_000;
const DEFAULT_SILENT_AFTER_MS = 3 * MINUTE;
const DEFAULT_NEW_HOST_GRACE_MS = 20 * MINUTE;
// Every tracked host's record is rewritten each sweep; a host gone from the registry leaves
// its record to expire.
const RECORD_TTL_SECONDS = 86_400;

const COMPARE_AND_SET = `local cur = redis.call('GET', KEYS[1]) or ''
if cur == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end
return 0`;

export function healthSweep(deps: HealthSweepDeps): JobType<typeof dataSchema> {
  const now = deps.now ?? Date.now;
  const grace: Grace = {
    silentAfterMs: deps.silentAfterMs ?? DEFAULT_SILENT_AFTER_MS,
    newHostGraceMs: deps.newHostGraceMs ?? DEFAULT_NEW_HOST_GRACE_MS,
  };

  return {
    name: HEALTH_SWEEP,
    version: 1,
    schema: dataSchema,
    permission: 'status',
    scheduled: true,
    async run(ctx): Promise<HealthSweepResult> {
      const hosts = await deps.fleet();
      const at = now();
      // Verified with the workers' key, and unexpired at the sweep's own time.
      const heartbeats = await readHeartbeats(deps.redis, hosts, publicHalf(ctx.signer.key), at);
      const stored = hosts.length === 0 ? [] : await deps.redis.mget(hosts.map((h) => keys.health(h)));

      const counts = { up: 0, missing: 0, silent: 0 };
      const updates: { host: string; old: string; next: HealthRecord; alert?: string }[] = [];
      hosts.forEach((host, i) => {
        const old = stored[i] ?? null;
        const change = step(host, parseRecord(old), heartbeats.get(host)?.at ?? null, at, grace);
        updates.push({ host, old: old ?? '', ...change });
        if (change.next.state === 'silent') counts.silent++;
        else if (heartbeats.get(host)) counts.up++;
        else counts.missing++;
      });

      const writes = deps.redis.pipeline();
      for (const c of updates) {
        writes.eval(COMPARE_AND_SET, 1, keys.health(c.host), c.old, JSON.stringify(c.next), RECORD_TTL_SECONDS);
      }
      const written = updates.length === 0 ? [] : ((await writes.exec()) ?? []);
      let alerts = 0;
      for (const [i, c] of updates.entries()) {
        const [err, landed] = written[i] ?? [null, 0];
        if (err) throw err;
        if (c.alert === undefined || landed !== 1) continue;
        ctx.log.info({ host: c.host, state: c.next.state }, c.alert);
        await publish(deps.redis, ctx.signer, {
          kind: 'alert',
          jobId: ctx.jobId,
          type: HEALTH_SWEEP,
          text: c.alert,
          reply: deps.opsChannelId === undefined ? undefined : { channelId: deps.opsChannelId },
        });
        alerts++;
      }
      const summary = `${hosts.length} hosts: ${counts.up} up, ${counts.missing} missing, ${counts.silent} silent; ${alerts} alerts`;
      return { summary, ...counts, alerts };
    },
  };
}

interface Grace {
  silentAfterMs: number;
  newHostGraceMs: number;
}

/** The host's next record, and the alert when its state changed. */
function step(
  host: string,
  record: HealthRecord | null,
  heartbeatAt: number | null,
  at: number,
  grace: Grace,
): { next: HealthRecord; alert?: string } {
  if (heartbeatAt !== null) {
    const lastSeen = Math.min(heartbeatAt, at);
    if (record?.state === 'silent') {
      return {
        next: { state: 'up', since: at, lastSeen },
        alert: `${host} back (silent for ${duration(at - record.since)})`,
      };
    }
    return { next: { state: 'up', since: record?.since ?? at, lastSeen } };
  }
  if (record === null) return { next: { state: 'up', since: at, lastSeen: null } };
  if (record.state === 'silent') return { next: record };
  const from = record.lastSeen ?? record.since;
  const allowed = record.lastSeen === null ? grace.newHostGraceMs : grace.silentAfterMs;
  if (at - from < allowed) return { next: record };
  const seen = record.lastSeen === null ? `never seen since ${clock(from)}` : `last seen ${clock(from)}`;
  return {
    next: { state: 'silent', since: from, lastSeen: record.lastSeen },
    alert: `${host} silent for ${duration(at - from)} (${seen})`,
  };
}

function parseRecord(raw: string | null): HealthRecord | null {
  if (raw === null) return null;
  try {
    const parsed = recordSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** "2026-11-24 20:41 UTC" */
function clock(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** "7 min", "2 h 5 min" */
function duration(ms: number): string {
  const minutes = Math.max(1, Math.floor(ms / MINUTE));
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
