// The fleet queue's worker and an operator's Enqueuer over a simulated fleet, for the bench
// rows that run a whole job (spawn, rebuild-ami, deploy): as the lifecycle harness makes them
// (test/support/lifecycle.ts), which registers vitest hooks and so cannot run here.
import type { Job } from 'bullmq';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Envelope } from '../../jobs/engine/envelope.js';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { type JobTypeDeps, jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';
import type { SimFleet } from '../support/fleet.js';
import { keyPair, lifecycleSettings, testStepSigner } from '../support/jobs.js';
import type { TestRedis } from '../support/redis.js';

/** `extra`: what the job types act on beyond the fleet (the image pipeline, the fast lane). */
export async function benchFleet(
  server: TestRedis,
  redis: Redis,
  sim: SimFleet,
  extra: Pick<JobTypeDeps, 'ami' | 'lane'> = {},
) {
  const connection = { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null };
  const types = new JobTypes(
    jobTypes({
      redis,
      registry: async () => (await sim.registry.read()).registry,
      memory: sim.memory,
      fleet: sim.fleet,
      ...extra,
    }),
  );
  const operator = keyPair();
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection,
      redis: server.client(),
      types,
      publicKey: async (id) => (id === 'operator:ops' ? operator.publicKey : null),
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
    },
    lifecycleSettings,
  );
  const enqueuer = new Enqueuer(connection, server.client(), types, {
    keyId: 'operator:ops',
    key: operator.privateKey,
  });
  const queue = new Queue(FLEET_QUEUE, { connection });
  await queue.waitUntilReady();
  return {
    types,
    enqueuer: () => enqueuer,
    /** The job once it completed or failed (looked at every 5 ms). */
    async finished(jobId: string): Promise<Job<Envelope>> {
      for (;;) {
        const state = await queue.getJobState(jobId);
        if (state === 'completed' || state === 'failed') return (await queue.getJob(jobId)) as Job<Envelope>;
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    async close() {
      await queue.close();
      await enqueuer.close();
      await worker.close();
    },
  };
}
