// What the image jobs (rebuild-ami, ami-build, ami-prune) act on, given by the process that
// runs them: the worker (cli/ami-deps.ts), `ami rebuild --local`, the sandbox (a stand-in
// build and a fixed set of refs), tests.
import type { RedisOptions } from 'ioredis';
import type { Architecture, BootMode, Cloud } from '../cloud/types.js';
import type { Signer } from '../engine/queues.js';
import type { ScheduleDef } from '../engine/schedulers.js';
import type { RevisionResolver } from '../github/revision.js';
import type { ImageBuilder } from './builder.js';

const MINUTE = 60_000;

export interface AmiWaits {
  /** Between two looks at the build job, the image's state, the fleet lock. */
  pollMs: number;
  /** Between two looks at the import task (the original: 30 s). */
  importPollMs: number;
  importTimeoutMs: number;
  buildTimeoutMs: number;
  availableTimeoutMs: number;
  /** How long a rollout waits for a deploy or another rollout to let go of the fleet. */
  fleetLockTimeoutMs: number;
}

export const defaultAmiWaits: AmiWaits = {
  pollMs: 10_000,
  importPollMs: 30_000,
  // The original polled 120 × 30 s; an import of a few GiB takes 10–40 min.
  importTimeoutMs: 90 * MINUTE,
  buildTimeoutMs: 180 * MINUTE,
  availableTimeoutMs: 30 * MINUTE,
  fleetLockTimeoutMs: 120 * MINUTE,
};

export interface AmiDeps {
  cloud: Cloud;
  /** The base stack's bucket: raw images go under images/. */
  bucket: string;
  resolver: RevisionResolver;
  /** Builds here: on a builder member's worker (ami-build), or in-process for --local. */
  builder: ImageBuilder;
  /** clawdinator:built-by of what this process builds: its host's name, or the machine's. */
  builtBy: string;
  /** The host whose worker runs the orchestrating job: never its builder, last in a rollout. */
  hostName?: string;
  /**
   * How the orchestrating job asks a peer to build: its host queue, the job signed with the
   * workers' own key (key id `schedule`). Absent (`--local`): the image is built in-process.
   */
  hostJobs?: { connection: RedisOptions; signer: Signer };
  /** Images prune keeps (the newest, plus every one in use). */
  keep: number;
  bootMode: BootMode;
  architecture: Architecture;
  waits?: Partial<AmiWaits>;
  /** Names the image (its timestamp); the clock otherwise. */
  now?: () => Date;
}

/**
 * The image schedules of the fleet queue, beside FLEET_SCHEDULES: the weekly prune always,
 * the rebuild only when a cron is set (off by default, as the original's CI cron was opt-in).
 */
export function amiSchedules(config: { amiPruneCron: string; amiRebuildCron?: string }): ScheduleDef[] {
  const defs: ScheduleDef[] = [
    { id: 'clawdinator-ami-prune', type: 'ami-prune', pattern: config.amiPruneCron, data: {} },
  ];
  if (config.amiRebuildCron !== undefined) {
    defs.push({
      id: 'clawdinator-ami-rebuild',
      type: 'rebuild-ami',
      pattern: config.amiRebuildCron,
      data: { rollout: 'none', build: 'peer' },
    });
  }
  return defs;
}
