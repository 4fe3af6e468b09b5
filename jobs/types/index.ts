// Every job type the workers run. Adding one: a file in this folder and a line here.
import type { Redis } from 'ioredis';
import type { FleetRegistry } from '../../infra/registry.js';
import type { MemoryStore } from '../../memory/store.js';
import type { AnyJobType } from '../engine/job-type.js';
import { healthSweep } from './health-sweep.js';
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
  /**
   * What lifecycle jobs act on. Processes that only enqueue or inspect jobs (the gateway,
   * `clawdinator jobs`) leave it out: the types are still known, their schemas checked.
   */
  fleet?: FleetDeps;
}

export function jobTypes(deps: JobTypeDeps): AnyJobType[] {
  return [
    healthSweep({
      redis: deps.redis,
      fleet: async () => Object.keys(await deps.registry()),
      cloud: deps.fleet?.cloud,
      opsChannelId: deps.opsChannelId,
    }),
    spawnJob({ redis: deps.redis, memory: deps.memory, fleet: deps.fleet, opsChannelId: deps.opsChannelId }),
    retireJob({
      redis: deps.redis,
      memory: deps.memory,
      fleet: deps.fleet,
      opsChannelId: deps.opsChannelId,
      agentConfirmSeconds: deps.agentConfirmSeconds,
    }),
    replaceJob({
      redis: deps.redis,
      memory: deps.memory,
      fleet: deps.fleet,
      opsChannelId: deps.opsChannelId,
      agentConfirmSeconds: deps.agentConfirmSeconds,
    }),
    strayCleanupJob({ redis: deps.redis, memory: deps.memory, fleet: deps.fleet, opsChannelId: deps.opsChannelId }),
  ];
}
