// Every job type the workers run. Adding one: a file in this folder and a line here.
import type { Redis } from 'ioredis';
import type { FleetRegistry } from '../../infra/registry.js';
import type { AnyJobType } from '../engine/job-type.js';
import { healthSweep } from './health-sweep.js';

export interface JobTypeDeps {
  redis: Redis;
  registry: () => Promise<FleetRegistry>;
  opsChannelId?: string;
}

export function jobTypes(deps: JobTypeDeps): AnyJobType[] {
  return [
    healthSweep({
      redis: deps.redis,
      fleet: async () => Object.keys(await deps.registry()),
      opsChannelId: deps.opsChannelId,
    }),
  ];
}
