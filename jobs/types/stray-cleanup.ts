// The stray-cleanup job: ends what the health sweep reports as a stray.
//   an instance id   an instance tagged as ours (app=clawdinator) that the registry does not
//                    know — what a spawn that died after the launch can leave: terminated
//   a member name    a registry member EC2 has no instance of: retired — its stack destroyed
//                    (role and profile; the instance is gone already), its entry, host key
//                    and bootstrap bundle removed
// Anything that is not a stray is refused before anything changes: an instance a registry
// member owns (retire or replace that member), a member whose instance or worker is alive.
// Operators run it (`clawdinator fleet cleanup <target> --yes`); Discord users by the
// policy of /retire, as it destroys the same things.
//
// Steps, each idempotent: checks; for an instance `terminate` and the wait `terminated`;
// for a member `plan`, `apply` (the destroy), `registry`, `cleanup`; then `record` (ops.md
// and the audit, best-effort).
import { UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { RefusedError } from '../../lib/errors.js';
import type { MemoryStore } from '../../memory/store.js';
import { AuditTrail } from '../audit.js';
import { describePrincipal } from '../engine/envelope.js';
import { readHeartbeats } from '../engine/heartbeat.js';
import type { JobContext, JobEnd, JobType } from '../engine/job-type.js';
import { INSTANCE_ID, strayTargetSchema } from '../engine/stray-offer.js';
import { publicHalf } from '../signing.js';
import { lockOwner } from '../terraform/lock.js';
import { formatSummary } from '../terraform/summary.js';
import { type LifecycleRun, lifecycleFinalize, recordLifecycle, refusedIsFinal, via } from './lifecycle.js';
import { agentKeySecret, defaultSpawnWaits, type FleetDeps } from './spawn.js';

export const STRAY_CLEANUP = 'stray-cleanup';

const dataSchema = z.object({ target: strayTargetSchema }).strict();
type CleanupData = z.output<typeof dataSchema>;

const INSTANCE_STEPS = ['checks', 'terminate', 'terminated', 'record'];
const MEMBER_STEPS = ['checks', 'plan', 'apply', 'registry', 'cleanup', 'record'];

/** What a clean-up that did not succeed leaves, from its saved steps. */
function cleanupLeft(target: string, steps: Record<string, unknown>): string {
  const has = (step: string) => Object.hasOwn(steps, step);
  if (INSTANCE_ID.test(target))
    return has('terminate') ? `${target} may still be shutting down` : `${target} still runs`;
  if (!has('plan')) return 'Nothing was changed';
  if (!has('registry')) return `${target}'s stack may be partly destroyed; its registry entry is left`;
  return `${target}'s registry entry is removed; its bootstrap bundle or host key may be left`;
}

/** EC2 takes a minute or two to shut a host down. */
const TERMINATED_TIMEOUT_MS = 10 * 60_000;

export interface StrayCleanupDeps {
  redis: Redis;
  memory?: MemoryStore;
  fleet?: FleetDeps;
  /** Where the outcome is audited (jobs/audit.ts); default: the journal and the memory copy. */
  audit?: AuditTrail;
  /** Where a record that could not be written is reported. */
  opsChannelId?: string;
}

export function strayCleanupJob(deps: StrayCleanupDeps): JobType<typeof dataSchema> {
  return {
    name: STRAY_CLEANUP,
    version: 1,
    schema: dataSchema,
    permission: 'retire',
    // One operation per member (or per stray instance) at a time.
    instanceOf: (d) => d.target,
    // It terminates or destroys: a retry is confirmed as a new request would be.
    destructive: true,
    attempts: 3,
    steps: (d) => (INSTANCE_ID.test(d.target) ? INSTANCE_STEPS : MEMBER_STEPS),
    // Nothing to take back: what it did is what was asked (an instance terminated, a stack
    // destroyed). Its end says how far it got and how to finish (the same command again).
    finalize: (end) =>
      lifecycleFinalize('cleanup', deps, async (e: JobEnd<{ name: string }>) => ({
        left: cleanupLeft(e.data.name, e.steps),
        next: `run \`clawdinator fleet cleanup ${e.data.name} --yes\` again: it goes on from what is there`,
      }))({ ...end, data: { name: end.data.target } }),
    async run(ctx) {
      const { fleet, memory } = deps;
      if (fleet === undefined || memory === undefined) {
        throw new UnrecoverableError('stray-cleanup: this worker has no cloud, deployer, registry store or memory');
      }
      const { target } = ctx.data;
      const summary = INSTANCE_ID.test(target)
        ? await terminateStray(ctx, fleet, target)
        : await retireGone(ctx, deps, fleet, target);
      await ctx.steps.run('record', () => {
        const run: LifecycleRun = { jobId: ctx.jobId, principal: ctx.principal, action: 'cleanup', name: target };
        const audit = deps.audit ?? new AuditTrail({ log: ctx.log, memory });
        return recordLifecycle(memory, audit, run, summary, `cleaned up: ${summary}`, {
          redis: deps.redis,
          signer: ctx.signer,
          opsChannelId: deps.opsChannelId,
          log: ctx.log,
        });
      });
      return { summary };
    },
  };
}

async function terminateStray(ctx: JobContext<CleanupData>, fleet: FleetDeps, id: string): Promise<string> {
  const found = await ctx.steps.run('checks', async () => {
    const instance = (await fleet.cloud.listFleetInstances()).find((i) => i.instanceId === id);
    if (instance === undefined)
      throw new RefusedError(`refused: ${id} is not an instance tagged as ours (app=clawdinator)`);
    const { registry } = await fleet.registryStore.read();
    if (instance.name !== null && instance.name in registry) {
      throw new RefusedError(
        `refused: ${id} is ${instance.name}'s instance, in the registry: retire or replace ${instance.name} instead`,
      );
    }
    return { name: instance.name, state: instance.state };
  });
  if (found.state !== 'terminated') {
    await ctx.steps.run('terminate', async () => {
      await fleet.cloud.terminateInstance(id);
      await ctx.progress(`${id}: terminating`);
      return null;
    });
  }
  await ctx.steps.waitFor(
    'terminated',
    async () => ((await fleet.cloud.describeInstance(id)).state === 'terminated' ? true : undefined),
    {
      pollMs: fleet.waits?.pollMs ?? defaultSpawnWaits.pollMs,
      timeoutMs: TERMINATED_TIMEOUT_MS,
      timeoutMessage: `${id} not terminated after ${TERMINATED_TIMEOUT_MS / 60_000} min`,
    },
  );
  return `${id} (${found.name ?? 'no Name tag'}) terminated: it was not in the registry`;
}

async function retireGone(
  ctx: JobContext<CleanupData>,
  deps: StrayCleanupDeps,
  fleet: FleetDeps,
  name: string,
): Promise<string> {
  // Terraform's lines go to the job's log in Redis (`jobs show`) and the worker's log.
  const runCtx = {
    onLine: (line: string) => {
      ctx.output?.(line);
      ctx.log.info({ stack: name }, line);
    },
  };
  const { hasStack } = await ctx.steps.run('checks', async () => {
    await fleet.registryStore.preflight?.();
    const entry = (await fleet.registryStore.read()).registry[name];
    if (entry === undefined) throw new RefusedError(`refused: ${name} is not in the registry`);
    const live = (await fleet.cloud.listFleetInstances()).find(
      (i) => i.name === name && i.state !== 'terminated' && i.state !== 'shutting-down',
    );
    if (live !== undefined) {
      throw new RefusedError(
        `refused: ${name} has an instance (${live.instanceId}, ${live.state}): it is not gone; use retire`,
      );
    }
    // Verified as every reader does: a forged heartbeat neither keeps nor frees a member.
    if ((await readHeartbeats(deps.redis, [name], publicHalf(ctx.signer.key))).get(name) != null) {
      throw new RefusedError(`refused: ${name} has a live worker heartbeat: it is not gone; use retire`);
    }
    // Only an entry with an AMI has a stack (the synth makes none without one).
    return { hasStack: entry.ami !== undefined };
  });
  if (hasStack) {
    const planned = await ctx.steps.run('plan', async () => {
      const owner = lockOwner();
      const summary = await refusedIsFinal(() =>
        fleet.deployer.planInstance(name, { destroy: true, jobId: ctx.jobId }, { ...runCtx, owner }),
      );
      if (summary.resources.some((r) => r.action !== 'delete')) {
        throw new UnrecoverableError(`plan for ${name} is not destroy-only: not applied (${formatSummary(summary)})`);
      }
      return { summary, owner };
    });
    await ctx.steps.run('apply', async () => {
      await refusedIsFinal(() =>
        fleet.deployer.applyInstance(
          name,
          { destroy: true, expected: planned.summary, jobId: ctx.jobId },
          { ...runCtx, owner: planned.owner },
        ),
      );
      return null;
    });
  }
  await ctx.steps.run('registry', async () => {
    const message = `fleet: retire ${name} (no instance) — requested by ${describePrincipal(ctx.principal)} via ${via('cleanup', ctx.principal)}`;
    await fleet.registryStore.update(
      (registry) => {
        delete registry[name];
        return registry;
      },
      { message },
    );
    return null;
  });
  await ctx.steps.run('cleanup', async () => {
    await fleet.cloud.deletePrefix(fleet.bucket, `bootstrap/${name}/`);
    await fleet.cloud.deleteSecret(agentKeySecret(name));
    return null;
  });
  return `${name} retired from the registry: it had no instance`;
}
