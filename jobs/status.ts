// The fleet at a glance: for each registry member, what EC2 says (state, instance, AMI,
// launch time), what SSM says (ping), and its worker's heartbeat — gathered in as few calls
// as the services allow (EC2: one paginated listing, ⌈N/1000⌉ calls; SSM: ⌈N/50⌉; heartbeats:
// one Redis round trip; for a member shown in detail, its build info in another beside it) —
// plus queue counts and the next scheduled runs. Today's model usage comes with each heartbeat; its estimated cost
// is priced here with the settings' prices.
//
// Degrade, don't fail: each source (registry, EC2, EC2 images, SSM, heartbeats, queues) is
// asked on its own, with a time limit, and one that fails or does not answer is marked with its cause
// ("SSM: unavailable (AccessDeniedException on DescribeInstanceInformation)") while the
// others are shown; a member's state is `unknown` where the missing source decides it.
//
// `--json` output (stable; scripts may rely on it): FleetStatus below.
import type { KeyObject } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { FleetRegistry } from '../infra/registry.js';
import { errorLine } from '../lib/errors.js';
import { type BuildInfo, formatBuildInfo, readBuildInfos } from './build-info.js';
import { CloudError } from './cloud/errors.js';
import type { Cloud, FleetInstance, PingStatus } from './cloud/types.js';
import { type Heartbeat, parseHeartbeat } from './engine/heartbeat.js';
import { keys } from './engine/keys.js';
import { LAST_DEPLOY_KEY, type LastDeploy, parseLastDeploy } from './fastlane/deps.js';
import { formatUsage, type ModelPrices, type UsageTotals, usageTotals } from './usage.js';

export type MemberState = 'online' | 'booting' | 'silent' | 'stopped' | 'missing' | 'unknown';

export const SOURCES = ['registry', 'ec2', 'images', 'ssm', 'heartbeats', 'queues'] as const;
export type SourceName = (typeof SOURCES)[number];

/** What one source answered: `ok`, or why not in one line (`<code> on <operation>` for AWS). */
export interface SourceStatus {
  ok: boolean;
  error: string | null;
}

export interface MemberStatus {
  name: string;
  state: MemberState;
  instanceType: string;
  /** The AMI recorded in the registry (what the next deploy uses). */
  registryAmi: string | null;
  instanceId: string | null;
  ec2State: string | null;
  /** The AMI the running instance was launched from. */
  ami: string | null;
  launchTime: string | null;
  privateIp: string | null;
  ssm: PingStatus | null;
  heartbeat: {
    at: string;
    version: string;
    revision: string;
    activeJobs: number;
    startedAt: string;
    /** What the worker learned itself: its instance id, or why it could not. */
    instanceId: string;
    instanceIdError: string | null;
    /** Whether /memory is the shared file system; null: the worker does not say. */
    memoryShared: boolean | null;
    /** Whether the host was built from a flake with a committed flake.lock; null: unknown. */
    locked: boolean | null;
    /** Since when the host runs `revision` (its last switch); null: the worker does not say. */
    switchedAt: string | null;
  } | null;
  /** Its instance runs an image older than the newest available image of ours (a rollout is due). */
  olderImage: boolean;
  /** Its heartbeat reports a revision other than the last successful deploy's. */
  notOnLastDeploy: boolean;
  /** Today's model usage (UTC day) from the heartbeat, priced with the settings; null: not reported. */
  usage?: (UsageTotals & { day: string }) | null;
  /** What the host was built from (its worker's copy of /etc/clawdinator/build-info.json). */
  build?: BuildInfo | null;
}

export interface QueueCounts {
  queue: string;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
}

export interface FleetStatus {
  generatedAt: string;
  /** Each source's answer; members and strays show only what the sources that answered say. */
  sources: Record<SourceName, SourceStatus>;
  /** The last deploy that ran to its end (its sha, whether it succeeded, when, its job); null: none or heartbeats unavailable. */
  lastDeploy: LastDeploy | null;
  /** The newest available image of ours, what the fleet converges on; null when there is none. */
  newestAmi: string | null;
  members: MemberStatus[];
  /** Instances tagged as fleet members that the registry does not list. */
  strays: { instanceId: string; name: string | null; state: string }[];
  queues: QueueCounts[];
  schedules: { id: string; next: string | null }[];
}

/** A host that has not reported within this long after launch is silent rather than booting. */
export const BOOT_GRACE_MS = 10 * 60 * 1000;

export interface StatusDeps {
  registry: () => Promise<FleetRegistry>;
  cloud: Pick<Cloud, 'listFleetInstances' | 'pingStatus' | 'findLatestAmi'>;
  redis: Redis;
  /** The workers' public key: a heartbeat that does not verify with it reads as absent. */
  workersKey: KeyObject;
  queues: Queue[];
  now?: () => number;
  /** How long one source may take before it is marked as not answering; default 10 s. */
  sourceTimeoutMs?: number;
  /** USD per million tokens (CLAWDINATOR_MODEL_PRICES); without: usage shows no cost. */
  prices?: ModelPrices;
  /** The member shown in detail: its build info is read too (one more Redis command, beside the heartbeats). */
  detail?: string;
}

const DEFAULT_SOURCE_TIMEOUT_MS = 10_000;

class NoAnswer extends Error {}

/** Why a source did not answer, in one line: AWS's code and the operation, or the error's line. */
export function sourceError(err: unknown): string {
  if (err instanceof CloudError) return `${err.code} on ${err.operation}`;
  return errorLine(err);
}

function pickInstance(instances: FleetInstance[]): FleetInstance | undefined {
  const rank = (i: FleetInstance) =>
    ['running', 'pending', 'stopping', 'stopped', 'shutting-down', 'terminated'].indexOf(i.state);
  return [...instances].sort((a, b) => rank(a) - rank(b))[0];
}

/**
 * A member's state from what is known: `instance` undefined when EC2 lists none, null when
 * EC2 did not answer; `hasHeartbeat` null when the heartbeats could not be read.
 */
export function memberState(
  instance: FleetInstance | undefined | null,
  hasHeartbeat: boolean | null,
  now: number,
): MemberState {
  // A heartbeat is a worker alive on the host, whatever EC2 could say.
  if (instance === null) return hasHeartbeat === true ? 'online' : 'unknown';
  if (instance === undefined || instance.state === 'terminated') return 'missing';
  if (instance.state !== 'running' && instance.state !== 'pending') return 'stopped';
  if (hasHeartbeat === true && instance.state === 'running') return 'online';
  const launched = instance.launchTime ? Date.parse(instance.launchTime) : now;
  if (instance.state === 'pending' || now - launched < BOOT_GRACE_MS) return 'booting';
  return hasHeartbeat === null ? 'unknown' : 'silent';
}

export async function fleetStatus(deps: StatusDeps): Promise<FleetStatus> {
  const now = deps.now?.() ?? Date.now();
  const timeoutMs = deps.sourceTimeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS;
  const sources = Object.fromEntries(SOURCES.map((s) => [s, { ok: true, error: null }])) as Record<
    SourceName,
    SourceStatus
  >;
  /** The source's answer, or null with the source marked unavailable. */
  const ask = async <T>(source: SourceName, work: () => Promise<T>): Promise<T | null> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new NoAnswer(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    try {
      return await Promise.race([work(), late]);
    } catch (err) {
      sources[source] = { ok: false, error: sourceError(err) };
      return null;
    } finally {
      clearTimeout(timer);
    }
  };

  const registry = await ask('registry', deps.registry);
  const names = Object.keys(registry ?? {}).sort();
  const [instances, redisState, newest, builds] = await Promise.all([
    ask('ec2', () => deps.cloud.listFleetInstances()),
    // Verified: a forged or expired heartbeat reads as absent, never as an online member. The
    // last deploy comes in the same round trip.
    ask('heartbeats', () => readRedisState(deps.redis, names, deps.workersKey, now)),
    // The newest image is one DescribeImages call, whatever the fleet's size; its own source,
    // so an image listing that fails costs only the "older image" mark.
    ask('images', () => deps.cloud.findLatestAmi()),
    // Beside the heartbeats, from the same Redis: a failure marks the heartbeats' source (the
    // heartbeats read on their own, so the members' states keep them).
    ask('heartbeats', () =>
      readBuildInfos(deps.redis, deps.detail !== undefined && names.includes(deps.detail) ? [deps.detail] : []),
    ),
  ]);
  const heartbeats = redisState?.heartbeats ?? null;
  const lastDeploy = redisState?.lastDeploy ?? null;
  const deployed = lastDeploy?.ok ? lastDeploy.sha : null;
  const newestAmi = newest?.imageId ?? null;
  const byName = new Map<string, FleetInstance[]>();
  for (const i of instances ?? []) {
    if (i.name === null) continue;
    byName.set(i.name, [...(byName.get(i.name) ?? []), i]);
  }
  const chosen = new Map(
    names.map((n): [string, FleetInstance | undefined | null] => [
      n,
      instances === null ? null : pickInstance(byName.get(n) ?? []),
    ]),
  );
  const live = [...chosen.values()].filter((i): i is FleetInstance => i != null && i.state !== 'terminated');
  if (instances === null) sources.ssm = { ok: false, error: 'not asked: EC2 did not answer' };
  const [pings, queued] = await Promise.all([
    live.length > 0
      ? ask('ssm', () => deps.cloud.pingStatus(live.map((i) => i.instanceId)))
      : Promise.resolve(new Map<string, PingStatus>()),
    ask('queues', () =>
      Promise.all([
        Promise.all(deps.queues.map(queueCounts)),
        deps.queues.length > 0 ? (deps.queues[0]?.getJobSchedulers() ?? []) : Promise.resolve([]),
      ]),
    ),
  ]);
  const [queues, schedules] = queued ?? [[], []];

  const members = names.map((name): MemberStatus => {
    const entry = registry?.[name];
    const instance = chosen.get(name);
    const hb: Heartbeat | null = heartbeats?.get(name) ?? null;
    return {
      name,
      state: memberState(instance, heartbeats === null ? null : hb !== null, now),
      instanceType: entry?.instanceType ?? '',
      registryAmi: entry?.ami ?? null,
      instanceId: instance?.instanceId ?? null,
      ec2State: instance?.state ?? null,
      ami: instance?.imageId ?? null,
      launchTime: instance?.launchTime ?? null,
      privateIp: instance?.privateIp ?? null,
      ssm: instance ? (pings?.get(instance.instanceId) ?? null) : null,
      heartbeat: hb
        ? {
            at: new Date(hb.at).toISOString(),
            version: hb.version,
            revision: hb.revision,
            activeJobs: hb.activeJobs,
            startedAt: new Date(hb.startedAt).toISOString(),
            instanceId: hb.instanceId,
            instanceIdError: hb.instanceIdError ?? null,
            memoryShared: hb.memoryShared ?? null,
            locked: hb.locked ?? null,
            switchedAt: hb.switchedAt === undefined ? null : new Date(hb.switchedAt).toISOString(),
          }
        : null,
      notOnLastDeploy: deployed !== null && hb !== null && hb.revision !== deployed,
      olderImage:
        newestAmi !== null && instance != null && instance.state !== 'terminated' && instance.imageId !== newestAmi,
      usage: hb?.usage ? { day: hb.usage.day, ...usageTotals(hb.usage, deps.prices ?? {}) } : null,
      ...(builds?.has(name) ? { build: builds.get(name) ?? null } : {}),
    };
  });
  // Without the registry, nothing can be called a stray.
  const strays =
    registry === null
      ? []
      : (instances ?? [])
          .filter((i) => i.state !== 'terminated' && (i.name === null || !(i.name in registry)))
          .map((i) => ({ instanceId: i.instanceId, name: i.name, state: i.state }));
  return {
    generatedAt: new Date(now).toISOString(),
    sources,
    lastDeploy,
    newestAmi,
    members,
    strays,
    queues,
    schedules: (schedules ?? []).map((s) => ({ id: s.key, next: s.next ? new Date(s.next).toISOString() : null })),
  };
}

/** Every member's heartbeat (verified) and the last deploy, in one Redis round trip (one MGET). */
async function readRedisState(
  redis: Redis,
  names: string[],
  workersKey: KeyObject,
  now: number,
): Promise<{ heartbeats: Map<string, Heartbeat | null>; lastDeploy: LastDeploy | null }> {
  const values = await redis.mget([...names.map((n) => keys.heartbeat(n)), LAST_DEPLOY_KEY]);
  const heartbeats = new Map(
    names.map((n, i) => {
      const raw = values[i] ?? null;
      return [n, raw === null ? null : parseHeartbeat(raw, n, workersKey, now)];
    }),
  );
  return { heartbeats, lastDeploy: parseLastDeploy(values[names.length] ?? null) };
}

async function queueCounts(queue: Queue): Promise<QueueCounts> {
  const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed');
  return {
    queue: queue.name,
    waiting: c.waiting ?? 0,
    active: c.active ?? 0,
    delayed: c.delayed ?? 0,
    failed: c.failed ?? 0,
  };
}

const ICON: Record<MemberState, string> = {
  online: '🟢',
  booting: '🟡',
  silent: '🟠',
  stopped: '⚪',
  missing: '🔴',
  unknown: '❔',
};

const SOURCE_LABEL: Record<SourceName, string> = {
  registry: 'registry',
  ec2: 'EC2',
  images: 'EC2 images',
  ssm: 'SSM',
  heartbeats: 'heartbeats',
  queues: 'queues',
};

/** "SSM: unavailable (AccessDeniedException on DescribeInstanceInformation)", one per source that failed. */
export function unavailableSources(status: FleetStatus): string[] {
  return SOURCES.filter((s) => !status.sources[s].ok).map(
    (s) => `${SOURCE_LABEL[s]}: unavailable (${status.sources[s].error ?? 'no answer'})`,
  );
}

/** What a host's own heartbeat says is wrong with it: each a short warning. */
export function hostWarnings(m: MemberStatus): string[] {
  const hb = m.heartbeat;
  if (hb === null) return [];
  const out: string[] = [];
  if (hb.memoryShared === false) out.push('/memory is not the shared file system');
  if (hb.instanceIdError !== null) out.push(`instance id unavailable (${hb.instanceIdError})`);
  if (hb.locked === false) out.push('built without flake.lock');
  return out;
}

/** "rev 5a4dbeef since 2026-11-24 20:41": the revision the host reports and since when. */
function revisionText(hb: NonNullable<MemberStatus['heartbeat']>): string {
  const since = hb.switchedAt ? ` since ${hb.switchedAt.slice(0, 16).replace('T', ' ')}` : '';
  return `rev ${hb.revision.slice(0, 8)}${since}`;
}

function deployWarning(status: FleetStatus, m: MemberStatus): string[] {
  if (!m.notOnLastDeploy || status.lastDeploy === null) return [];
  return [`⚠️ not on the last deploy's ${status.lastDeploy.sha.slice(0, 8)}`];
}

/** The one-glance table for Discord and the terminal. */
export function formatStatus(status: FleetStatus): string {
  const missing = unavailableSources(status).map((line) => `⚠️ ${line}`);
  const rows = status.members.map((m) =>
    [
      `${ICON[m.state]} ${m.name}`,
      m.state,
      m.instanceId ?? '—',
      m.ami ?? m.registryAmi ?? '—',
      m.heartbeat ? revisionText(m.heartbeat) : '—',
      ...(m.usage ? [`models today: ${formatUsage(m.usage)}`] : []),
      ...deployWarning(status, m),
      ...hostWarnings(m).map((w) => `⚠️ ${w}`),
      ...(m.olderImage ? ['⚠️ older image'] : []),
    ].join('  '),
  );
  const q = status.queues.map(
    (c) => `${c.queue}: ${c.waiting} waiting, ${c.active} active, ${c.delayed} delayed, ${c.failed} failed`,
  );
  const s = status.schedules.map((x) => `${x.id}: next ${x.next ?? '—'}`);
  const last = status.lastDeploy;
  const deploy = last
    ? [`last deploy: ${last.sha.slice(0, 8)} ${last.ok ? 'succeeded' : 'FAILED'} at ${last.at} (job ${last.jobId})`]
    : [];
  const strays = status.strays.map(
    (x) => `⚠️ ${x.instanceId} (${x.name ?? 'no name'}) is tagged as a fleet member but not in the registry`,
  );
  return [...missing, ...rows, ...strays, '', ...deploy, ...q, ...s].join('\n').trim();
}

export function formatMember(status: FleetStatus, name: string): string | null {
  const m = status.members.find((x) => x.name === name);
  const now = Date.parse(status.generatedAt);
  if (m === undefined) return null;
  const { ec2, ssm, heartbeats } = status.sources;
  return [
    `${ICON[m.state]} **${m.name}** — ${m.state}`,
    ec2.ok
      ? `instance: ${m.instanceId ?? '—'} (${m.ec2State ?? 'none'}), ${m.instanceType}`
      : `instance: EC2 unavailable (${ec2.error}), ${m.instanceType}`,
    `AMI: ${m.ami ?? '—'} (registry: ${m.registryAmi ?? '—'})${m.olderImage ? ` ⚠️ older than the newest image ${status.newestAmi}` : ''}`,
    `launched: ${m.launchTime ?? '—'}, private IP: ${m.privateIp ?? '—'}`,
    `SSM: ${m.ssm ?? (ssm.ok ? '—' : `unavailable (${ssm.error})`)}`,
    m.heartbeat
      ? `worker: v${m.heartbeat.version} rev ${m.heartbeat.revision}${m.heartbeat.switchedAt ? ` (since ${m.heartbeat.switchedAt})` : ''}, ${m.heartbeat.activeJobs} active jobs, last heartbeat ${m.heartbeat.at}`
      : heartbeats.ok
        ? 'worker: no heartbeat'
        : `worker: heartbeats unavailable (${heartbeats.error})`,
    ...deployWarning(status, m),
    m.usage ? `models today (${m.usage.day} UTC): ${formatUsage(m.usage)}` : 'models today: not reported',
    ...(m.build ? formatBuildInfo(m.build, now) : ['build: not reported']),
    ...hostWarnings(m).map((w) => `⚠️ ${w}`),
  ].join('\n');
}
