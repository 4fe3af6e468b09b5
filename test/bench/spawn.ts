import { Queue } from 'bullmq';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';
import { simFleet } from '../support/fleet.js';
import { keyPair, testStepSigner } from '../support/jobs.js';
import { startRedis } from '../support/redis.js';
import type { Row } from './table.js';

export async function spawnOverhead(): Promise<Row[]> {
  const server = await startRedis();
  const redis = server.client();
  const conn = { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null };
  const { cloud, registry, memory, fleet, close } = simFleet(redis);
  const types = new JobTypes(
    jobTypes({ redis, registry: async () => (await registry.read()).registry, memory, fleet }),
  );
  const key = keyPair();
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection: conn,
      redis: server.client(),
      types,
      publicKey: async () => key.publicKey,
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
    },
    {
      concurrency: 4,
      lockDurationMs: 30_000,
      stalledIntervalMs: 30_000,
      maxStalledCount: 1,
      maxAgeSeconds: 300,
      deferMs: 1000,
    },
  );
  const enqueuer = new Enqueuer(conn, server.client(), types, { keyId: 'operator:bench', key: key.privateKey });
  const queue = new Queue(FLEET_QUEUE, { connection: conn });
  cloud.resetCalls();
  const t = performance.now();
  const { jobId } = await enqueuer.enqueue({
    type: 'spawn',
    data: { name: 'clawdinator-3' },
    principal: { kind: 'cli', operator: 'bench' },
    requestId: 'bench-1',
  });
  let state = await queue.getJobState(jobId);
  while (state !== 'completed' && state !== 'failed') {
    await new Promise((r) => setTimeout(r, 5));
    state = await queue.getJobState(jobId);
  }
  const wall = performance.now() - t;
  const ops = cloud.calls.byOperation;
  const total = cloud.calls.ec2 + cloud.calls.ssm + cloud.calls.s3 + cloud.calls.secrets + cloud.calls.iam;
  // The bundle is several objects (config, workspace templates, manifest): each put once; the
  // simulated terraform writes the member's state once, after its apply.
  const bundleObjects = (await cloud.listKeys(fleet.bucket, 'bootstrap/clawdinator-3/')).length;
  const createOps = ['RunInstances', 'CreateRole', 'CreateInstanceProfile', 'CreateSecret', 'PutObject'];
  const creates = `${createOps.map((op) => `${op} ${ops[op] ?? 0}`).join(', ')} (${bundleObjects} bundle objects + the state)`;
  const createdOnce =
    createOps.slice(0, 4).every((op) => (ops[op] ?? 0) === 1) && (ops.PutObject ?? 0) === bundleObjects + 1;
  await worker.close();
  await enqueuer.close();
  await queue.close();
  close();
  await server.stop();
  return [
    {
      what: 'spawn orchestration, request → online, simulated cloud with zero delays (includes the real synth of the instance stack)',
      project: `${state === 'completed' ? '' : 'FAILED '}${(wall / 1000).toFixed(2)} s; ${total} cloud calls (EC2 ${cloud.calls.ec2}, SSM ${cloud.calls.ssm}, S3 ${cloud.calls.s3}, secrets ${cloud.calls.secrets}, IAM ${cloud.calls.iam}); creates: ${creates}`,
      floor: '—',
      ratio: null,
      budget: '≤ 2 s; each create call exactly once (one PutObject per bundle object, one for the state)',
      ok: state === 'completed' && wall <= 2000 && createdOnce,
    },
  ];
}
