// Every job type the workers run. Adding one: a file in this folder and a line here.
import type { Redis } from 'ioredis';
import type { FleetRegistry } from '../../infra/registry.js';
import type { MemoryStore } from '../../memory/store.js';
import type { AmiDeps } from '../ami/deps.js';
import type { AuditTrail } from '../audit.js';
import type { AnyJobType } from '../engine/job-type.js';
import type { FastLaneDeps } from '../fastlane/deps.js';
import type { GitHubJobDeps } from '../github/setup.js';
import { amiBuildJob } from './ami-build.js';
import { amiPruneJob } from './ami-prune.js';
import { deployJob } from './deploy.js';
import { githubSyncJob } from './github-sync.js';
import { githubTokenJob } from './github-token.js';
import { healthSweep } from './health-sweep.js';
import { rebuildAmiJob } from './rebuild-ami.js';
import { replaceJob } from './replace.js';
import { retireJob } from './retire.js';
import { type FleetDeps, spawnJob } from './spawn.js';
import { strayCleanupJob } from './stray-cleanup.js';

export interface JobTypeDeps {
  redis: Redis;
  registry: () => Promise<FleetRegistry>;
  opsChannelId?: string;
  /** How long an agent's retire or replace waits for a human (seconds). */
  agentConfirmSeconds?: number;
  /** The shared memory: ops.md and the audit. Lifecycle jobs need it. */
  memory?: MemoryStore;
  /** The worker's audit trail (jobs/audit.ts); default: the journal and the memory copy. */
  audit?: AuditTrail;
  /**
   * What lifecycle jobs act on. Processes that only enqueue or inspect jobs (the gateway,
   * `clawdinator jobs`) leave it out: the types are still known, their schemas checked.
   */
  fleet?: FleetDeps;
  /**
   * The instance types a spawn may use (CLAWDINATOR_INSTANCE_TYPES): part of the spawn's
   * schema, so every process that checks a spawn (gateway, worker) must pass the setting.
   */
  instanceTypes?: readonly string[];
  /** The org sync and this host's agent token; absent without a GitHub App. */
  github?: GitHubJobDeps;
  /** What the image jobs act on (rebuild-ami, ami-build, ami-prune); schema-only without it. */
  ami?: AmiDeps;
  /** What the fast lane acts on (deploy, the self-update); schema-only without it. */
  lane?: FastLaneDeps;
}

export function jobTypes(deps: JobTypeDeps): AnyJobType[] {
  return [
    healthSweep({
      redis: deps.redis,
      fleet: async () => Object.keys(await deps.registry()),
      cloud: deps.fleet?.cloud,
      opsChannelId: deps.opsChannelId,
    }),
    spawnJob({
      redis: deps.redis,
      memory: deps.memory,
      audit: deps.audit,
      fleet: deps.fleet,
      instanceTypes: deps.instanceTypes,
      opsChannelId: deps.opsChannelId,
    }),
    retireJob({
      redis: deps.redis,
      memory: deps.memory,
      audit: deps.audit,
      fleet: deps.fleet,
      opsChannelId: deps.opsChannelId,
      agentConfirmSeconds: deps.agentConfirmSeconds,
    }),
    replaceJob({
      redis: deps.redis,
      memory: deps.memory,
      audit: deps.audit,
      fleet: deps.fleet,
      opsChannelId: deps.opsChannelId,
      agentConfirmSeconds: deps.agentConfirmSeconds,
    }),
    strayCleanupJob({
      redis: deps.redis,
      memory: deps.memory,
      audit: deps.audit,
      fleet: deps.fleet,
      opsChannelId: deps.opsChannelId,
    }),
    githubSyncJob({ github: deps.github }),
    githubTokenJob({ github: deps.github }),
    rebuildAmiJob({
      redis: deps.redis,
      registry: deps.registry,
      ami: deps.ami,
      fleet: deps.fleet,
      memory: deps.memory,
      audit: deps.audit,
      opsChannelId: deps.opsChannelId,
    }),
    amiBuildJob({ ami: deps.ami }),
    amiPruneJob({ redis: deps.redis, registry: deps.registry, ami: deps.ami, opsChannelId: deps.opsChannelId }),
    deployJob({
      redis: deps.redis,
      registry: deps.registry,
      lane: deps.lane,
      memory: deps.memory,
      audit: deps.audit,
      opsChannelId: deps.opsChannelId,
    }),
  ];
}
