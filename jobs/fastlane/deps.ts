// What the fast lane (the deploy job, the scheduled self-update) acts on, given by the process
// that runs it: the worker (cli/fastlane-deps.ts), the sandbox (the simulated cloud, the
// sandbox's refs), tests.
import type { Redis } from 'ioredis';
import type { Cloud } from '../cloud/types.js';
import type { ScheduleDef } from '../engine/schedulers.js';
import type { RevisionResolver } from '../github/revision.js';

const MINUTE = 60_000;

export interface DeployWaits {
  /** Between two looks at a host's switch, its heartbeat, a peer taking over. */
  pollMs: number;
  /** How long a host's switch may take (nix builds, then the host's own health check). */
  switchTimeoutMs: number;
  /** After the switch: how long until the member's heartbeat must report the revision. */
  verifyTimeoutMs: number;
  /**
   * Never deploy yourself: how long the job leaves the switch of its own worker's host to a
   * peer's worker before it switches it itself (a peer that is alive but never takes it must
   * not stall the fleet's deploy forever).
   */
  handoffMs: number;
}

export const defaultDeployWaits: DeployWaits = {
  pollMs: 15_000,
  switchTimeoutMs: 30 * MINUTE,
  verifyTimeoutMs: 5 * MINUTE,
  handoffMs: 10 * MINUTE,
};

/** A read-only token for root's nix to fetch the project's flake with; null: none is needed. */
export interface DeployTokens {
  mint(): Promise<string | null>;
}

export interface FastLaneDeps {
  cloud: Pick<Cloud, 'listFleetInstances' | 'sendCommand' | 'waitForInvocation' | 'putSecret' | 'deleteSecret'>;
  resolver: RevisionResolver;
  /** This worker's host: never switched by itself while a peer's worker can. */
  hostName?: string;
  /** Absent: the flake is public, nix fetches it without a token. */
  tokens?: DeployTokens;
  waits?: Partial<DeployWaits>;
}

/** Where a host's switch finds the token for its flake: its own secrets, readable by it alone. */
export function deployTokenSecret(name: string): string {
  return `clawdinator/host/${name}/deploy-token`;
}

export const SELF_UPDATE_SCHEDULER = 'clawdinator-self-update';

/**
 * The fleet queue's self-update: a deploy of the branch head when the fleet runs something
 * else. Only with a cron from the settings (off by default, as the original's timer was in
 * production); one scheduler for the fleet, however many workers upsert it.
 */
export function fastLaneSchedules(config: { selfUpdateCron?: string }): ScheduleDef[] {
  if (config.selfUpdateCron === undefined) return [];
  return [{ id: SELF_UPDATE_SCHEDULER, type: 'deploy', pattern: config.selfUpdateCron, data: { target: 'all' } }];
}

// ── the last deploy, for /status and the self-update ────────────────────────────────────

export const LAST_DEPLOY_KEY = 'clawdinator:deploy:last';

/**
 * What the last deploy that ran to its end did. Shown by /status (members that differ from
 * it are flagged) and read by the self-update (it does not retry a revision that failed).
 * Inert text: a forged value can mislabel /status or delay a self-update, never start one.
 */
export interface LastDeploy {
  sha: string;
  ok: boolean;
  at: string;
  jobId: string;
  target: string;
}

export async function writeLastDeploy(redis: Redis, record: LastDeploy): Promise<void> {
  await redis.set(LAST_DEPLOY_KEY, JSON.stringify(record));
}

export function parseLastDeploy(raw: string | null): LastDeploy | null {
  if (raw === null) return null;
  try {
    const v = JSON.parse(raw) as Partial<Record<keyof LastDeploy, unknown>>;
    if (typeof v.sha !== 'string' || !/^[0-9a-f]{40}$/.test(v.sha) || typeof v.ok !== 'boolean') return null;
    return {
      sha: v.sha,
      ok: v.ok,
      at: typeof v.at === 'string' ? v.at.slice(0, 40) : '',
      jobId: typeof v.jobId === 'string' ? v.jobId.slice(0, 120) : '',
      target: typeof v.target === 'string' ? v.target.slice(0, 60) : '',
    };
  } catch {
    return null;
  }
}
