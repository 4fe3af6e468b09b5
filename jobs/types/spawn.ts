// The spawn job: a new fleet member, from a name to a host whose worker is online.
//
// Everything that can refuse runs first, before anything is created: the registry would
// take our commit (its store's preflight), the name is free (not in the registry, no
// instance with that Name tag), the fleet is below its cap, the name's
// Discord token secret exists (each agent needs its own token: the original learned that
// the token pool is the fleet's size), an available AMI of ours, and the spawn rate limit.
//
// Then, as resumable steps, each side effect idempotent by itself (a worker can die between
// the effect and the saving of its step):
//   agent-key   the host's job-signing key pair; the private key becomes the host's secret
//               (a rerun makes a new pair and overwrites it: the deployer never reads it back)
//   registry    the entry (with the AMI and the public key) added; an entry with our key is ours
//   bundle      s3://<bucket>/bootstrap/<name>/: config.json (names of secrets, never values),
//               workspace templates, repo seeds, manifest (jobs/bootstrap/bundle.ts)
//   plan        the member's stack; it must only create
//   apply       exactly that plan (resumed elsewhere: a new plan within the saved summary,
//               which is empty once the instance exists)
//   running, ssm-online, heartbeat   waits that re-delay the job instead of holding a worker
//   record      a line in ops.md and in the audit
//
// A failure names its step. When the job ends without success, whatever ended it (the last
// attempt failed, a refusal, a cancel, a stall, a removal), the engine's finalizer runs
// `undoSpawn` from the request and its saved steps alone: before the apply is recorded, what
// the job made is removed — an instance it launched (found by its job tag), the member's
// stack, the registry entry, the host key, the bundle — so the name is free again and the
// registry lists only what exists; the spawn-rate slot is refunded when the apply never
// started. After the apply, the instance exists and its entry stays: the final message says
// to retire or replace it.

import { randomUUID } from 'node:crypto';
import { DelayedError, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { hostSecretsPrefix } from '../../infra/names.js';
import type { FleetRegistry, RegistryEntry } from '../../infra/registry.js';
import { DEFAULT_INSTANCE_TYPES, instanceName, instanceTypeShape } from '../../lib/config.js';
import { OperationError, RefusedError } from '../../lib/errors.js';
import type { MemoryStore } from '../../memory/store.js';
import type { AuditTrail } from '../audit.js';
import { uploadBundle } from '../bootstrap/bundle.js';
import { CloudError } from '../cloud/errors.js';
import { AMI_TAG, type AmiInfo, type Cloud, JOB_TAG } from '../cloud/types.js';
import type { Deployer } from '../deploy/types.js';
import { describePrincipal } from '../engine/envelope.js';
import { readHeartbeats } from '../engine/heartbeat.js';
import type { JobContext, JobEnd, JobType } from '../engine/job-type.js';
import { keys } from '../engine/keys.js';
import type { RegistryStore } from '../registry/types.js';
import { generateSigningKeyPair, publicHalf } from '../signing.js';
import { type LockOwner, lockOwner } from '../terraform/lock.js';
import { formatSummary, type PlanSummary } from '../terraform/summary.js';
import {
  commandFor,
  LifecycleJob,
  type LifecycleUndo,
  lifecycleFinalize,
  lifecycleSteps,
  refusedIsFinal,
  via,
} from './lifecycle.js';

export const SPAWN = 'spawn';

/**
 * The spawn's data. The instance type must be one of the allowed ones (CLAWDINATOR_INSTANCE_TYPES):
 * checked here, so an agent's signed request for any other type is refused by the worker's
 * schema check before the job runs, not only by Discord's choice list.
 */
function dataSchemaFor(instanceTypes: readonly string[]) {
  return z
    .object({
      name: instanceName,
      instanceType: instanceTypeShape
        .refine((t) => instanceTypes.includes(t), {
          message: `not an allowed instance type (${instanceTypes.join(', ')})`,
        })
        .optional(),
      ami: z
        .string()
        .regex(/^ami-[0-9a-f]{8,17}$/)
        .optional(),
    })
    .strict();
}
type SpawnSchema = ReturnType<typeof dataSchemaFor>;
type SpawnData = z.output<SpawnSchema>;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export interface SpawnWaits {
  /** Between two looks at the instance, its SSM agent or its heartbeat. */
  pollMs: number;
  runningTimeoutMs: number;
  /** From running to the SSM agent online: the host boots and bootstraps. */
  onlineTimeoutMs: number;
  /** From SSM online to the host's worker heartbeat. */
  heartbeatTimeoutMs: number;
}

export const defaultSpawnWaits: SpawnWaits = {
  pollMs: 10_000,
  runningTimeoutMs: 10 * MINUTE,
  onlineTimeoutMs: 20 * MINUTE,
  heartbeatTimeoutMs: 20 * MINUTE,
};

/** What the lifecycle jobs act on: the cloud, the infrastructure and the registry. */
export interface FleetDeps {
  cloud: Cloud;
  deployer: Deployer;
  registryStore: RegistryStore;
  /** The base stack's bucket, for bootstrap bundles. */
  bucket: string;
  /** Written into the bundle; null: the host's own region (the AWS chain). */
  region: string | null;
  /** Written into the bundle: the base stack's EFS id and the fleet's Redis (no password). */
  efsId?: string | null;
  redisUrl?: string | null;
  /** Written into the bundle: the flake the new host's first boot switches to (github:owner/repo/rev). */
  flake?: string | null;
  /** Written into the bundle: model keys the agent holds itself (provider → secret name). */
  agentKeys?: Record<string, string>;
  fleetMaxSize: number;
  spawnsPerHour: number;
  defaultInstanceType: string;
  waits?: Partial<SpawnWaits>;
  /**
   * Wait for the new host's worker heartbeat (default). False for `fleet spawn --local`: its
   * Redis is a temporary one that the new host's worker never reaches, so the job ends at
   * "SSM online" and says so.
   */
  awaitHeartbeat?: boolean;
}

export interface SpawnDeps {
  redis: Redis;
  memory?: MemoryStore;
  /** Where the outcome is audited (jobs/audit.ts); default: the journal and the memory copy. */
  audit?: AuditTrail;
  fleet?: FleetDeps;
  /** Where an ops.md line that could not be written is reported. */
  opsChannelId?: string;
  /** The instance types a spawn may use (CLAWDINATOR_INSTANCE_TYPES); default DEFAULT_INSTANCE_TYPES. */
  instanceTypes?: readonly string[];
}

/** The name's own Discord bot token, as the original named them. */
export function discordTokenSecret(name: string): string {
  return `clawdinator/discord-token/${name}`;
}

/** The host's job-signing private key; its public key is in the registry entry. */
export function agentKeySecret(name: string): string {
  return `${hostSecretsPrefix(name)}agent-key`;
}

// Atomic, so two spawns cannot both take the last slot; a job already counted passes again.
const CHARGE_SPAWN = `redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - ${HOUR})
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ${HOUR})
return 1`;

/** The spawn's steps in order (the heartbeat only when awaited). */
function spawnSteps(awaitHeartbeat: boolean): string[] {
  return [
    'checks',
    'agent-key',
    'registry',
    'bundle',
    'plan',
    'apply',
    'running',
    'ssm-online',
    ...(awaitHeartbeat ? ['heartbeat'] : []),
    'record',
  ];
}

interface Chosen {
  ami: string;
  instanceType: string;
  startedAt: number;
}

export function spawnJob(deps: SpawnDeps): JobType<SpawnSchema> {
  const instanceTypes = deps.instanceTypes ?? DEFAULT_INSTANCE_TYPES;
  return {
    name: SPAWN,
    version: 1,
    schema: dataSchemaFor(instanceTypes),
    permission: 'spawn',
    agentAllowed: true,
    instanceOf: (d) => d.name,
    // The new host's own worker comes up while the job waits for its heartbeat: it leaves the
    // job to a peer (whose settings made the host) rather than finishing its own spawn.
    avoidOwnHost: true,
    attempts: 3,
    steps: (_data, principal) => lifecycleSteps(principal, spawnSteps(deps.fleet?.awaitHeartbeat !== false)),
    finalize: lifecycleFinalize('spawn', deps, (end) => undoSpawn(end, deps)),
    async run(ctx) {
      const { fleet, memory } = deps;
      // The gateway and `clawdinator jobs` register every type for its schema only.
      if (fleet === undefined || memory === undefined) {
        throw new UnrecoverableError('spawn: this worker has no cloud, deployer, registry store or memory configured');
      }
      return new Spawn(ctx, deps.redis, memory, fleet, instanceTypes, deps.audit).reportRecordsTo(deps).run();
    },
  };
}

/**
 * Removes what a spawn that did not succeed made, from its request and saved steps alone (the
 * finalizer runs it; no processor state). Each part is idempotent, and each is conditioned
 * on the step BEFORE it being saved, since a step may have run part-way without being saved.
 */
export async function undoSpawn(end: JobEnd<SpawnData>, deps: SpawnDeps): Promise<LifecycleUndo> {
  const { name } = end.data;
  const saved = end.steps;
  const has = (step: string) => Object.hasOwn(saved, step);
  const again = commandFor('spawn', name, end.principal);
  if (has('apply')) {
    // The instance exists and terraform knows it: the entry stays with it.
    const { instanceId } = saved.apply as { instanceId: string };
    return {
      left: `Left: ${instanceId} and its registry entry ${name}`,
      next: `run ${commandFor('retire', name, end.principal)} to remove them, or ${commandFor('replace', name, end.principal)} for a new host`,
    };
  }
  const fleet = deps.fleet;
  if (fleet === undefined) throw new OperationError('spawn: this worker cannot undo a spawn (no fleet configured)');
  const undone: string[] = [];
  if (has('plan')) {
    // The apply may have run part-way: what it launched carries this job's tag; what the
    // member's stack holds (role, profile, an instance terraform recorded) is destroyed.
    for (const instance of await fleet.cloud.listFleetInstances()) {
      if (instance.tags[JOB_TAG] !== end.jobId) continue;
      await fleet.cloud.terminateInstance(instance.instanceId);
      end.output(`undo: terminated ${instance.instanceId}, launched by this job`);
      undone.push(`terminated ${instance.instanceId}`);
    }
    const { owner } = saved.plan as { owner: LockOwner };
    const ctx = { onLine: (line: string) => end.output(line), owner };
    const destroy = await fleet.deployer.planInstance(name, { destroy: true, jobId: end.jobId }, ctx);
    if (destroy.resources.length > 0) {
      await fleet.deployer.applyInstance(name, { destroy: true, expected: destroy, jobId: end.jobId }, ctx);
      undone.push(`destroyed ${formatSummary(destroy)}`);
    }
  }
  if (has('checks')) {
    // The name was free at the checks and the member's lock keeps other spawns of it out: a
    // host key or bundle under it is this job's. The registry entry goes only if it has our key.
    const key = saved['agent-key'] as { publicKeyPem: string } | undefined;
    if (key !== undefined) {
      await fleet.registryStore.update(
        (registry) => {
          if (registry[name]?.agentPublicKey === key.publicKeyPem) delete registry[name];
          return registry;
        },
        { message: `fleet: undo spawn ${name} — job ${end.jobId} ${end.how} at ${end.step}` },
      );
    }
    await fleet.cloud.deleteSecret(agentKeySecret(name));
    await fleet.cloud.deletePrefix(fleet.bucket, `bootstrap/${name}/`);
  }
  // Nothing was created in the cloud: the spawn-rate slot is given back.
  if (!has('plan')) await deps.redis.zrem(keys.spawnRate, end.jobId);
  // A role or profile made by an apply killed before terraform saved them is in no state a
  // destroy could read (terraform ignores import blocks in a destroy): said, not hidden. A
  // new spawn of the name imports them (fence.ts).
  const iam = has('plan')
    ? [
        (await fleet.cloud.roleExists(name)) ? `the IAM role ${name}` : undefined,
        (await fleet.cloud.instanceProfileExists(name)) ? `the instance profile ${name}` : undefined,
      ].filter((x) => x !== undefined)
    : [];
  const done = undone.length > 0 ? `Undone: ${undone.join(', ')}. ` : '';
  const left =
    iam.length === 0
      ? `${done}Nothing was left behind`
      : `${done}Left: ${iam.join(' and ')} (unused; a new spawn of ${name} adopts them)`;
  return {
    left,
    next: `run ${again} again`,
    // A job that ended in its checks made nothing to undo.
    undone: has('checks') ? 'undone: no registry entry, host key or bundle left' : undefined,
  };
}

class Spawn extends LifecycleJob<SpawnData> {
  private readonly waits: SpawnWaits;
  private readonly tokenSecret: string;
  private readonly keySecret: string;

  constructor(
    ctx: JobContext<SpawnData>,
    private readonly redis: Redis,
    memory: MemoryStore,
    private readonly fleet: FleetDeps,
    private readonly instanceTypes: readonly string[],
    audit: AuditTrail | undefined,
  ) {
    super(ctx, 'spawn', memory, fleet.waits?.pollMs ?? defaultSpawnWaits.pollMs, audit);
    this.waits = { ...defaultSpawnWaits, ...fleet.waits };
    this.tokenSecret = discordTokenSecret(this.name);
    this.keySecret = agentKeySecret(this.name);
  }

  async run(): Promise<{ summary: string; instanceId: string; ami: string; privateIp: string | null }> {
    const { name, fleet } = this;
    try {
      const chosen = await this.step('checks', () => this.check());
      const key = await this.step('agent-key', () => this.ensureAgentKey());
      const entry: RegistryEntry = {
        host: name,
        instanceType: chosen.instanceType,
        bootstrapPrefix: `bootstrap/${name}`,
        discordTokenSecret: this.tokenSecret,
        ami: chosen.ami,
        agentPublicKey: key.publicKeyPem,
      };
      await this.step('registry', () => this.addToRegistry(entry));
      await this.step('bundle', () => this.uploadBundle(entry));
      const planned = await this.step('plan', () => this.planCreate());
      const applied = await this.step('apply', () => this.apply(planned));
      const instanceId = applied.instanceId;
      const running = await this.waitFor(
        'running',
        async () => {
          const instance = await fleet.cloud.describeInstance(instanceId);
          if (instance.state === 'running') return { privateIp: instance.privateIp };
          if (instance.state !== 'pending') throw new UnrecoverableError(`${instanceId} is ${instance.state}`);
          return undefined;
        },
        this.waits.runningTimeoutMs,
      );
      await this.waitFor(
        'ssm-online',
        async () => ((await fleet.cloud.pingStatus([instanceId])).get(instanceId) === 'Online' ? true : undefined),
        this.waits.onlineTimeoutMs,
      );
      const heartbeat = fleet.awaitHeartbeat !== false;
      // The host's own worker, not a heartbeat left by an earlier host of that name.
      if (heartbeat) {
        await this.waitFor(
          'heartbeat',
          async () => {
            const beat = (await readHeartbeats(this.redis, [name], publicHalf(this.ctx.signer.key))).get(name);
            return beat?.instanceId === instanceId ? { at: beat.at } : undefined;
          },
          this.waits.heartbeatTimeoutMs,
        );
      }
      const privateIp = running.privateIp ?? applied.privateIp;
      const seconds = Math.round((Date.now() - chosen.startedAt) / 1000);
      const online = heartbeat ? 'online' : 'online (SSM agent; its worker’s heartbeat not awaited)';
      const summary = `${name} ${online}: ${instanceId}, ${chosen.ami}, ${privateIp ?? 'no private IP'}, in ${seconds}s`;
      await this.step('record', () =>
        this.record(`${instanceId}, ${chosen.ami}, ${chosen.instanceType}`, `online: ${summary}`),
      );
      return { summary, instanceId, ami: chosen.ami, privateIp };
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      throw this.failed(err);
    }
  }

  // ── the steps ───────────────────────────────────────────────────────────────────────

  private async check(): Promise<Chosen> {
    const { name, fleet } = this;
    // The schema checked an asked type; the configured default is checked here, first.
    const instanceType = this.ctx.data.instanceType ?? fleet.defaultInstanceType;
    if (!this.instanceTypes.includes(instanceType)) {
      throw new RefusedError(
        `refused: instance type ${instanceType} is not allowed (CLAWDINATOR_INSTANCE_TYPES: ${this.instanceTypes.join(', ')})`,
      );
    }
    // The registry must take our commit (permission, branch protection) before we make a key.
    await fleet.registryStore.preflight?.();
    const { registry } = await fleet.registryStore.read();
    if (registry[name] !== undefined) throw new RefusedError(`refused: ${name} is already in the registry`);
    // The new entry's host is its name: the flake keeps one configuration per host name.
    const sharing = Object.entries(registry).find(([, entry]) => entry.host === name);
    if (sharing !== undefined) {
      throw new RefusedError(`refused: the host name ${name} is already used by ${sharing[0]} in the registry`);
    }
    this.checkCap(registry);
    const live = (await fleet.cloud.listFleetInstances()).find((i) => i.name === name);
    if (live !== undefined) {
      throw new RefusedError(`refused: an instance named ${name} is already ${live.state} (${live.instanceId})`);
    }
    if (!(await fleet.cloud.secretExists(this.tokenSecret))) {
      throw new RefusedError(
        `refused: the Discord token secret ${this.tokenSecret} does not exist: create it before spawning ${name}`,
      );
    }
    const ami = await this.chooseAmi();
    const charged = await this.redis.eval(
      CHARGE_SPAWN,
      1,
      keys.spawnRate,
      Date.now(),
      fleet.spawnsPerHour,
      this.ctx.jobId,
    );
    if (charged !== 1) {
      throw new RefusedError(`refused: spawn rate limit: ${fleet.spawnsPerHour} spawns per hour, try again later`);
    }
    await this.ctx.progress(`${name}: ${ami.imageId} (${ami.name}), ${instanceType}`);
    return { ami: ami.imageId, instanceType, startedAt: Date.now() };
  }

  private checkCap(registry: FleetRegistry): void {
    const size = Object.keys(registry).length;
    if (size >= this.fleet.fleetMaxSize) {
      throw new RefusedError(
        `refused: the fleet is at its cap of ${this.fleet.fleetMaxSize} members (${size} in the registry): retire one first`,
      );
    }
  }

  private async chooseAmi(): Promise<AmiInfo> {
    const { cloud } = this.fleet;
    const asked = this.ctx.data.ami;
    if (asked === undefined) {
      const latest = await cloud.findLatestAmi();
      if (latest === null) throw new RefusedError('refused: no available AMI of ours: run /rebuild-ami first');
      return latest;
    }
    let image: AmiInfo;
    try {
      image = await cloud.describeImage(asked);
    } catch (err) {
      if (err instanceof CloudError && err.kind === 'not-found') {
        throw new RefusedError(`refused: AMI ${asked} does not exist`);
      }
      throw err;
    }
    if (image.tags[AMI_TAG.key] !== AMI_TAG.value) {
      throw new RefusedError(`refused: AMI ${asked} is not one of ours (no ${AMI_TAG.key}=${AMI_TAG.value} tag)`);
    }
    if (image.state !== 'available') throw new RefusedError(`refused: AMI ${asked} is ${image.state}, not available`);
    return image;
  }

  /**
   * A key made again on a retry would differ, and Secrets Manager refuses a second value
   * under the same client token: an earlier attempt's key is looked up and kept instead.
   */
  /**
   * A new key pair each time the step runs: the private key is stored as the host's secret
   * (overwriting what an attempt that died before saving this step stored), the public key
   * goes on to the registry entry. The deployer never reads the private key back — its policy
   * has no GetSecretValue, so a stolen deployer session cannot sign as any host — and nothing
   * else used the earlier attempt's key yet, since the registry step comes after this one.
   * Each run has its own client token: a token reused with another value is refused.
   */
  private async ensureAgentKey(): Promise<{ publicKeyPem: string }> {
    const pair = generateSigningKeyPair();
    await this.fleet.cloud.putSecret(this.keySecret, pair.privateKeyPem, {
      clientToken: `${this.ctx.jobId}-agent-key-${randomUUID()}`,
    });
    return { publicKeyPem: pair.publicKeyPem };
  }

  private async addToRegistry(entry: RegistryEntry): Promise<null> {
    const { name } = this;
    const message = `fleet: spawn ${name} — requested by ${describePrincipal(this.ctx.principal)} via ${via('spawn', this.ctx.principal)}`;
    // Re-applied on a concurrent change: the checks are made again against what is there now.
    await this.fleet.registryStore.update(
      (registry) => {
        const present = registry[name];
        if (present !== undefined) {
          if (present.agentPublicKey === entry.agentPublicKey) return registry;
          throw new RefusedError(`refused: ${name} is already in the registry`);
        }
        this.checkCap(registry);
        return { ...registry, [name]: entry };
      },
      { message },
    );
    return null;
  }

  private async uploadBundle(entry: RegistryEntry): Promise<{ prefix: string; uploaded: number; unchanged: number }> {
    const { cloud, bucket, region, efsId, redisUrl, flake, agentKeys } = this.fleet;
    // Only what changed goes up again, so a retried step is cheap and changes nothing.
    const result = await uploadBundle(cloud, {
      name: this.name,
      host: entry.host,
      bootstrapPrefix: entry.bootstrapPrefix,
      bucket,
      region,
      efsId: efsId ?? null,
      redisUrl: redisUrl ?? null,
      flake: flake ?? null,
      secrets: { discordToken: this.tokenSecret, agentKey: this.keySecret },
      agentKeys,
    });
    return { prefix: result.prefix, uploaded: result.uploaded.length, unchanged: result.unchanged.length };
  }

  private async planCreate(): Promise<{ summary: PlanSummary; owner: LockOwner }> {
    // Saved with the plan: a resumed apply releases a state lock left by this job's dead run.
    const owner = lockOwner();
    const summary = await refusedIsFinal(() =>
      this.fleet.deployer.planInstance(this.name, { jobId: this.ctx.jobId }, { ...this.runCtx, owner }),
    );
    // Creates only; an import adopts the member's role or profile an earlier, killed apply made.
    if (
      summary.resources.length === 0 ||
      summary.resources.some((r) => r.action !== 'create' && r.action !== 'import')
    ) {
      throw new UnrecoverableError(`plan for ${this.name} is not create-only: not applied (${formatSummary(summary)})`);
    }
    await this.ctx.progress(`plan: ${formatSummary(summary)}`);
    return { summary, owner };
  }

  private async apply(planned: { summary: PlanSummary; owner: LockOwner }) {
    const outputs = await refusedIsFinal(() =>
      this.fleet.deployer.applyInstance(
        this.name,
        { expected: planned.summary, jobId: this.ctx.jobId },
        { ...this.runCtx, owner: planned.owner },
      ),
    );
    const { instanceId } = outputs;
    if (instanceId === null) throw new OperationError(`apply of ${this.name} made no instance`);
    await this.ctx.progress(`${this.name}: ${instanceId} launched`);
    return { instanceId, privateIp: outputs.privateIp };
  }
}
