// The replace job: a fleet member's host replaced by a new one, from the registry's AMI or
// from a given one (which the registry then records).
//
// Everything that can refuse runs first, before anything changes: a name that is not in
// the registry or has no instance, and an AMI that does not exist, is not ours or is not
// available. A replace asked by an agent then waits for a human's answer in the ops channel
// (lifecycle.ts: humanConfirmation) and the checks run again after it. The job is run by a
// peer's worker, not by the replaced host's own, whenever a peer is alive (avoidOwnHost).
//
// Then, as resumable steps, each one idempotent by itself:
//   checks      also records the old instance's id
//   registry    the given AMI set in the entry (only when one was given)
//   plan        the member's stack with its instance replaced; it must destroy nothing else
//   apply       exactly that plan
//   running, ssm-online, heartbeat   waits for the NEW instance (same Name tag, another id)
//   record      a line in ops.md and in the audit
//
// Nothing is undone when a replace does not succeed (after the apply the old host is gone):
// the engine's finalizer, whatever ended it, releases the member and says what is left; a
// new replace of the same name plans again from the registry.

import { DelayedError, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';
import { RefusedError } from '../../lib/errors.js';
import type { MemoryStore } from '../../memory/store.js';
import type { AuditTrail } from '../audit.js';
import { CloudError } from '../cloud/errors.js';
import { AMI_TAG, type AmiInfo } from '../cloud/types.js';
import { INSTANCE_ADDRESS } from '../deploy/types.js';
import { describePrincipal } from '../engine/envelope.js';
import { readHeartbeats } from '../engine/heartbeat.js';
import type { JobContext, JobEnd, JobType } from '../engine/job-type.js';
import { publicHalf } from '../signing.js';
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
import { defaultSpawnWaits, type FleetDeps, type SpawnWaits } from './spawn.js';

export const REPLACE = 'replace';

const dataSchema = z
  .object({
    name: instanceName,
    ami: z
      .string()
      .regex(/^ami-[0-9a-f]{8,17}$/)
      .optional(),
  })
  .strict();
export type ReplaceData = z.output<typeof dataSchema>;

const _MINUTE = 60_000;

export interface ReplaceDeps {
  redis: Redis;
  /** Where an agent's request asks for a human's confirmation. */
  opsChannelId?: string;
  /** How long that question stays open. */
  agentConfirmSeconds?: number;
  memory?: MemoryStore;
  /** Where the outcome is audited (jobs/audit.ts); default: the journal and the memory copy. */
  audit?: AuditTrail;
  fleet?: FleetDeps;
}

export function replaceJob(deps: ReplaceDeps): JobType<typeof dataSchema> {
  return {
    name: REPLACE,
    version: 1,
    schema: dataSchema,
    permission: 'replace',
    agentAllowed: true,
    instanceOf: (d) => d.name,
    avoidOwnHost: true,
    destructive: true,
    attempts: 3,
    steps: (data, principal) => lifecycleSteps(principal, replaceSteps(data.ami !== undefined)),
    finalize: lifecycleFinalize('replace', deps, async (end) => undoReplace(end)),
    async run(ctx) {
      const { fleet, memory } = deps;
      // The gateway and `clawdinator jobs` register every type for its schema only.
      if (fleet === undefined || memory === undefined) {
        throw new UnrecoverableError(
          'replace: this worker has no cloud, deployer, registry store or memory configured',
        );
      }
      return new Replace(ctx, deps, memory, fleet).reportRecordsTo(deps).run();
    },
  };
}

function replaceSteps(givenAmi: boolean): string[] {
  return ['checks', ...(givenAmi ? ['registry'] : []), 'plan', 'apply', 'running', 'ssm-online', 'heartbeat', 'record'];
}

/** Nothing to take back (the old host may be gone): what is left, and what to run. */
export function undoReplace(end: JobEnd<ReplaceData>): LifecycleUndo {
  const { name, ami } = end.data;
  const has = (step: string) => Object.hasOwn(end.steps, step);
  const recorded = has('registry') && ami !== undefined ? `; the registry now records ${ami} for ${name}` : '';
  const left = !has('plan')
    ? `Nothing was changed${recorded}`
    : !has('apply')
      ? `${name}'s old host may be replaced already${recorded}`
      : `${name}'s old host is gone and the new one did not come online${recorded}`;
  return {
    left,
    next: `run ${commandFor('replace', name, end.principal)} again, or check it with \`/status name:${name}\``,
  };
}

/** One replace; a rollout (rebuild-ami) runs it inline for each member, its steps scoped. */
export class Replace extends LifecycleJob<ReplaceData> {
  private readonly waits: SpawnWaits;

  constructor(
    ctx: JobContext<ReplaceData>,
    private readonly deps: ReplaceDeps,
    memory: MemoryStore,
    private readonly fleet: FleetDeps,
  ) {
    super(ctx, 'replace', memory, fleet.waits?.pollMs ?? defaultSpawnWaits.pollMs, deps.audit);
    this.waits = { ...defaultSpawnWaits, ...fleet.waits };
  }

  async run(): Promise<{ summary: string; oldInstanceId: string; instanceId: string; ami: string }> {
    const { name, fleet } = this;
    try {
      if (this.ctx.principal.kind === 'agent') {
        await this.confirmed(
          'replace',
          {
            detail: this.ctx.data.ami === undefined ? undefined : ` with ${this.ctx.data.ami}`,
            precheck: () => this.check(),
          },
          this.deps,
        );
      }
      const { oldInstanceId, ami } = await this.step('checks', () => this.check());
      if (this.ctx.data.ami !== undefined) await this.step('registry', () => this.setAmi(ami));
      const planned = await this.step('plan', () => this.planReplace());
      await this.step('apply', () => this.apply(planned));
      const { instanceId } = await this.waitFor(
        'running',
        async () => {
          const fresh = (await fleet.cloud.listFleetInstances()).find(
            (i) => i.name === name && i.instanceId !== oldInstanceId,
          );
          if (fresh === undefined || fresh.state === 'pending') return undefined;
          if (fresh.state !== 'running') throw new UnrecoverableError(`${fresh.instanceId} is ${fresh.state}`);
          return { instanceId: fresh.instanceId };
        },
        this.waits.runningTimeoutMs,
      );
      await this.waitFor(
        'ssm-online',
        async () => ((await fleet.cloud.pingStatus([instanceId])).get(instanceId) === 'Online' ? true : undefined),
        this.waits.onlineTimeoutMs,
      );
      // The new host's own worker, not the heartbeat the old host left behind.
      await this.waitFor(
        'heartbeat',
        async () => {
          const heartbeats = await readHeartbeats(this.deps.redis, [name], publicHalf(this.ctx.signer.key));
          const heartbeat = heartbeats.get(name);
          return heartbeat?.instanceId === instanceId ? { at: heartbeat.at } : undefined;
        },
        this.waits.heartbeatTimeoutMs,
      );
      const what = `${oldInstanceId} → ${instanceId} (${ami})`;
      const summary = `${name} replaced: ${what}`;
      await this.step('record', () => this.record(what, `replaced: ${summary}`));
      return { summary, oldInstanceId, instanceId, ami };
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      throw this.failed(err);
    }
  }

  // ── the steps ───────────────────────────────────────────────────────────────────────

  private async check(): Promise<{ oldInstanceId: string; ami: string }> {
    const { name, fleet } = this;
    // The registry must take our commit (permission, branch protection) before anything changes.
    await fleet.registryStore.preflight?.();
    const { registry } = await fleet.registryStore.read();
    const entry = registry[name];
    if (entry === undefined) throw new RefusedError(`refused: ${name} is not in the registry`);
    const asked = this.ctx.data.ami;
    if (asked !== undefined) await this.checkAmi(asked);
    const live = (await fleet.cloud.listFleetInstances()).find((i) => i.name === name && i.state !== 'terminated');
    if (live === undefined) {
      throw new RefusedError(`refused: no instance named ${name} exists to replace: retire it, then spawn it again`);
    }
    const ami = asked ?? entry.ami;
    if (ami === undefined) throw new RefusedError(`refused: ${name} has no AMI in the registry: give one`);
    await this.ctx.progress(`${name}: replacing ${live.instanceId} with ${ami}`);
    return { oldInstanceId: live.instanceId, ami };
  }

  private async checkAmi(asked: string): Promise<void> {
    let image: AmiInfo;
    try {
      image = await this.fleet.cloud.describeImage(asked);
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
  }

  private async setAmi(ami: string): Promise<null> {
    const { name } = this;
    const message = `fleet: replace ${name} with ${ami} — requested by ${describePrincipal(this.ctx.principal)} via ${via('replace', this.ctx.principal)}`;
    await this.fleet.registryStore.update(
      (registry) => {
        const entry = registry[name];
        if (entry === undefined) throw new RefusedError(`refused: ${name} is not in the registry`);
        if (entry.ami === ami) return registry;
        return { ...registry, [name]: { ...entry, ami } };
      },
      { message },
    );
    return null;
  }

  private async planReplace(): Promise<{ summary: PlanSummary; owner: LockOwner }> {
    // Saved with the plan: a resumed apply releases a state lock left by this job's dead run.
    const owner = lockOwner();
    const summary = await refusedIsFinal(() =>
      this.fleet.deployer.planInstance(this.name, { replace: true, jobId: this.ctx.jobId }, { ...this.runCtx, owner }),
    );
    // The member's instance replaced, and nothing else destroyed.
    const destroysOther = summary.resources.some(
      (r) => r.address !== INSTANCE_ADDRESS && (r.action === 'delete' || r.action === 'replace'),
    );
    const replaces = summary.resources.some((r) => r.address === INSTANCE_ADDRESS && r.action === 'replace');
    if (destroysOther || !replaces) {
      throw new UnrecoverableError(
        `plan for ${this.name} is not a replace of its instance only: not applied (${formatSummary(summary)})`,
      );
    }
    await this.ctx.progress(`plan: ${formatSummary(summary)}`);
    return { summary, owner };
  }

  private async apply(planned: { summary: PlanSummary; owner: LockOwner }): Promise<null> {
    const outputs = await refusedIsFinal(() =>
      this.fleet.deployer.applyInstance(
        this.name,
        { replace: true, expected: planned.summary, jobId: this.ctx.jobId },
        { ...this.runCtx, owner: planned.owner },
      ),
    );
    await this.ctx.progress(`${this.name}: ${outputs.instanceId ?? 'new instance'} launched`);
    return null;
  }
}
