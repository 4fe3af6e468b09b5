// The slow lane: a new base image (AMI) from a commit, optionally rolled out to the fleet.
// `/rebuild-ami [rev] [rollout]`, `clawdinator ami rebuild`, and a scheduled rebuild (off
// unless CLAWDINATOR_AMI_REBUILD_CRON is set; it never rolls out).
//
// Resumable steps, each idempotent by itself (a worker can die between an effect and its
// save), named by stage (`<stage>` or `<stage>-…`, jobs/ami/stages.ts) so progress shows the
// stage list:
//   resolve              rev → full commit sha (GitHub, as the project's App); a per-sha lock:
//                        a second request for the same sha is refused "already in progress"
//                        naming the running job; an available image of that sha is reused
//   build                on a builder — a healthy member other than this job's host — as an
//                        ami-build job on that member's host queue (its worker already holds
//                        the deployer role); an earlier attempt's build job is adopted, never
//                        doubled. `--local`: build and upload here instead
//   build-wait           re-delayed until the build job ends, relaying its progress
//   upload               (local only) the multipart upload, checksum verified
//   import               ImportSnapshot, vmimport role, ClientToken derived from this job:
//                        a retry gets the same task; the task id saved before any wait
//   import-wait          re-delayed every import poll; each wake-up reports AWS's percent and
//                        status message; a deleted task ends the job with AWS's message
//   register             RegisterImage (x86_64, legacy-bios, hvm, ENA, /dev/xvda, delete on
//                        termination; both configurable), tagged at creation; the snapshot
//                        tagged the same
//   register-available   re-delayed until the image is available
//   register-record      ops.md and the audit
//   rollout-lock         the fleet-wide lock of rollouts and deploys (re-delayed while held)
//   rollout-plan         canary order; canary: the first member, all: every member
//   rollout-<member>:…   that member's replace (the replace job's own steps, scoped), onto the
//                        new image, until online on it; one at a time, stopping at the first
//                        failure with the rest untouched
//
// However the job ends without success (its last failure, a refusal, a cancel, a stall, a
// removal), the engine's finalizer runs `finalizeRebuild` from the request and the saved
// steps alone: the per-sha lock, the fleet rollout lock and the members' locks this job
// holds are released, one audit line is written, and the message says the stage and the cause.

import { createHash } from 'node:crypto';
import { DelayedError, Queue, UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { FleetRegistry } from '../../infra/registry.js';
import { errorLine, OperationError, RefusedError } from '../../lib/errors.js';
import type { MemoryStore } from '../../memory/store.js';
import type { AmiDeps } from '../ami/deps.js';
import { type AmiWaits, defaultAmiWaits } from '../ami/deps.js';
import {
  clientToken,
  describeTask,
  imageNaming,
  imageTags,
  REVISION_TAG,
  registerImported,
  snapshotOf,
  startImport,
} from '../ami/image.js';
import type { RebuildStage } from '../ami/stages.js';
import { AuditTrail } from '../audit.js';
import { CloudError } from '../cloud/errors.js';
import { describePrincipal, type Principal } from '../engine/envelope.js';
import { readHeartbeats } from '../engine/heartbeat.js';
import type { FinalReport, JobContext, JobEnd, JobType } from '../engine/job-type.js';
import { FLEET_QUEUE, hostQueue, keys } from '../engine/keys.js';
import { publish } from '../engine/notify.js';
import { Enqueuer, JobTypes } from '../engine/queues.js';
import { canaryOrder, FLEET_ROLLOUT_LOCK, fleetOrder, releaseJobLock, takeJobLock } from '../engine/rollout.js';
import { scopedSteps } from '../engine/scoped-steps.js';
import { revSchema } from '../github/revision.js';
import { publicHalf } from '../signing.js';
import { AMI_BUILD, amiBuildJob, buildStage, type UploadedImage, uploadedSchema, uploadStage } from './ami-build.js';
import { clock } from './lifecycle.js';
import { Replace, type ReplaceData } from './replace.js';
import type { FleetDeps } from './spawn.js';

export const REBUILD_AMI = 'rebuild-ami';

const dataSchema = z
  .object({
    /** A sha, short sha, branch or tag; default the head of the project's branch. */
    rev: revSchema.optional(),
    rollout: z.enum(['none', 'canary', 'all']).default('none'),
    /** `peer`: on a builder member's host queue; `local`: in this process (`--local`, day 0). */
    build: z.enum(['peer', 'local']).default('peer'),
  })
  .strict();
type RebuildData = z.output<typeof dataSchema>;

export interface RebuildDeps {
  redis: Redis;
  registry: () => Promise<FleetRegistry>;
  ami?: AmiDeps;
  /** The rollout's replaces act on these. */
  fleet?: FleetDeps;
  memory?: MemoryStore;
  /** Where outcomes are audited (jobs/audit.ts); default: the journal and the memory copy. */
  audit?: AuditTrail;
  /** Where a scheduled rebuild posts its result. */
  opsChannelId?: string;
}

/** A second request for a sha being built names the job that builds it. */
export const shaLockKey = (sha: string) => `clawdinator:ami-sha-lock:${sha}`;

/** The scheduler id a build job's principal names (the workers made it for a rebuild). */
const BUILD_PRINCIPAL = { kind: 'schedule', scheduler: 'clawdinator-rebuild-ami' } as const;

interface Target {
  sha: string;
  ref: string;
  shortSha: string;
  name: string;
  key: string;
  /** An available image of this sha that already exists: nothing is built. */
  reused: { imageId: string; name: string } | null;
}

interface Registered {
  imageId: string;
  name: string;
  builtBy: string;
}

export function rebuildAmiJob(deps: RebuildDeps): JobType<typeof dataSchema> {
  return {
    name: REBUILD_AMI,
    version: 1,
    schema: dataSchema,
    permission: 'rebuild-ami',
    // The weekly rebuild (CLAWDINATOR_AMI_REBUILD_CRON); it never rolls out (checked below).
    scheduled: true,
    // A rebuild that rolls out replaces members: retried, it is confirmed as a new one would be.
    destructive: (data) => data.rollout !== 'none',
    attempts: 3,
    steps: (data) => rebuildSteps(data),
    finalize: (end) => finalizeRebuild(end, deps),
    async run(ctx) {
      const { ami } = deps;
      if (ami === undefined) throw new UnrecoverableError('rebuild-ami: this worker has no image pipeline configured');
      const run = new Rebuild(ctx, deps, ami);
      try {
        return await run.run();
      } finally {
        await run.close();
      }
    },
  };
}

class Rebuild {
  private readonly waits: AmiWaits;
  private current: RebuildStage = 'resolve';
  private fleetQueue: Queue | undefined;
  private readonly hostQueues = new Map<string, Queue>();

  constructor(
    private readonly ctx: JobContext<RebuildData>,
    private readonly deps: RebuildDeps,
    private readonly ami: AmiDeps,
  ) {
    this.waits = { ...defaultAmiWaits, ...ami.waits };
  }

  async run(): Promise<{ summary: string; imageId: string; sha: string; rolledOut: string[] }> {
    const { ctx } = this;
    try {
      const target = await this.step('resolve', 'resolve', () => this.resolve());
      const image = target.reused
        ? { ...target.reused, builtBy: 'an earlier rebuild' }
        : await this.buildAndRegister(target);
      await releaseJobLock(this.deps.redis, shaLockKey(target.sha), ctx.jobId);
      const made = target.reused
        ? `${image.imageId} (${image.name}) of ${target.shortSha} already existed: reused`
        : `${image.imageId} (${image.name}) from ${target.shortSha} (${target.ref}), built by ${image.builtBy}`;
      let summary = `${made}: available`;
      let rolledOut: string[] = [];
      if (ctx.data.rollout !== 'none') {
        rolledOut = await this.rollout(image.imageId);
        summary +=
          ctx.data.rollout === 'canary'
            ? `; canary online on ${image.imageId} (${rolledOut.join(', ')})`
            : `; rolled out: ${rolledOut.join(', ')} online on ${image.imageId}`;
      }
      if (ctx.principal.kind === 'schedule') await this.postScheduled(summary);
      return { summary, imageId: image.imageId, sha: target.sha, rolledOut };
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      throw this.failed(err);
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.fleetQueue, ...this.hostQueues.values()].map((q) => q?.close()));
  }

  // ── stages ──────────────────────────────────────────────────────────────────────────

  private async resolve(): Promise<Target> {
    const { ctx, ami } = this;
    const { rollout, build } = ctx.data;
    if (ctx.principal.kind === 'schedule' && rollout !== 'none') {
      throw new RefusedError('refused: a scheduled rebuild never rolls out by itself');
    }
    if (build === 'local' && rollout !== 'none') {
      throw new RefusedError('refused: a rollout needs the fleet’s workers: run it without --local');
    }
    const { sha, ref } = await ami.resolver.resolve(ctx.data.rev);
    const holder = await takeJobLock(this.deps.redis, [this.queue()], shaLockKey(sha), ctx.jobId);
    if (holder !== null) {
      throw new RefusedError(`already in progress: ${holder} is building ${sha.slice(0, 12)} (${ref})`);
    }
    const naming = imageNaming(sha, ami.now?.() ?? new Date());
    const existing = (await ami.cloud.listAmis()).find((i) => i.tags[REVISION_TAG] === sha && i.state === 'available');
    await this.say('resolve', `${ref} → ${sha}${existing ? `; ${existing.imageId} is already built from it` : ''}`);
    return {
      sha,
      ref,
      shortSha: naming.shortSha,
      name: naming.name,
      key: naming.key,
      reused: existing ? { imageId: existing.imageId, name: existing.name } : null,
    };
  }

  private async buildAndRegister(target: Target): Promise<Registered> {
    const { ami, ctx } = this;
    const uploaded = ctx.data.build === 'local' ? await this.buildHere(target) : await this.buildOnPeer(target);
    const { importTaskId } = await this.step('import', 'import', async () => {
      const id = await startImport(ami.cloud, {
        bucket: uploaded.bucket,
        key: uploaded.key,
        sha: target.sha,
        clientToken: clientToken('import', ctx.jobId),
      });
      await this.say('import', `task ${id} started (s3://${uploaded.bucket}/${uploaded.key})`, 0);
      return { importTaskId: id };
    });
    const { snapshotId } = await this.wait(
      'import',
      'import-wait',
      () => this.pollImport(importTaskId),
      this.waits.importPollMs,
      this.waits.importTimeoutMs,
    );
    const tags = imageTags({ name: target.name, sha: target.sha, builtBy: uploaded.builtBy, key: uploaded.key });
    const { imageId } = await this.step('register', 'register', async () => {
      const id = await registerImported(ami.cloud, {
        name: target.name,
        snapshotId,
        architecture: ami.architecture,
        bootMode: ami.bootMode,
        clientToken: clientToken('register', ctx.jobId),
        tags,
        sha: target.sha,
      });
      await this.say('register', `${id} (${target.name}) registered on ${snapshotId}, ${ami.bootMode}; tagged`);
      return { imageId: id };
    });
    await this.wait(
      'register',
      'register-available',
      async () => {
        const image = await ami.cloud.describeImage(imageId);
        if (image.state === 'available') return { state: image.state };
        if (image.state !== 'pending') throw new UnrecoverableError(`${imageId} is ${image.state}, not available`);
        await this.say('register', `${imageId} is ${image.state}`);
        return undefined;
      },
      this.waits.pollMs,
      this.waits.availableTimeoutMs,
    );
    await this.step('register', 'register-record', () =>
      this.record(`${imageId} (${target.name}) from ${target.sha} (${target.ref}), built by ${uploaded.builtBy}`),
    );
    return { imageId, name: target.name, builtBy: uploaded.builtBy };
  }

  /** `--local`: the build and the upload in this process. */
  private async buildHere(target: Target): Promise<UploadedImage> {
    const { ami, ctx } = this;
    const built = await this.step('build', 'build', () => buildStage(ami, ctx, target.sha, ami.builtBy));
    return this.step('upload', 'upload', () => uploadStage(ami, ctx, built, target.key, ami.builtBy));
  }

  /** A peer builds and uploads (an ami-build job on its host queue); this job waits, re-delayed. */
  private async buildOnPeer(target: Target): Promise<UploadedImage> {
    const { ctx, ami } = this;
    const hostJobs = ami.hostJobs;
    this.current = 'build';
    if (hostJobs === undefined) {
      throw new UnrecoverableError('this process cannot ask a peer to build (no workers’ key): build with --local');
    }
    const childId = buildJobId(ctx.jobId);
    const { host } = await this.step('build', 'build', async () => {
      const asked = await this.askBuilder(target, childId, hostJobs);
      await this.say('build', `${asked.host} builds ${target.shortSha} (job ${childId})`);
      return asked;
    });
    let said = '';
    await this.wait(
      'build',
      'build-wait',
      async () => {
        const queue = this.hostQueue(host);
        const job = await queue.getJob(childId);
        const state = job ? await job.getState() : 'unknown';
        if (state === 'completed') return { ok: true as const };
        if (state === 'failed' || state === 'unknown') {
          const why = job?.failedReason ? job.failedReason.slice(0, 500) : `${childId} is gone`;
          throw new UnrecoverableError(`build on ${host} failed: ${why}`);
        }
        if (await this.silent(host)) {
          await queue.remove(childId).catch(() => {});
          throw new UnrecoverableError(
            `builder ${host} went silent during the build (no heartbeat): run the rebuild again, another member builds`,
          );
        }
        // The builder's own progress (build lines, upload percent), shown on this job's reply.
        const progress = job?.progress as { message?: unknown; percent?: unknown; step?: unknown } | undefined;
        const message = typeof progress?.message === 'string' ? progress.message.slice(0, 300) : '';
        const percent = typeof progress?.percent === 'number' ? progress.percent : undefined;
        const stage = progress?.step === 'upload' ? 'upload' : 'build';
        if (message !== '' && message !== said) {
          said = message;
          await ctx.progress(`${host}: ${message}`, percent, stage);
        }
        return undefined;
      },
      this.waits.pollMs,
      this.waits.buildTimeoutMs,
    );
    // The build job's result is read back from Redis: the object it names is checked in S3.
    return this.step('upload', 'upload-check', async () => {
      const job = await this.hostQueue(host).getJob(childId);
      const parsed = uploadedSchema.safeParse(job?.returnvalue);
      const head = await ami.cloud.headObject(ami.bucket, target.key);
      if (!parsed.success || parsed.data.key !== target.key || head === null || head.sha256 === null) {
        throw new UnrecoverableError(`build on ${host} ended, but s3://${ami.bucket}/${target.key} is not there`);
      }
      await this.say(
        'upload',
        `s3://${ami.bucket}/${target.key} (${head.size} bytes, sha256 ${head.sha256.slice(0, 16)}…)`,
        100,
      );
      return { bucket: ami.bucket, key: target.key, size: head.size, sha256: head.sha256, builtBy: host };
    });
  }

  /** A healthy member other than this job's host, its build job added (or an earlier attempt's adopted). */
  private async askBuilder(
    target: Target,
    childId: string,
    hostJobs: NonNullable<AmiDeps['hostJobs']>,
  ): Promise<{ host: string }> {
    const { ami, deps } = this;
    const members = canaryOrder(Object.keys(await deps.registry()), ami.hostName).filter((m) => m !== ami.hostName);
    // An earlier attempt may have asked already (it died before saving): adopt that job.
    for (const host of members) {
      if (await this.hostQueue(host).getJob(childId)) return { host };
    }
    const beats = await readHeartbeats(deps.redis, members, publicHalf(this.ctx.signer.key));
    const healthy = members
      .filter((m) => beats.get(m) !== null && beats.get(m) !== undefined)
      .sort((a, b) => (beats.get(a)?.activeJobs ?? 0) - (beats.get(b)?.activeJobs ?? 0));
    if (healthy.length === 0) {
      const own = ami.hostName === undefined ? '' : ` other than ${ami.hostName} (which runs this job)`;
      throw new RefusedError(
        `refused: no healthy member${own} can build the image: spawn one, or build on a machine with Nix (clawdinator ami rebuild --local)`,
      );
    }
    const enqueuer = new Enqueuer(
      hostJobs.connection,
      deps.redis,
      new JobTypes([amiBuildJob({ ami: this.ami })]),
      hostJobs.signer,
    );
    try {
      const busy: string[] = [];
      for (const host of healthy) {
        try {
          await enqueuer.enqueue({
            type: AMI_BUILD,
            data: { host, sha: target.sha, key: target.key },
            principal: BUILD_PRINCIPAL,
            requestId: childId.slice(`${AMI_BUILD}-`.length),
          });
          return { host };
        } catch (err) {
          // Another operation holds that member (a replace, a build): ask the next one.
          if (!/already in progress/.test(errorLine(err))) throw err;
          busy.push(host);
        }
      }
      throw new RefusedError(`refused: every healthy builder is busy (${busy.join(', ')}): try again later`);
    } finally {
      await enqueuer.close();
    }
  }

  /** True when the health sweep has the builder as silent and it still has no heartbeat. */
  private async silent(host: string): Promise<boolean> {
    if ((await readHeartbeats(this.deps.redis, [host], publicHalf(this.ctx.signer.key))).get(host)) return false;
    const raw = await this.deps.redis.get(keys.health(host));
    try {
      return raw !== null && (JSON.parse(raw) as { state?: unknown }).state === 'silent';
    } catch {
      return false;
    }
  }

  private async pollImport(importTaskId: string): Promise<{ snapshotId: string } | undefined> {
    let task: Awaited<ReturnType<AmiDeps['cloud']['describeImportSnapshot']>>;
    try {
      task = await this.ami.cloud.describeImportSnapshot(importTaskId);
    } catch (err) {
      // A failed task is AWS's answer; a throttle or an outage is looked at again next time.
      if (err instanceof CloudError && err.retryable) {
        await this.say('import', `${importTaskId}: ${err.code} from AWS, looking again later`);
        return undefined;
      }
      throw new UnrecoverableError(errorLine(err));
    }
    await this.say('import', `${importTaskId} ${describeTask(task)}`, task.progress);
    return task.status === 'completed' ? { snapshotId: snapshotOf(task) } : undefined;
  }

  /** The rollout: the fleet lock, then one member at a time, onto the new image, until online. */
  private async rollout(imageId: string): Promise<string[]> {
    const { ctx, deps } = this;
    const { fleet, memory } = deps;
    if (fleet === undefined || memory === undefined) {
      throw new UnrecoverableError('rebuild-ami: this worker has no deployer, registry store or memory for a rollout');
    }
    await this.wait(
      'rollout',
      'rollout-lock',
      async () => {
        const holder = await takeJobLock(deps.redis, [this.queue()], FLEET_ROLLOUT_LOCK, ctx.jobId);
        if (holder === null) return { locked: true };
        await this.say('rollout', `waiting for ${holder} (a deploy or rollout) to finish with the fleet`);
        return undefined;
      },
      this.waits.pollMs,
      this.waits.fleetLockTimeoutMs,
    );
    const { members } = await this.step('rollout', 'rollout-plan', async () => {
      const order = fleetOrder(await deps.registry(), this.ami.hostName);
      const chosen = ctx.data.rollout === 'canary' ? order.slice(0, 1) : order;
      if (chosen.length === 0) throw new RefusedError('refused: the registry has no member to roll out to');
      await this.say('rollout', `${ctx.data.rollout}: ${chosen.join(', ')}, one at a time, onto ${imageId}`);
      return { members: chosen };
    });
    for (const [index, name] of members.entries()) {
      try {
        await this.replaceMember(name, imageId, fleet, memory);
      } catch (err) {
        if (err instanceof DelayedError) throw err;
        const rest = members.slice(index + 1);
        const untouched = rest.length > 0 ? `; untouched: ${rest.join(', ')}` : '';
        const final = err instanceof UnrecoverableError || err instanceof RefusedError;
        const stopped = `stopped at ${name}: ${errorLine(err)}${untouched}`;
        // A retryable failure keeps the locks: the retried job resumes this member's replace
        // (after its last attempt, the locks of a failed job are taken over by the next one).
        if (!final) throw new OperationError(stopped, { cause: err });
        throw new UnrecoverableError(stopped);
      }
      if (index === 0) await this.say('rollout', `canary online on ${imageId}: ${name}`);
    }
    await releaseJobLock(deps.redis, FLEET_ROLLOUT_LOCK, ctx.jobId);
    return members;
  }

  /** One member's replace onto the image: the replace job's own steps, scoped, under that member's lock. */
  private async replaceMember(name: string, imageId: string, fleet: FleetDeps, memory: MemoryStore): Promise<void> {
    const { ctx, deps } = this;
    const scope = `rollout-${name}`;
    if (ctx.steps.done(`${scope}:record`)) return;
    const lock = keys.instanceLock(name);
    const holder = await takeJobLock(deps.redis, [this.queue(), this.hostQueue(name)], lock, ctx.jobId);
    if (holder !== null) throw new RefusedError(`${name} is busy with ${holder}`);
    const child: JobContext<ReplaceData> = {
      // Names the member's ops.md line and audit line apart from the other members'.
      jobId: `${ctx.jobId}-${name}`,
      data: { name, ami: imageId },
      principal: ctx.principal,
      requestId: ctx.requestId,
      reply: ctx.reply,
      signer: ctx.signer,
      steps: scopedSteps(ctx.steps, scope),
      log: ctx.log.child({ member: name }),
      progress: (message, percent) =>
        ctx.progress(`rollout ${message.startsWith(`${name}:`) ? message : `${name}: ${message}`}`, percent, 'rollout'),
    };
    await new Replace(
      child,
      { redis: deps.redis, opsChannelId: deps.opsChannelId, memory, audit: deps.audit, fleet },
      memory,
      fleet,
    ).run();
    await releaseJobLock(deps.redis, lock, ctx.jobId);
  }

  // ── the run's plumbing ──────────────────────────────────────────────────────────────

  private step<T>(stage: RebuildStage, name: string, fn: () => Promise<T>): Promise<T> {
    this.current = stage;
    return this.ctx.steps.run(name, fn);
  }

  private wait<T>(
    stage: RebuildStage,
    name: string,
    check: () => Promise<T | undefined>,
    pollMs: number,
    timeoutMs: number,
  ): Promise<T> {
    this.current = stage;
    return this.ctx.steps.waitFor(name, check, {
      pollMs,
      timeoutMs,
      timeoutMessage: `gave up waiting for ${name} after ${Math.round(timeoutMs / 60_000)} min`,
    });
  }

  private say(stage: RebuildStage, message: string, percent?: number): Promise<void> {
    return this.ctx.progress(`${stage}: ${message}`, percent, stage);
  }

  private queue(): Queue {
    this.fleetQueue ??= new Queue(FLEET_QUEUE, { connection: this.deps.redis });
    return this.fleetQueue;
  }

  private hostQueue(host: string): Queue {
    let q = this.hostQueues.get(host);
    if (q === undefined) {
      q = new Queue(hostQueue(host), { connection: this.deps.redis });
      this.hostQueues.set(host, q);
    }
    return q;
  }

  private async record(what: string): Promise<null> {
    const { memory } = this.deps;
    if (memory === undefined) return null;
    const at = new Date();
    const tag = `(job ${this.ctx.jobId})`;
    const ops = await memory.read('ops.md').then(
      (f) => f.content.toString('utf8'),
      () => '',
    );
    const who = describePrincipal(this.ctx.principal);
    if (!ops.includes(tag))
      await memory.append('ops.md', `- ${clock(at)} rebuild-ami: ${what} — requested by ${who} ${tag}`);
    await this.audit(at, `registered: ${what}`);
    return null;
  }

  private async audit(at: Date, outcome: string): Promise<void> {
    const trail = rebuildTrail(this.deps, this.ctx.log);
    if (trail !== undefined) await auditRebuild(trail, this.ctx, at, outcome);
  }

  /** A schedule's successful runs post nothing by themselves (the worker's rule): this one does. */
  private async postScheduled(summary: string): Promise<void> {
    if (this.deps.opsChannelId === undefined) return;
    await publish(this.deps.redis, this.ctx.signer, {
      kind: 'result',
      jobId: this.ctx.jobId,
      type: REBUILD_AMI,
      reply: { channelId: this.deps.opsChannelId },
      ok: true,
      text: `scheduled rebuild: ${summary}`,
    });
  }

  /**
   * What a failure says: the stage and the cause. AWS's refusals (a bad parameter, access
   * denied, a deleted import) are final too; a retried job keeps its locks and resumes at its
   * last saved step. The end itself (locks, audit) is the finalizer's (finalizeRebuild).
   */
  private failed(err: unknown): Error {
    const final =
      err instanceof UnrecoverableError || err instanceof RefusedError || (err instanceof CloudError && !err.retryable);
    const cause = errorLine(err);
    const message = this.current === 'resolve' && final ? cause : `rebuild-ami: ${this.current} failed: ${cause}`;
    if (!final) return new OperationError(message, { cause: err });
    return err instanceof RefusedError && this.current === 'resolve' ? err : new UnrecoverableError(message);
  }
}

/** The rebuild's own steps in order (a member's rollout steps are scoped: `rollout-<member>:…`). */
export function rebuildSteps(data: RebuildData): string[] {
  const build = data.build === 'local' ? ['build', 'upload'] : ['build', 'build-wait', 'upload-check'];
  const rollout = data.rollout === 'none' ? [] : ['rollout-lock', 'rollout-plan'];
  return [
    'resolve',
    ...build,
    'import',
    'import-wait',
    'register',
    'register-available',
    'register-record',
    ...rollout,
  ];
}

function rebuildTrail(deps: RebuildDeps, log: JobContext<unknown>['log']): AuditTrail | undefined {
  return deps.audit ?? (deps.memory && new AuditTrail({ log, memory: deps.memory }));
}

async function auditRebuild(
  trail: AuditTrail,
  run: { jobId: string; principal: Principal; data: RebuildData },
  at: Date,
  outcome: string,
): Promise<void> {
  const { rev, rollout } = run.data;
  const by = describePrincipal(run.principal);
  const line = `- ${at.toISOString()} job=${run.jobId} ${by} rebuild-ami rev:${rev ?? 'default'} rollout:${rollout} → ${outcome}`;
  await trail.record({
    at,
    line,
    fields: { kind: 'job', job: run.jobId, action: REBUILD_AMI, rev: rev ?? 'default', rollout, by, outcome },
  });
}

/**
 * The rebuild's end when it did not succeed, whatever ended it, from the request and its
 * saved steps alone: the locks it holds released (each only if this job holds it — a lock
 * another job took over stays theirs), one audit line, the message. The per-sha lock is known
 * from the saved `resolve`; one taken by a `resolve` that died before its save is taken over
 * by the next request for that sha, since its holder has ended (rollout.ts).
 */
export async function finalizeRebuild(end: JobEnd<RebuildData>, deps: RebuildDeps): Promise<FinalReport> {
  const { redis } = deps;
  const saved = end.steps;
  const target = saved.resolve as { sha?: unknown; reused?: unknown } | undefined;
  if (typeof target?.sha === 'string') await releaseJobLock(redis, shaLockKey(target.sha), end.jobId);
  await releaseJobLock(redis, FLEET_ROLLOUT_LOCK, end.jobId);
  const plan = saved['rollout-plan'] as { members?: unknown } | undefined;
  const members = Array.isArray(plan?.members) ? plan.members.filter((m): m is string => typeof m === 'string') : [];
  for (const member of members) await releaseJobLock(redis, keys.instanceLock(member), end.jobId);

  // The processor's own failure names its stage; any other end names the step it ended at:
  // a member's rollout, or the first of the rebuild's steps not saved (a reused image skips
  // the build to the register).
  const at = members.find((m) => !Object.hasOwn(saved, `rollout-${m}:record`));
  const order = rebuildSteps(end.data).filter(
    (step) => !(target?.reused && step !== 'resolve' && !step.startsWith('rollout-')),
  );
  const where = at !== undefined ? `rollout at ${at}` : (order.find((s) => !Object.hasOwn(saved, s)) ?? end.step);
  let message: string;
  if (end.how === 'failed' || end.how === 'refused') message = end.cause;
  else {
    const verb = end.how === 'stalled' ? 'failed' : 'stopped';
    message = `rebuild-ami ${verb} at ${where}: ${end.cause}`;
  }
  const registered = saved.register as { imageId?: unknown } | undefined;
  if (typeof registered?.imageId === 'string' && !message.includes(registered.imageId)) {
    message += `; ${registered.imageId} is registered and stays`;
  }
  const trail = rebuildTrail(deps, end.log);
  if (trail !== undefined) {
    const outcome = end.how === 'cancelled' ? 'cancelled' : end.how === 'removed' ? 'removed' : 'failed';
    await end.once('audit', () => auditRebuild(trail, end, new Date(), `${outcome}: ${message}`));
  }
  return { message };
}

/** The build job's id: derived from this job's (which may hold `:`), so a retry finds it. */
export function buildJobId(jobId: string): string {
  return `${AMI_BUILD}-b${createHash('sha256').update(jobId).digest('hex').slice(0, 32)}`;
}
