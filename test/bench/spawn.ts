import { simFleet } from '../support/fleet.js';
import { startRedis } from '../support/redis.js';
import { benchFleet } from './harness.js';
import type { Row } from './table.js';

export async function spawnOverhead(): Promise<Row[]> {
  const server = await startRedis();
  const redis = server.client();
  const sim = simFleet(redis);
  const { cloud, fleet } = sim;
  const h = await benchFleet(server, redis, sim);
  cloud.resetCalls();
  const t = performance.now();
  const { jobId } = await h.enqueuer().enqueue({
    type: 'spawn',
    data: { name: 'clawdinator-3' },
    principal: { kind: 'cli', operator: 'ops' },
    requestId: 'bench-1',
  });
  const job = await h.finished(jobId);
  const done = job.failedReason === undefined;
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
  await h.close();
  sim.close();
  await server.stop();
  return [
    {
      what: 'spawn orchestration, request → online, simulated cloud with zero delays (includes the real synth of the instance stack)',
      project: `${done ? '' : `FAILED (${job.failedReason}) `}${(wall / 1000).toFixed(2)} s; ${total} cloud calls (EC2 ${cloud.calls.ec2}, SSM ${cloud.calls.ssm}, S3 ${cloud.calls.s3}, secrets ${cloud.calls.secrets}, IAM ${cloud.calls.iam}); creates: ${creates}`,
      floor: '—',
      ratio: null,
      budget: '≤ 2 s; each create call exactly once (one PutObject per bundle object, one for the state)',
      ok: done && wall <= 2000 && createdOnce,
    },
  ];
}
