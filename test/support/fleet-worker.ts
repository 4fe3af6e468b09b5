// A fleet worker in a process of its own (fleet-worker-process.ts), for the tests that kill
// one mid-job and let another resume it: started, waited for until it is ready, and killed by
// the test's clean-up.
import { type ChildProcess, spawn } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../jobs/engine/queues.js';
import { jobTypes } from '../../jobs/types/index.js';
import { projectPath } from '../../lib/paths.js';
import { SIM_BUCKET, type SimFleet } from './fleet.js';
import type { FleetWorkerConfig } from './fleet-worker-process.js';
import type { TestRedis } from './redis.js';

export interface FleetWorkerWorld {
  server: TestRedis;
  sim: SimFleet;
  /** The simulated cloud served over loopback (sim-server.ts), shared by every process. */
  simUrl: string;
  /** The operator whose signed requests the worker admits (`operator:ops`). */
  operator: KeyObject;
  /** Where the worker's kill goes, run after the test. */
  cleanup: (() => Promise<void> | void)[];
}

export async function startFleetWorker(
  w: FleetWorkerWorld,
  extra: Pick<FleetWorkerConfig, 'ami' | 'lane' | 'settings'> = {},
): Promise<ChildProcess> {
  const config: FleetWorkerConfig = {
    port: w.server.port,
    simUrl: w.simUrl,
    dir: w.sim.dir,
    bucket: SIM_BUCKET,
    keys: { 'operator:ops': w.operator.export({ type: 'spki', format: 'pem' }).toString() },
    ...extra,
  };
  const child = spawn(
    process.execPath,
    [projectPath('dist/test/support/fleet-worker-process.js'), JSON.stringify(config)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  w.cleanup.push(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`fleet worker exited ${c}`)));
  });
  return child;
}

/**
 * The operator's side of these tests: the production job types over the fleet's registry, an
 * Enqueuer signing as `operator:ops` with `key`, and the fleet queue; closed by the clean-up.
 */
export function operatorClient(w: Pick<FleetWorkerWorld, 'server' | 'sim' | 'cleanup'>, redis: Redis, key: KeyObject) {
  const connection = { host: '127.0.0.1', port: w.server.port, maxRetriesPerRequest: null };
  const types = new JobTypes(jobTypes({ redis, registry: async () => (await w.sim.registry.read()).registry }));
  const enqueuer = new Enqueuer(connection, w.server.client(), types, { keyId: 'operator:ops', key });
  w.cleanup.push(() => enqueuer.close());
  const queue = new Queue(FLEET_QUEUE, { connection });
  w.cleanup.push(() => queue.close());
  return { types, enqueuer, queue };
}
