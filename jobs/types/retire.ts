// The retire job: a fleet member's host destroyed and every trace of it removed.
//
// Everything that can refuse runs first, before anything is destroyed: a name that is not
// in the registry, and a retire that would leave the fleet without a healthy host running a
// worker (another registry member whose heartbeat is alive). A retire asked by an agent
// then waits for a human's answer in the ops channel (lifecycle.ts: humanConfirmation) and
// the checks run again after it. The job is run by a peer's worker, not by the retired
// host's own, whenever a peer is alive (avoidOwnHost).
//
// Then, as resumable steps, each one idempotent by itself:
//   plan        the destroy of the member's own stack; it must only delete
//   apply       exactly that plan (the registry entry is still there: the stack is
//               synthesized from it)
//   terminated  a wait that re-delays the job instead of holding a worker
//   registry    the entry removed (absent already: done)
//   cleanup     the bootstrap prefix, the host's signing key and its host queue's schedules
//   record      a line in ops.md and in the audit
//
// A destroy cannot be taken back, so nothing is undone when a retire does not succeed: the
// engine's finalizer (whatever ended it) releases its reservation of the member, so a new
// retire of the same name runs at once and goes on from what is there.

import { DelayedError, Queue, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';
import { RefusedError } from '../../lib/errors.js';
import type { MemoryStore } from '../../memory/store.js';
import type { AuditTrail } from '../audit.js';
import { describePrincipal } from '../engine/envelope.js';
import { readHeartbeatRecords } from '../engine/heartbeat.js';
import type { JobContext, JobEnd, JobType } from '../engine/job-type.js';
import { hostQueue, keys } from '../engine/keys.js';
import { removeSchedules } from '../engine/schedulers.js';
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
import { agentKeySecret, defaultSpawnWaits, type FleetDeps } from './spawn.js';

export const RETIRE = 'retire';

const dataSchema = z.object({ name: instanceName }).strict();
type RetireData = z.output<typeof dataSchema>;

/** From the apply to the instance terminated: EC2 takes a minute or two to shut a host down. */
const TERMINATED_TIMEOUT_MS = 10 * 60_000;
/** How long a retire's reservation outlives a job that never ended (a lost worker and job). */
const RETIRING_TTL_MS = 2 * 60 * 60_000;

// The healthy-host check and the reservation of this member in one step, so two retires of
// different members at once cannot each count the other as the host that stays: the first
// marks its member as retiring, the second no longer counts it.
//
// A Lua script cannot verify an Ed25519 signature, so the heartbeats are verified in Node
// first (readHeartbeatRecords) and the script is given the values that verified: a host
// counts only if its heartbeat is, inside the script, still exactly the value verified. The
// check and the reservation stay one atomic step over what they decide on; a heartbeat
// changed in between (rewritten by its worker, which happens every TTL/3) only makes the host
// not count this time — a refusal to retire, never a retire that leaves no healthy host.
//
// KEYS[1] is this member's mark; then, for the n other members whose heartbeat verified,
// their marks (KEYS[2..n+1]) and their heartbeat keys (KEYS[n+2..2n+1]); ARGV[1] the job id,
// ARGV[2] the mark's TTL, ARGV[3..n+2] the heartbeat values that verified. 1: reserved.
const RESERVE_RETIRE = `local mine = redis.call('GET', KEYS[1])
if mine and mine ~= ARGV[1] then return -1 end
local n = (#KEYS - 1) / 2
for i = 1, n do
  local other = redis.call('GET', KEYS[1 + i])
  if not other and redis.call('GET', KEYS[1 + n + i]) == ARGV[2 + i] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
  end
end
if mine then redis.call('DEL', KEYS[1]) end
return 0`;
const RELEASE_RETIRE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export interface RetireDeps {
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

export function retireJob(deps: RetireDeps): JobType<typeof dataSchema> {
  return {
    name: RETIRE,
    version: 1,
    schema: dataSchema,
    permission: 'retire',
    agentAllowed: true,
    instanceOf: (d) => d.name,
    avoidOwnHost: true,
    destructive: true,
    attempts: 3,
    steps: (_data, principal) => lifecycleSteps(principal, RETIRE_STEPS),
    finalize: lifecycleFinalize('retire', deps, (end) => undoRetire(end, deps.redis)),
    async run(ctx) {
      const { fleet, memory } = deps;
      // The gateway and `clawdinator jobs` register every type for its schema only.
      if (fleet === undefined || memory === undefined) {
        throw new UnrecoverableError('retire: this worker has no cloud, deployer, registry store or memory configured');
      }
      return new Retire(ctx, deps, memory, fleet).reportRecordsTo(deps).run();
    },
  };
}

const RETIRE_STEPS = ['checks', 'plan', 'apply', 'terminated', 'registry', 'cleanup', 'record'];

/** A retire that did not succeed: its reservation of the member ends, and it says what is left. */
export async function undoRetire(end: JobEnd<RetireData>, redis: Redis): Promise<LifecycleUndo> {
  const { name } = end.data;
  await redis.eval(RELEASE_RETIRE, 1, keys.retiring(name), end.jobId);
  const has = (step: string) => Object.hasOwn(end.steps, step);
  const left = !has('plan')
    ? 'Nothing was changed'
    : !has('apply')
      ? `${name}'s stack may be partly destroyed`
      : `${name}'s host is destroyed; its registry entry, bundle or host key may be left`;
  return { left, next: `run ${commandFor('retire', name, end.principal)} again: it goes on from what is there` };
}

class Retire extends LifecycleJob<RetireData> {
  constructor(
    ctx: JobContext<RetireData>,
    private readonly deps: RetireDeps,
    memory: MemoryStore,
    private readonly fleet: FleetDeps,
  ) {
    super(ctx, 'retire', memory, fleet.waits?.pollMs ?? defaultSpawnWaits.pollMs, deps.audit);
  }

  async run(): Promise<{ summary: string; instanceId: string | null }> {
    const { name, fleet } = this;
    try {
      if (this.ctx.principal.kind === 'agent') {
        await this.confirmed('retire', { precheck: () => this.check() }, this.deps);
      }
      const { instanceId } = await this.step('checks', () => this.check());
      const planned = await this.step('plan', () => this.planDestroy());
      await this.step('apply', () => this.apply(planned));
      await this.waitFor(
        'terminated',
        async () => {
          if (instanceId === null) return true;
          const { state } = await fleet.cloud.describeInstance(instanceId);
          return state === 'terminated' ? true : undefined;
        },
        TERMINATED_TIMEOUT_MS,
        `${name}: ${instanceId} not terminated after ${TERMINATED_TIMEOUT_MS / 60_000} min`,
      );
      await this.step('registry', () => this.removeFromRegistry());
      await this.step('cleanup', () => this.cleanup());
      const what = instanceId === null ? 'no instance was left' : `${instanceId} terminated`;
      const summary = `${name} retired: ${what}`;
      await this.step('record', () => this.record(what, `retired: ${summary}`));
      await this.release();
      return { summary, instanceId };
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      throw this.failed(err);
    }
  }

  // ── the steps ───────────────────────────────────────────────────────────────────────

  private async check(): Promise<{ instanceId: string | null }> {
    const { name, fleet } = this;
    // The registry must take our commit (permission, branch protection) before anything changes.
    await fleet.registryStore.preflight?.();
    const { registry } = await fleet.registryStore.read();
    if (registry[name] === undefined) throw new RefusedError(`refused: ${name} is not in the registry`);
    const others = Object.keys(registry).filter((host) => host !== name);
    // A heartbeat exists only while its worker writes it (it expires with its TTL, and a
    // clean shutdown deletes it), signed with the workers' key: one that verifies is a host
    // running a worker.
    const heartbeats = await readHeartbeatRecords(this.deps.redis, others, publicHalf(this.ctx.signer.key));
    const alive = others.flatMap((host) => {
      const record = heartbeats.get(host);
      return record ? [{ host, raw: record.raw }] : [];
    });
    const reserved = await this.deps.redis.eval(
      RESERVE_RETIRE,
      1 + 2 * alive.length,
      keys.retiring(name),
      ...alive.map(({ host }) => keys.retiring(host)),
      ...alive.map(({ host }) => keys.heartbeat(host)),
      this.ctx.jobId,
      RETIRING_TTL_MS,
      ...alive.map(({ raw }) => raw),
    );
    if (reserved === -1) throw new RefusedError(`refused: ${name} is already being retired by another job`);
    if (reserved !== 1) {
      throw new RefusedError(
        `refused: retiring ${name} would leave the fleet without a healthy host running a worker: spawn another first`,
      );
    }
    const live = (await fleet.cloud.listFleetInstances()).find((i) => i.name === name);
    await this.ctx.progress(`${name}: ${live === undefined ? 'no instance running' : live.instanceId}`);
    return { instanceId: live?.instanceId ?? null };
  }

  private async planDestroy(): Promise<{ summary: PlanSummary; owner: LockOwner }> {
    // Saved with the plan: a resumed apply releases a state lock left by this job's dead run.
    const owner = lockOwner();
    const summary = await refusedIsFinal(() =>
      this.fleet.deployer.planInstance(this.name, { destroy: true, jobId: this.ctx.jobId }, { ...this.runCtx, owner }),
    );
    // The member's own stack, and only deletes: anything else is not a retire.
    if (summary.resources.some((r) => r.action !== 'delete')) {
      throw new UnrecoverableError(
        `plan for ${this.name} is not destroy-only: not applied (${formatSummary(summary)})`,
      );
    }
    await this.ctx.progress(`plan: ${formatSummary(summary)}`);
    return { summary, owner };
  }

  private async apply(planned: { summary: PlanSummary; owner: LockOwner }): Promise<null> {
    await refusedIsFinal(() =>
      this.fleet.deployer.applyInstance(
        this.name,
        { destroy: true, expected: planned.summary, jobId: this.ctx.jobId },
        { ...this.runCtx, owner: planned.owner },
      ),
    );
    await this.ctx.progress(`${this.name}: destroy applied`);
    return null;
  }

  private async removeFromRegistry(): Promise<null> {
    const { name } = this;
    const message = `fleet: retire ${name} — requested by ${describePrincipal(this.ctx.principal)} via ${via('retire', this.ctx.principal)}`;
    await this.fleet.registryStore.update(
      (registry) => {
        delete registry[name];
        return registry;
      },
      { message },
    );
    return null;
  }

  private async cleanup(): Promise<{ objects: number }> {
    const { cloud, bucket } = this.fleet;
    const objects = await cloud.deletePrefix(bucket, `bootstrap/${this.name}/`);
    await cloud.deleteSecret(agentKeySecret(this.name));
    // Its token refresh (and any other schedule of its own queue) goes with it.
    const queue = new Queue(hostQueue(this.name), { connection: this.deps.redis });
    try {
      await removeSchedules(queue);
    } finally {
      await queue.close();
    }
    return { objects };
  }

  /** Ends this job's reservation of the member (see RESERVE_RETIRE). */
  private async release(): Promise<void> {
    await this.deps.redis.eval(RELEASE_RETIRE, 1, keys.retiring(this.name), this.ctx.jobId);
  }
}
