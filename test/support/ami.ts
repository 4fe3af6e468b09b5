// The image pipeline over a simulated fleet (test/support/fleet.ts): AmiDeps on the fleet's
// simulated cloud with revs resolved among fixed refs and the sandbox's stand-in build, the
// members' host-queue workers (where a rebuild's build job runs), and a way to run a rebuild.
import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { StandInImageBuilder } from '../../jobs/ami/builder.js';
import type { AmiDeps } from '../../jobs/ami/deps.js';
import type { Envelope, Principal } from '../../jobs/engine/envelope.js';
import { hostQueue } from '../../jobs/engine/keys.js';
import { staticResolver } from '../../jobs/github/revision.js';
import { createLogger } from '../../lib/log.js';
import { SIM_BUCKET, type SimFleet } from './fleet.js';
import { lifecycleSettings, startWorker, testStepSigner } from './jobs.js';
import type { Lifecycle } from './lifecycle.js';
import type { TestRedis } from './redis.js';

export const REPO = 'openclaw/clawdinators';
export const MAIN_SHA = '5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5';
export const V2_SHA = '0ddba11c1a3d5a4d0b0e0010ddba11c1a3d5a4d0';

export function simAmiDeps(server: TestRedis, sim: SimFleet, overrides: Partial<AmiDeps> = {}): AmiDeps {
  return {
    cloud: sim.cloud,
    bucket: SIM_BUCKET,
    resolver: staticResolver({ repo: REPO, branch: 'main', refs: { main: MAIN_SHA, v2: V2_SHA } }),
    builder: new StandInImageBuilder(join(sim.dir, 'images'), sim.cloud.faults),
    builtBy: 'clawdinator-1',
    hostName: 'clawdinator-1',
    hostJobs: {
      connection: { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null },
      signer: testStepSigner,
    },
    keep: 5,
    bootMode: 'legacy-bios',
    architecture: 'x86_64',
    waits: { pollMs: 50, importPollMs: 50 },
    ...overrides,
  };
}

/** Each member's own worker on its host queue, as on the fleet: it runs the builds asked of it. */
export function hostWorkers(server: TestRedis, redis: Redis, h: Pick<Lifecycle, 'types'>, hosts: string[]) {
  return workersOn(server, redis, h, hosts.map(hostQueue));
}

/** Workers on these queues that admit what the workers' own key signed (build jobs, schedules). */
export function workersOn(server: TestRedis, redis: Redis, h: Pick<Lifecycle, 'types'>, queues: string[]) {
  const workersKey = createPublicKey(testStepSigner.key);
  const workers = queues.map((queue) =>
    startWorker(
      queue,
      {
        connection: { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null },
        redis: server.client(),
        types: h.types,
        // Build jobs are signed with the workers' own key.
        publicKey: async (id) => (id === 'schedule' ? workersKey : null),
        policy: { policy: {}, redis, agentRequestsPerHour: 3 },
        log: createLogger('silent'),
        stepSigner: testStepSigner,
      },
      lifecycleSettings,
    ),
  );
  return {
    async close() {
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}

let serial = 0;

/** Queues a rebuild as `principal` (an operator by default) and waits until it completed or failed. */
export async function rebuild(
  h: Pick<Lifecycle, 'enqueuer' | 'finished'>,
  data: Record<string, unknown>,
  principal: Principal = { kind: 'cli', operator: 'ops' },
): Promise<Job<Envelope>> {
  const { jobId } = await h.enqueuer('operator').enqueue({
    type: 'rebuild-ami',
    data,
    principal,
    requestId: `req-rebuild-${process.pid}-${++serial}`,
  });
  return h.finished(jobId);
}
