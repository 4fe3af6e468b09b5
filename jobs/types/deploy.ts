// The fast lane: a revision of this project switched onto the fleet, host by host, canary
// first. `/deploy [rev] [target]`, `clawdinator fleet update`, and the scheduled self-update
// (CLAWDINATOR_SELF_UPDATE_CRON; off by default) which deploys the branch head when the fleet
// runs something else.
//
// Resumable steps (each idempotent by itself: a worker can die between an effect and its save):
//   plan                 rev → full commit sha (GitHub, as the project's App) before anything
//                        runs; the fleet-wide lock of deploys and image rollouts (a second
//                        deploy is refused "deploy of <sha> in progress (3/5 members)"); the
//                        members in canary order (registry `canary` flags, then by name; this
//                        worker's own host last)
//   <m>:runner           never deploy yourself: the switch of this worker's own host is left
//                        (re-delayed) to a peer's worker while one is alive; the peer continues
//                        the same job from its saved steps and never repeats a member
//   <m>:start            the member's instance; a read-only token for the flake stored as the
//                        member's own secret (never in job data); SSM `switch-start`: the host
//                        records the revision it runs, then starts the switch detached
//                        (systemd-run), since the switch may restart the SSM agent or the network
//   <m>:switch           re-delayed until the host's result file says the switch ended (SSM
//                        `switch-status`); the host checked its own health after the switch and
//                        rolled back to its previous generation by itself when that failed
//   <m>:token-removed    the token secret deleted
//   <m>:verify           re-delayed until the member's heartbeat (re-read by its worker from the
//                        build info at every beat) reports the sha, within a deadline
//   <m>:done             what the member runs now
// On a member's failure (<m>:failed saved with the step, the cause and the output's tail) it
// is rolled back to the revision it ran before and that is verified (<m>:rollback-…; what
// was done saved as <m>:rolled-back), then the job stops: the members after it are
// untouched. The report (saved as `report`) names the member, the step, what was rolled
// back, and the output's last lines (redacted on the host and here; all of the tail in the
// job's log, `jobs show`).
//   record               ops.md, the audit, the last deploy (for /status and the self-update)
//
// However the job ends without success (a member's failure, a refusal, its last attempt, a
// cancel, a stall, a removal), the engine's finalizer runs `finalizeDeploy` from the request
// and the saved steps alone: the fleet lock and the members' locks this job holds released,
// the flake tokens it may have left deleted, the last deploy recorded as failed, one line in
// ops.md and the audit, and the message: which members were switched, which one was rolled
// back (or may be mid-switch), which are untouched.
import { createHash } from 'node:crypto';
import { DelayedError, Queue, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { FleetRegistry } from '../../infra/registry.js';
import { instanceName } from '../../lib/config.js';
import { errorLine, OperationError, RefusedError } from '../../lib/errors.js';
import type { MemoryStore } from '../../memory/store.js';
import { AuditTrail } from '../audit.js';
import { CloudError } from '../cloud/errors.js';
import { readHeartbeats } from '../engine/heartbeat.js';
import type { FinalReport, JobContext, JobEnd, JobType } from '../engine/job-type.js';
import { FLEET_QUEUE, keys } from '../engine/keys.js';
import { publish } from '../engine/notify.js';
import { FLEET_ROLLOUT_LOCK, fleetOrder, releaseJobLock, takeJobLock } from '../engine/rollout.js';
import {
  type DeployWaits,
  defaultDeployWaits,
  deployTokenSecret,
  type FastLaneDeps,
  LAST_DEPLOY_KEY,
  parseLastDeploy,
  writeLastDeploy,
} from '../fastlane/deps.js';
import { isFullSha, revSchema } from '../github/revision.js';
import {
  describeInvocation,
  lastJson,
  outputTail,
  runHostAction,
  type SwitchResult,
  type SwitchStart,
  switchStartSchema,
  switchStatusSchema,
} from '../host/command.js';
import { publicHalf } from '../signing.js';
import { auditLifecycle, type LifecycleRun, recordLifecycle } from './lifecycle.js';

export const DEPLOY = 'deploy';
const DEPLOY_STEPS = ['plan'] as const;

const dataSchema = z
  .object({
    /** A sha, short sha, branch or tag; default the head of the project's branch. */
    rev: revSchema.optional(),
    /** Every member in canary order, or one. */
    target: z.union([z.literal('all'), instanceName]).default('all'),
  })
  .strict();
export type DeployData = z.output<typeof dataSchema>;

export interface DeployJobDeps {
  redis: Redis;
  registry: () => Promise<FleetRegistry>;
  /** What the deploy acts on; schema-only without it (the gateway, `clawdinator jobs`). */
  lane?: FastLaneDeps;
  memory?: MemoryStore;
  audit?: AuditTrail;
  /** Where the self-update posts what it did. */
  opsChannelId?: string;
}

interface Plan {
  sha: string;
  ref: string;
  members: string[];
  /** Set when there is nothing to do (a self-update with the fleet on the head already). */
  skip?: string;
}

interface MemberFailure {
  step: string;
  cause: string;
  /** The tail of the switch's output, redacted. */
  tail: string;
  /** The revision the member ran before; null when the switch never started. */
  previous: string | null;
  /** The host rolled itself back and is on `previous` again. */
  hostRolledBack: boolean;
}

/** A member's failure: it is rolled back and the deploy stops. Anything else is retried. */
class MemberFailed extends Error {
  constructor(readonly failure: Omit<MemberFailure, 'previous' | 'hostRolledBack'> & Partial<MemberFailure>) {
    super(failure.cause);
  }
}

export function deployJob(deps: DeployJobDeps): JobType<typeof dataSchema> {
  return {
    name: DEPLOY,
    version: 1,
    schema: dataSchema,
    permission: 'deploy',
    // The self-update (CLAWDINATOR_SELF_UPDATE_CRON): deploys the branch head to every member.
    scheduled: true,
    attempts: 3,
    // One member: that member's lock, taken when the request is queued.
    instanceOf: (data) => (data.target === 'all' ? undefined : data.target),
    // The members' steps are named after the plan (`<member>:<step>`): the finalizer finds
    // where a deploy ended from its saved steps (finalizeDeploy), not from this list.
    steps: () => DEPLOY_STEPS,
    finalize: (end) => finalizeDeploy(end, deps),
    async run(ctx) {
      const { lane } = deps;
      if (lane === undefined) throw new UnrecoverableError('deploy: this worker has no fast lane configured');
      const run = new Deploy(ctx, deps, lane);
      try {
        return await run.run();
      } finally {
        await run.close();
      }
    },
  };
}

class Deploy {
  private readonly waits: DeployWaits;
  private readonly trail: AuditTrail | undefined;
  private fleetQueue: Queue | undefined;
  private current = 'plan';
  /** The token minted by this run (never saved): redacted from whatever is shown. */
  private readonly secrets: string[] = [];

  constructor(
    private readonly ctx: JobContext<DeployData>,
    private readonly deps: DeployJobDeps,
    private readonly lane: FastLaneDeps,
  ) {
    this.waits = { ...defaultDeployWaits, ...lane.waits };
    this.trail = deps.audit ?? (deps.memory ? new AuditTrail({ log: ctx.log, memory: deps.memory }) : undefined);
  }

  async close(): Promise<void> {
    await this.fleetQueue?.close();
  }

  async run(): Promise<{ summary: string; sha?: string; deployed?: string[]; skipped?: string[] }> {
    const { ctx } = this;
    let plan: Plan;
    try {
      plan = await this.step('plan', () => this.plan());
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      throw this.failedBeforeMembers(err);
    }
    if (plan.skip !== undefined) return { summary: `nothing to do: ${plan.skip}` };
    const deployed: string[] = [];
    const skipped: string[] = [];
    for (const [index, member] of plan.members.entries()) {
      const outcome = await this.member(plan, member, index);
      (outcome === 'already' ? skipped : deployed).push(member);
    }
    await this.step('record', async () => {
      const what = `${short(plan.sha)} (${plan.ref}) on ${plan.members.join(', ')}`;
      await this.record(what, `deployed ${plan.sha}`);
      await writeLastDeploy(this.deps.redis, {
        sha: plan.sha,
        ok: true,
        at: new Date().toISOString(),
        jobId: ctx.jobId,
        target: ctx.data.target,
      });
      return null;
    });
    await releaseJobLock(this.deps.redis, FLEET_ROLLOUT_LOCK, ctx.jobId);
    const already = skipped.length > 0 ? ` (already on it: ${skipped.join(', ')})` : '';
    const summary =
      deployed.length > 0
        ? `deployed ${short(plan.sha)} (${plan.ref}) to ${deployed.join(', ')}${already}`
        : `nothing to switch: ${plan.members.join(', ')} already run ${short(plan.sha)} (${plan.ref})`;
    if (ctx.principal.kind === 'schedule') await this.post(`self-update: ${summary}`);
    return { summary, sha: plan.sha, deployed, skipped };
  }

  // ── plan ────────────────────────────────────────────────────────────────────────────

  private async plan(): Promise<Plan> {
    const { ctx, deps, lane } = this;
    const scheduled = ctx.principal.kind === 'schedule';
    const { sha, ref } = await lane.resolver.resolve(ctx.data.rev);
    const registry = await deps.registry();
    const names = Object.keys(registry);
    if (ctx.data.target !== 'all' && registry[ctx.data.target] === undefined) {
      throw new RefusedError(`refused: ${ctx.data.target} is not in the fleet registry`);
    }
    if (names.length === 0) throw new RefusedError('refused: the fleet registry has no member to deploy to');
    if (scheduled) {
      const skip = await this.selfUpdateSkip(sha, ref, names);
      if (skip !== undefined) return { sha, ref, members: [], skip };
    }
    const holder = await takeJobLock(deps.redis, [this.queue()], FLEET_ROLLOUT_LOCK, ctx.jobId);
    if (holder !== null) {
      const busy = await this.describeHolder(holder);
      if (scheduled) return { sha, ref, members: [], skip: `${busy}: the next slot tries again` };
      throw new RefusedError(`refused: ${busy}`);
    }
    const order = fleetOrder(registry, lane.hostName);
    const members = ctx.data.target === 'all' ? order : [ctx.data.target];
    await this.say(
      'plan',
      `${ref} → ${sha}: ${members.length === 1 ? members[0] : `${members.join(', ')}, canary ${members[0]}`}`,
    );
    return { sha, ref, members };
  }

  /** Why a self-update has nothing to do now, or undefined. */
  private async selfUpdateSkip(sha: string, ref: string, names: string[]): Promise<string | undefined> {
    const beats = await readHeartbeats(this.deps.redis, names, this.workersKey());
    if (names.every((n) => beats.get(n)?.revision === sha)) return `the fleet runs ${short(sha)} (${ref}) already`;
    const last = parseLastDeploy(await this.deps.redis.get(LAST_DEPLOY_KEY));
    if (last !== null && last.sha === sha && !last.ok) {
      return `the last deploy of ${short(sha)} failed (job ${last.jobId}): deploy a fix by hand`;
    }
    return undefined;
  }

  /** "deploy of <sha> in progress (3/5 members)", or what else holds the fleet. */
  private async describeHolder(holder: string): Promise<string> {
    const job = await this.queue().getJob(holder);
    if (job?.name === DEPLOY) {
      const steps = (job.data?.steps ?? {}) as Record<string, unknown>;
      const plan = steps.plan as Partial<Plan> | undefined;
      const members = Array.isArray(plan?.members) ? plan.members.filter((m) => typeof m === 'string') : [];
      const done = members.filter((m) => Object.hasOwn(steps, `${m}:done`)).length;
      const sha = typeof plan?.sha === 'string' ? short(plan.sha) : 'a revision';
      return `deploy of ${sha} in progress (${done}/${members.length} members): job ${holder}`;
    }
    if (job?.name === 'rebuild-ami') return `an image rollout is in progress: job ${holder}`;
    return `job ${holder} holds the fleet`;
  }

  // ── one member ──────────────────────────────────────────────────────────────────────

  /** The member switched and verified, or already on the sha; a failure is rolled back, then final. */
  private async member(plan: Plan, m: string, index: number): Promise<'deployed' | 'already'> {
    const { ctx } = this;
    const done = ctx.steps.results[`${m}:done`] as { already?: boolean } | undefined;
    if (done !== undefined) return done.already ? 'already' : 'deployed';
    let failure = ctx.steps.results[`${m}:failed`] as MemberFailure | undefined;
    if (failure === undefined) {
      try {
        return await this.forward(plan, m, index);
      } catch (err) {
        if (!(err instanceof MemberFailed)) throw err;
        const recorded: MemberFailure = { previous: null, hostRolledBack: false, ...err.failure };
        failure = await ctx.steps.run(`${m}:failed`, async () => recorded);
      }
    }
    const text = await this.rollback(plan, m, failure);
    const rolledBack = await ctx.steps.run(`${m}:rolled-back`, async () => ({ text }));
    throw await this.stop(plan, m, index, failure, rolledBack.text);
  }

  private async forward(plan: Plan, m: string, index: number): Promise<'deployed' | 'already'> {
    const { ctx } = this;
    const label = index === 0 && plan.members.length > 1 ? `canary ${m}` : m;
    const of = `(${index + 1}/${plan.members.length})`;
    await this.runner(m);
    const lock = keys.instanceLock(m);
    const holder = await takeJobLock(this.deps.redis, [this.queue()], lock, ctx.jobId);
    if (holder !== null) throw new MemberFailed({ step: 'start', cause: `${m} is busy with ${holder}`, tail: '' });
    const run = runId(ctx.jobId, 'up');
    const start = await this.guard(`${m}:start`, async () => {
      const started = await this.start(m, plan.sha, run);
      await this.say(
        m,
        started.state === 'already'
          ? `${label} ${of}: already on ${short(plan.sha)}`
          : `${label} ${of}: switching ${short(started.previous)} → ${short(plan.sha)}`,
      );
      return started;
    });
    if (start.state === 'already') {
      await this.removeToken(m, `${m}:token-removed`);
      await ctx.steps.run(`${m}:done`, async () => ({ revision: plan.sha, already: true }));
      await releaseJobLock(this.deps.redis, lock, ctx.jobId);
      return 'already';
    }
    const previous = start.previous;
    const result = await this.guard(
      `${m}:switch`,
      () => this.awaitSwitch(m, start.instanceId, run, `${m}:switch`),
      previous,
    );
    await this.removeToken(m, `${m}:token-removed`);
    const tail = outputTail(result.tail, 20, 1500, this.secrets);
    if (!result.ok) {
      const by = result.rolledBack ? `; the host rolled back to ${short(result.revision)} by itself` : '';
      throw new MemberFailed({
        step: 'switch',
        cause: `the host's ${result.phase} step failed${by}`,
        tail,
        previous,
        hostRolledBack: result.rolledBack && result.revision === previous,
      });
    }
    if (result.revision !== plan.sha) {
      throw new MemberFailed({
        step: 'verify',
        cause: `the host reports configurationRevision ${short(result.revision)}, not ${short(plan.sha)}`,
        tail,
        previous,
      });
    }
    const down = Object.entries(result.units).filter(([, state]) => state !== 'active');
    if (down.length > 0) {
      const units = down.map(([u, s]) => `${u} ${s}`).join(', ');
      throw new MemberFailed({ step: 'verify', cause: `not back after the switch: ${units}`, tail, previous });
    }
    await this.guard(`${m}:verify`, () => this.awaitHeartbeat(m, plan.sha, `${m}:verify`), previous);
    await ctx.steps.run(`${m}:done`, async () => ({ revision: plan.sha, previous, at: new Date().toISOString() }));
    await releaseJobLock(this.deps.redis, lock, ctx.jobId);
    await this.say(m, `${label} ${of}: on ${short(plan.sha)}, its heartbeat reports it`);
    return 'deployed';
  }

  /** Never deploy yourself: this worker's own host waits for a peer's worker while one is alive. */
  private async runner(m: string): Promise<void> {
    const { ctx, lane } = this;
    const me = lane.hostName;
    const name = `${m}:runner`;
    await ctx.steps.waitFor(
      name,
      async () => {
        if (me !== m) return { by: me ?? null };
        const others = Object.keys(await this.deps.registry()).filter((p) => p !== m);
        const beats = await readHeartbeats(this.deps.redis, others, this.workersKey());
        const alive = others.filter((p) => beats.get(p) !== null && beats.get(p) !== undefined);
        if (alive.length === 0) return { by: me, alone: true };
        const since = ctx.steps.results[`${name}:waiting-since`];
        if (typeof since === 'number' && Date.now() - since > this.waits.handoffMs) {
          ctx.log.warn({ member: m }, 'no peer took the switch of this host: switching it here');
          return { by: me, waited: true };
        }
        await this.say(m, `${m} runs this job's worker: left to a peer's worker (${alive.join(', ')})`);
        return undefined;
      },
      {
        pollMs: this.waits.pollMs,
        // The hand-off's own deadline above decides; this bound only backs it up.
        timeoutMs: this.waits.handoffMs * 2 + 60_000,
        timeoutMessage: `${m}: no worker took the switch of ${m}`,
      },
    );
  }

  /** The member's instance, the flake token stored, and the host's switch started. */
  private async start(
    m: string,
    sha: string,
    run: string,
  ): Promise<SwitchStart & { instanceId: string; by: string | null }> {
    const { lane } = this;
    const instance = (await lane.cloud.listFleetInstances()).find((i) => i.name === m && i.state === 'running');
    if (instance === undefined) {
      throw new MemberFailed({ step: 'start', cause: `${m} has no running instance: nothing was switched`, tail: '' });
    }
    await this.storeToken(m, run);
    const result = await runHostAction(
      lane.cloud,
      instance.instanceId,
      { action: 'switch-start', sha, run },
      { comment: `deploy ${short(sha)} to ${m}` },
    );
    if (result.status !== 'Success') {
      throw new MemberFailed({
        step: 'start',
        cause: `the switch did not start (${describeInvocation(result)})`,
        tail: outputTail(`${result.stdout}\n${result.stderr}`, 20, 1500, this.secrets),
      });
    }
    const answer = lastJson(result, switchStartSchema, `${m}: switch-start`);
    if (answer.sha !== sha || answer.run !== run) {
      throw new MemberFailed({ step: 'start', cause: `${m} answered for another switch`, tail: '' });
    }
    return { ...answer, instanceId: instance.instanceId, by: lane.hostName ?? null };
  }

  /** Re-delayed until the host's result file says the switch ended. */
  private awaitSwitch(m: string, instanceId: string, run: string, name: string): Promise<SwitchResult> {
    const minutes = Math.round(this.waits.switchTimeoutMs / 60_000);
    return this.ctx.steps.waitFor(
      name,
      async () => {
        const result = await runHostAction(
          this.lane.cloud,
          instanceId,
          { action: 'switch-status', run },
          { comment: `switch status on ${m}` },
        );
        if (result.status !== 'Success') {
          // The switch may restart the SSM agent or the network: look again next time.
          await this.say(m, `${m}: no answer from the host yet (${describeInvocation(result)})`);
          return undefined;
        }
        const status = lastJson(result, switchStatusSchema, `${m}: switch-status`);
        if (status.state === 'unknown') {
          throw new MemberFailed({ step: 'switch', cause: `${m} has no record of switch ${run}`, tail: '' });
        }
        if (status.state === 'running') return undefined;
        // Saved with the step (job data): redacted first, by the token this run minted too
        // (the host redacts what it holds; the output may still echo what nix was given).
        return { ...status, tail: outputTail(status.tail, 40, 8000, this.secrets) };
      },
      {
        pollMs: this.waits.pollMs,
        timeoutMs: this.waits.switchTimeoutMs,
        timeoutMessage: `${m}: the switch did not end within ${minutes} min`,
      },
    );
  }

  /** Re-delayed until the member's heartbeat reports `revision`. */
  private awaitHeartbeat(m: string, revision: string, name: string): Promise<{ at: string }> {
    const seconds = Math.round(this.waits.verifyTimeoutMs / 1000);
    return this.ctx.steps.waitFor(
      name,
      async () => {
        const beat = (await readHeartbeats(this.deps.redis, [m], this.workersKey())).get(m);
        if (beat?.revision === revision) return { at: new Date(beat.at).toISOString() };
        return undefined;
      },
      {
        pollMs: this.waits.pollMs,
        timeoutMs: this.waits.verifyTimeoutMs,
        timeoutMessage: `its heartbeat did not report ${short(revision)} within ${seconds} s`,
      },
    );
  }

  // ── rollback ────────────────────────────────────────────────────────────────────────

  /** Back on the revision it ran before, verified; what was done, in words. */
  private async rollback(plan: Plan, m: string, failure: MemberFailure): Promise<string> {
    const previous = failure.previous;
    if (previous === null) return `nothing was switched on ${m}`;
    if (previous === plan.sha) return `${m} was on ${short(plan.sha)} before`;
    try {
      if (!failure.hostRolledBack) {
        if (!isFullSha(previous)) {
          return `${m} NOT rolled back: the revision it ran before (${previous}) is not a commit; roll back by hand with /deploy rev:<sha> target:${m}`;
        }
        await this.say('rollback', `rolling ${m} back to ${short(previous)}`);
        const run = runId(this.ctx.jobId, 'rb');
        const start = await this.ctx.steps.run(`${m}:rollback-start`, () => this.start(m, previous, run));
        if (start.state !== 'already') {
          const result = await this.awaitSwitch(m, start.instanceId, run, `${m}:rollback-switch`);
          await this.removeToken(m, `${m}:rollback-token-removed`);
          if (!result.ok || result.revision !== previous) {
            const tail = outputTail(result.tail, 10, 800, this.secrets);
            throw new MemberFailed({ step: 'rollback', cause: `the host's ${result.phase} step failed`, tail });
          }
        }
      }
      await this.awaitHeartbeat(m, previous, `${m}:rollback-verify`);
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      if (err instanceof CloudError && err.retryable) throw err;
      const why = err instanceof MemberFailed ? err.failure.cause : errorLine(err);
      return `ROLLBACK OF ${m} FAILED (${why}): it may still run ${short(plan.sha)}; look with /doctor name:${m}`;
    }
    return failure.hostRolledBack
      ? `${m} rolled itself back to ${short(previous)}; verified: its heartbeat reports it`
      : `${m} rolled back to ${short(previous)}; verified: its heartbeat reports it`;
  }

  /**
   * The report of a stopped deploy, saved (`report`) for the finalizer, which releases the
   * locks, records the failure and sends it (finalizeDeploy). The first line is what chat
   * shows; the output's tail goes to the job's log (`jobs show`), its last lines also on the
   * first.
   */
  private async stop(plan: Plan, m: string, index: number, failure: MemberFailure, rolledBack: string): Promise<Error> {
    const { ctx } = this;
    const role = index === 0 && plan.members.length > 1 ? 'the canary ' : '';
    const untouched = plan.members.slice(index + 1);
    const before = plan.members.slice(0, index);
    const last = failure.tail
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-3)
      .join(' ⏎ ');
    const first = [
      `deploy of ${short(plan.sha)} (${plan.ref}) stopped at ${role}${m}, step ${failure.step}: ${failure.cause}`,
      `rollback: ${rolledBack}`,
      ...(before.length > 0 ? [`already on ${short(plan.sha)}: ${before.join(', ')}`] : []),
      ...(untouched.length > 0 ? [`untouched: ${untouched.join(', ')}`] : []),
      ...(last ? [`output: ${last.length > 600 ? `…${last.slice(-600)}` : last}`] : []),
    ].join('; ');
    await ctx.steps.run('report', async () => {
      for (const line of failure.tail.split('\n')) if (line.trim() !== '') ctx.output?.(`${m}: ${line}`);
      return { message: first };
    });
    return new UnrecoverableError(first);
  }

  /** A failure before any member was touched: one line (the finalizer releases the lock). */
  private failedBeforeMembers(err: unknown): Error {
    const final =
      err instanceof UnrecoverableError || err instanceof RefusedError || (err instanceof CloudError && !err.retryable);
    const message = errorLine(err);
    if (!final) return new OperationError(`deploy: ${this.current} failed: ${message}`, { cause: err });
    return err instanceof RefusedError ? err : new UnrecoverableError(message);
  }

  // ── the token for the flake ─────────────────────────────────────────────────────────

  private async storeToken(m: string, run: string): Promise<void> {
    const { tokens, cloud } = this.lane;
    if (tokens === undefined) return;
    const token = await tokens.mint();
    if (token === null) return;
    this.secrets.push(token);
    // Never in this job's log or messages, whatever prints it.
    this.ctx.secret?.(token);
    // Overwritten by each switch: one per member, deleted once its switch ended.
    await cloud.putSecret(deployTokenSecret(m), token, { clientToken: runId(`${this.ctx.jobId}-${m}-${run}`, 'tk') });
  }

  private async removeToken(m: string, step: string): Promise<void> {
    const { tokens, cloud } = this.lane;
    if (tokens === undefined) return;
    await this.ctx.steps.run(step, async () => {
      await cloud.deleteSecret(deployTokenSecret(m));
      return null;
    });
  }

  // ── the run's plumbing ──────────────────────────────────────────────────────────────

  /**
   * A step of a member: its failures become the member's (rolled back, then final), except
   * those a retry can fix (AWS throttling, an outage), which BullMQ retries from this step.
   */
  private async guard<T>(name: string, fn: () => Promise<T>, previous: string | null = null): Promise<T> {
    this.current = name;
    try {
      return await this.ctx.steps.run(name, fn);
    } catch (err) {
      if (err instanceof DelayedError || (err instanceof CloudError && err.retryable)) throw err;
      if (err instanceof MemberFailed) {
        throw new MemberFailed({ previous, ...err.failure });
      }
      const step = name.slice(name.indexOf(':') + 1);
      throw new MemberFailed({ step, cause: errorLine(err), tail: '', previous });
    }
  }

  private step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.current = name;
    return this.ctx.steps.run(name, fn);
  }

  private say(stage: string, message: string): Promise<void> {
    return this.ctx.progress(message, undefined, stage);
  }

  /** The workers' public key: heartbeats are signed with the workers' key and read verified. */
  private workersKey() {
    return publicHalf(this.ctx.signer.key);
  }

  private queue(): Queue {
    this.fleetQueue ??= new Queue(FLEET_QUEUE, { connection: this.deps.redis });
    return this.fleetQueue;
  }

  private lifecycle(): LifecycleRun {
    return { jobId: this.ctx.jobId, principal: this.ctx.principal, action: 'deploy', name: this.ctx.data.target };
  }

  private async record(what: string, outcome: string): Promise<void> {
    const { memory } = this.deps;
    if (memory === undefined || this.trail === undefined) return;
    await recordLifecycle(memory, this.trail, this.lifecycle(), what, outcome);
  }

  /** A schedule's successful runs post nothing by themselves (the worker's rule): this one does. */
  private async post(text: string): Promise<void> {
    if (this.deps.opsChannelId === undefined) return;
    await publish(this.deps.redis, this.ctx.signer, {
      kind: 'result',
      jobId: this.ctx.jobId,
      type: DEPLOY,
      reply: { channelId: this.deps.opsChannelId },
      ok: true,
      text,
    });
  }
}

// ── the end of a deploy that did not succeed ──────────────────────────────────────────

/**
 * The deploy's end when it did not succeed, whatever ended it, from the request and its saved
 * steps alone (finalize.ts): the fleet lock and the members' locks this job holds released
 * (each only if it still holds it), a flake token left by a switch that never reached its
 * removal deleted, the last deploy recorded as failed, one line in ops.md and the audit, and
 * the message — the processor's own report when it stopped at a member, otherwise where it
 * ended and what each member is left on.
 */
export async function finalizeDeploy(end: JobEnd<DeployData>, deps: DeployJobDeps): Promise<FinalReport> {
  const { redis, lane } = deps;
  const saved = end.steps;
  const plan = saved.plan as Partial<Plan> | undefined;
  const members = Array.isArray(plan?.members) ? plan.members.filter((m): m is string => typeof m === 'string') : [];
  const sha = typeof plan?.sha === 'string' && isFullSha(plan.sha) ? plan.sha : null;
  const ref = typeof plan?.ref === 'string' ? plan.ref.slice(0, 100) : sha === null ? '' : short(sha);
  await releaseJobLock(redis, FLEET_ROLLOUT_LOCK, end.jobId);
  for (const m of members) await releaseJobLock(redis, keys.instanceLock(m), end.jobId);
  if (lane?.tokens !== undefined) {
    for (const m of members) {
      const started = Object.hasOwn(saved, `${m}:start`) || Object.hasOwn(saved, `${m}:rollback-start`);
      const removed =
        Object.hasOwn(saved, `${m}:token-removed`) &&
        (!Object.hasOwn(saved, `${m}:rollback-start`) || Object.hasOwn(saved, `${m}:rollback-token-removed`));
      // A start that died before its save may have stored one too: the member being switched.
      const current = !Object.hasOwn(saved, `${m}:done`) && !Object.hasOwn(saved, `${m}:failed`);
      if ((started && !removed) || (current && Object.hasOwn(saved, `${m}:runner`))) {
        await lane.cloud.deleteSecret(deployTokenSecret(m));
      }
    }
  }

  const run: LifecycleRun = { jobId: end.jobId, principal: end.principal, action: 'deploy', name: end.data.target };
  const report = saved.report as { message?: unknown } | undefined;
  let message: string;
  let what: string;
  if (sha === null) {
    // Nothing was planned: nothing was touched (a refusal, GitHub, the lock held by another).
    message = end.how === 'refused' || end.how === 'failed' ? end.cause : `${end.cause}; nothing was switched`;
    what = `refused before any member: ${end.cause}`;
  } else {
    const states = memberStates(saved, members);
    const failed = members.find((m) => Object.hasOwn(saved, `${m}:failed`));
    if (typeof report?.message === 'string') {
      message = report.message;
    } else {
      const verb = end.how === 'cancelled' || end.how === 'removed' ? 'stopped' : 'failed';
      const at = states.current ?? failed;
      const where = at === undefined ? 'its end' : at;
      message = [
        `deploy of ${short(sha)} (${ref}) ${verb} at ${where}: ${end.cause}`,
        ...describeStates(states, sha),
      ].join('; ');
    }
    const failure = failed === undefined ? undefined : (saved[`${failed}:failed`] as Partial<MemberFailure>);
    const rolledBack = failed === undefined ? undefined : (saved[`${failed}:rolled-back`] as { text?: unknown });
    what =
      failed !== undefined
        ? `${short(sha)} (${ref}) stopped at ${failed} (${String(failure?.step ?? 'switch')})${typeof rolledBack?.text === 'string' ? `; ${rolledBack.text}` : ''}`
        : `${short(sha)} (${ref}) ${end.how === 'cancelled' ? 'cancelled' : 'failed'}${states.current ? ` at ${states.current}` : ''}`;
    await end.once('last-deploy', () =>
      writeLastDeploy(redis, {
        sha,
        ok: false,
        at: new Date().toISOString(),
        jobId: end.jobId,
        target: end.data.target,
      }),
    );
  }
  const trail = deps.audit ?? (deps.memory && new AuditTrail({ log: end.log, memory: deps.memory }));
  if (trail !== undefined) {
    const outcome = end.how === 'refused' ? 'refused' : end.how === 'cancelled' ? 'cancelled' : 'failed';
    await end.once('record', async () => {
      if (deps.memory !== undefined && sha !== null) {
        // Best-effort: a full or locked ops.md must not keep the fleet locked.
        await recordLifecycle(deps.memory, trail, run, what, `${outcome}: ${message}`).catch((err) =>
          end.log.error({ err: errorLine(err) }, 'deploy record failed'),
        );
      } else {
        await auditLifecycle(trail, run, new Date(), `${outcome}: ${message}`).catch((err) =>
          end.log.error({ err: errorLine(err) }, 'deploy audit failed'),
        );
      }
      return null;
    });
  }
  return { message };
}

interface MemberStates {
  switched: string[];
  already: string[];
  /** Started and not ended: its switch may have happened or not. */
  current?: string;
  /** What the member that failed was left on (the processor's rollback), by member. */
  rolledBack: Map<string, string>;
  untouched: string[];
}

function memberStates(saved: Record<string, unknown>, members: string[]): MemberStates {
  const out: MemberStates = { switched: [], already: [], rolledBack: new Map(), untouched: [] };
  for (const m of members) {
    const done = saved[`${m}:done`] as { already?: unknown } | undefined;
    const rolled = saved[`${m}:rolled-back`] as { text?: unknown } | undefined;
    if (done !== undefined) (done.already === true ? out.already : out.switched).push(m);
    else if (typeof rolled?.text === 'string') out.rolledBack.set(m, rolled.text);
    else if (Object.hasOwn(saved, `${m}:runner`) || Object.hasOwn(saved, `${m}:failed`)) out.current ??= m;
    else out.untouched.push(m);
  }
  return out;
}

function describeStates(states: MemberStates, sha: string): string[] {
  const parts: string[] = [];
  if (states.switched.length > 0) parts.push(`switched to ${short(sha)}: ${states.switched.join(', ')}`);
  if (states.already.length > 0) parts.push(`already on it: ${states.already.join(', ')}`);
  for (const [m, text] of states.rolledBack) parts.push(`rollback of ${m}: ${text}`);
  if (states.current !== undefined) {
    const m = states.current;
    parts.push(
      `${m} may be mid-switch or switched to ${short(sha)} (not verified, not rolled back): look with /doctor name:${m}`,
    );
  }
  if (states.untouched.length > 0) parts.push(`untouched: ${states.untouched.join(', ')}`);
  if (parts.length === 0) parts.push('no member was switched');
  return parts;
}

/** A switch's id on the host (its result file's name), from the job's id, which may hold `:`. */
export function runId(jobId: string, kind: 'up' | 'rb' | 'tk'): string {
  return `d${createHash('sha256').update(jobId).digest('hex').slice(0, 20)}-${kind}`;
}

function short(rev: string): string {
  return /^[0-9a-f]{40}$/.test(rev) ? rev.slice(0, 7) : rev.slice(0, 40);
}
