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
//
// With the cloud, a host without a heartbeat past its grace is told apart by what EC2 says
// (one listing per sweep): its instance runs (or is stopped) — "silent"; EC2 lists none —
// "gone", a registry member whose instance is gone; EC2 cannot be asked — "no heartbeat,
// cannot ask AWS", never a "silent" that nobody could check. It also reports strays:
// instances tagged as ours (app=clawdinator) that the registry does not know, once each.
// Each says which `clawdinator fleet cleanup … --yes` (the stray-cleanup job) ends it, and
// offers a button that does the same from the ops channel: a signed offer (stray-offer.ts)
// the relay renders it from; a member that is back is offered no more.
// A member whose instance lock is held is left alone: the job at work on it reports.
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Cloud, FleetInstance } from '../cloud/types.js';
import { readHeartbeats } from '../engine/heartbeat.js';
import type { JobType } from '../engine/job-type.js';
import { keys } from '../engine/keys.js';
import { publish } from '../engine/notify.js';
import {
  STRAY_OFFER_SECONDS,
  type StrayOffer,
  strayButtonId,
  withdrawStrayOffer,
  writeStrayOffer,
} from '../engine/stray-offer.js';
import { publicHalf } from '../signing.js';
import { sourceError } from '../status.js';

export const HEALTH_SWEEP = 'health-sweep';

const dataSchema = z.object({}).strict();

const recordSchema = z.object({
  /** silent: no heartbeat, its instance exists; gone: no instance; unknown: AWS could not say. */
  state: z.enum(['up', 'silent', 'gone', 'unknown']),
  /** up: when it came up or tracking began; otherwise: when the silence began. */
  since: z.number(),
  /** When its last heartbeat was written; null if never seen. */
  lastSeen: z.number().nullable(),
});
type HealthRecord = z.output<typeof recordSchema>;
type HealthState = HealthRecord['state'];

export interface HealthSweepDeps {
  redis: Redis;
  /** The registry's host names. */
  fleet: () => Promise<string[]>;
  /** Where instances are listed (tag app=clawdinator); without it, no heartbeat is "silent". */
  cloud?: Pick<Cloud, 'listFleetInstances'>;
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
  /** Registry members EC2 has no instance of. */
  gone: number;
  /** No heartbeat past the grace, and EC2 could not be asked. */
  unknown: number;
  /** Instances of ours the registry does not know. */
  strays: number;
  alerts: number;
}

/** What EC2 said this sweep: the live instances by Name, or why it could not be asked. */
type Ec2View = { kind: 'none' } | { kind: 'failed'; error: string } | { kind: 'listed'; live: FleetInstance[] };

const MINUTE = 60_000;
const DEFAULT_SILENT_AFTER_MS = 3 * MINUTE;
const DEFAULT_NEW_HOST_GRACE_MS = 20 * MINUTE;
// Every tracked host's record is rewritten each sweep; a host gone from the registry leaves
// its record to expire.
const RECORD_TTL_SECONDS = 86_400;

const COMPARE_AND_SET = `local cur = redis.call('GET', KEYS[1]) or ''
if cur == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end
return 0`;
// A stray is reported when first seen; its key lives while it does (refreshed each sweep).
const STRAY_TTL_SECONDS = 86_400;

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
      const ec2 = await listEc2(deps.cloud);
      const live = ec2.kind === 'listed' ? ec2.live : [];
      const strays = live.filter((i) => i.name === null || !hosts.includes(i.name));
      // Members and strays a job holds the instance lock of: that job reports on them.
      const lockNames = [...hosts, ...strays.flatMap((i) => (i.name === null ? [] : [i.name]))];
      const locks = lockNames.length === 0 ? [] : await deps.redis.mget(lockNames.map((n) => keys.instanceLock(n)));
      const busy = new Set(lockNames.filter((_, i) => locks[i] != null));
      const stored = hosts.length === 0 ? [] : await deps.redis.mget(hosts.map((h) => keys.health(h)));

      const counts = { up: 0, missing: 0, silent: 0, gone: 0, unknown: 0 };
      const updates: { host: string; old: string; next: HealthRecord; alert?: string }[] = [];
      hosts.forEach((host, i) => {
        const old = stored[i] ?? null;
        const seen: Seen =
          ec2.kind === 'none'
            ? { kind: 'no-cloud' }
            : ec2.kind === 'failed'
              ? { kind: 'failed', error: ec2.error }
              : { kind: 'listed', instance: live.find((x) => x.name === host) };
        const change = step(host, parseRecord(old), heartbeats.get(host)?.at ?? null, at, grace, seen, busy.has(host));
        updates.push({ host, old: old ?? '', ...change });
        const state = change.next.state;
        if (state !== 'up') counts[state]++;
        else if (heartbeats.get(host)) counts.up++;
        else counts.missing++;
      });

      const writes = deps.redis.pipeline();
      for (const c of updates) {
        writes.eval(COMPARE_AND_SET, 1, keys.health(c.host), c.old, JSON.stringify(c.next), RECORD_TTL_SECONDS);
      }
      const written = updates.length === 0 ? [] : ((await writes.exec()) ?? []);
      // The alert's button (operators, after a confirmation, queue stray-cleanup): a signed
      // offer the relay renders it from, written before the alert that names it.
      const offerFor = async (o: Pick<StrayOffer, 'target' | 'action' | 'instanceName'> & { label: string }) => {
        if (deps.opsChannelId === undefined) return undefined;
        const expiresAt = Math.floor(at / 1000) + STRAY_OFFER_SECONDS;
        await writeStrayOffer(deps.redis, ctx.signer, {
          target: o.target,
          action: o.action,
          instanceName: o.instanceName,
          jobId: ctx.jobId,
          channelId: deps.opsChannelId,
          expiresAt,
          buttons: [{ id: strayButtonId(o.target, expiresAt), label: o.label, style: 'danger' }],
        });
        return o.target;
      };
      let alerts = 0;
      for (const [i, c] of updates.entries()) {
        const [err, landed] = written[i] ?? [null, 0];
        if (err) throw err;
        if (c.alert === undefined || landed !== 1) continue;
        ctx.log.info({ host: c.host, state: c.next.state }, c.alert);
        // A member gone from EC2 is offered for retiring; one that is not (any more) is not.
        const offer =
          c.next.state === 'gone'
            ? await offerFor({
                target: c.host,
                action: 'retire',
                instanceName: c.host,
                label: `Retire ${c.host}'s entry`,
              })
            : await withdrawStrayOffer(deps.redis, c.host).then(() => undefined);
        await publish(deps.redis, ctx.signer, {
          kind: 'alert',
          jobId: ctx.jobId,
          type: HEALTH_SWEEP,
          text: c.alert,
          reply: deps.opsChannelId === undefined ? undefined : { channelId: deps.opsChannelId },
          offer,
        });
        alerts++;
      }
      for (const stray of strays) {
        if (stray.name !== null && busy.has(stray.name)) continue;
        const key = keys.healthStray(stray.instanceId);
        const first = await deps.redis.set(key, String(at), 'EX', STRAY_TTL_SECONDS, 'NX');
        if (first === null) {
          await deps.redis.expire(key, STRAY_TTL_SECONDS);
          continue;
        }
        const text = `stray: ${stray.instanceId} (${stray.name ?? 'no Name tag'}) is tagged app=clawdinator but not in the registry (${stray.state}): \`clawdinator fleet cleanup ${stray.instanceId} --yes\` terminates it`;
        ctx.log.info({ instanceId: stray.instanceId }, text);
        await publish(deps.redis, ctx.signer, {
          kind: 'alert',
          jobId: ctx.jobId,
          type: HEALTH_SWEEP,
          text,
          reply: deps.opsChannelId === undefined ? undefined : { channelId: deps.opsChannelId },
          offer: await offerFor({
            target: stray.instanceId,
            action: 'terminate',
            instanceName: stray.name,
            label: `Terminate ${stray.instanceId}`,
          }),
        });
        alerts++;
      }
      const more = [
        counts.gone > 0 ? `, ${counts.gone} gone` : '',
        counts.unknown > 0 ? `, ${counts.unknown} unknown (AWS not answering)` : '',
        strays.length > 0 ? `; ${strays.length} strays` : '',
      ].join('');
      const summary = `${hosts.length} hosts: ${counts.up} up, ${counts.missing} missing, ${counts.silent} silent${more}; ${alerts} alerts`;
      return { summary, ...counts, strays: strays.length, alerts };
    },
  };
}

/** One EC2 listing for the sweep; its failure is reported, never a reason to call hosts silent. */
async function listEc2(cloud: HealthSweepDeps['cloud']): Promise<Ec2View> {
  if (cloud === undefined) return { kind: 'none' };
  try {
    const instances = await cloud.listFleetInstances();
    return { kind: 'listed', live: instances.filter((i) => i.state !== 'terminated' && i.state !== 'shutting-down') };
  } catch (err) {
    return { kind: 'failed', error: sourceError(err) };
  }
}

/** What the sweep knows of one host's instance. */
type Seen =
  | { kind: 'no-cloud' }
  | { kind: 'failed'; error: string }
  | { kind: 'listed'; instance: FleetInstance | undefined };

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
  seen: Seen,
  busy: boolean,
): { next: HealthRecord; alert?: string } {
  if (heartbeatAt !== null) {
    const lastSeen = Math.min(heartbeatAt, at);
    if (record !== null && record.state !== 'up') {
      const was = record.state === 'silent' ? 'silent' : 'no heartbeat';
      return {
        next: { state: 'up', since: at, lastSeen },
        alert: `${host} back (${was} for ${duration(at - record.since)})`,
      };
    }
    return { next: { state: 'up', since: record?.since ?? at, lastSeen } };
  }
  if (record === null) return { next: { state: 'up', since: at, lastSeen: null } };
  // A job holds the member (a spawn booting it, a retire taking it away): it reports.
  if (busy) return { next: record };
  const from = record.lastSeen ?? record.since;
  if (record.state === 'up') {
    const allowed = record.lastSeen === null ? grace.newHostGraceMs : grace.silentAfterMs;
    if (at - from < allowed) return { next: record };
  }
  const state = stateOf(seen);
  // AWS not answering says nothing new about a host already reported silent or gone.
  if (state === record.state || (state === 'unknown' && record.state !== 'up')) return { next: record };
  const when = record.lastSeen === null ? `never seen since ${clock(from)}` : `last seen ${clock(from)}`;
  const next: HealthRecord = { state, since: from, lastSeen: record.lastSeen };
  switch (state) {
    case 'unknown':
      return {
        next,
        alert: `${host}: no heartbeat for ${duration(at - from)} (${when}); cannot ask AWS whether its instance runs (${(seen as { error: string }).error})`,
      };
    case 'gone':
      return {
        next,
        alert: `${host} is in the registry, but EC2 has no instance of it (${when}): \`clawdinator fleet cleanup ${host} --yes\` retires the entry`,
      };
    default: {
      const instance = seen.kind === 'listed' ? seen.instance : undefined;
      const ec2 = instance === undefined ? '' : `; EC2: ${instance.instanceId} ${instance.state}`;
      return { next, alert: `${host} silent for ${duration(at - from)} (${when})${ec2}` };
    }
  }
}

/** A host without a heartbeat past its grace: what it is, by what EC2 said. */
function stateOf(seen: Seen): Exclude<HealthState, 'up'> {
  if (seen.kind === 'no-cloud') return 'silent';
  if (seen.kind === 'failed') return 'unknown';
  return seen.instance === undefined ? 'gone' : 'silent';
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
