// Bench row of the spawn orchestration: request to "online" in the simulated cloud with zero
// delays (real worker, real Redis, real synth of the instance stack), and the calls it made.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { createSimCloud, instantSimTimings } from '../../jobs/cloud/sim.js';
import { SimDeployer } from '../../jobs/deploy/sim.js';
import { FLEET_QUEUE, keys } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import { jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';
import { MemoryStore } from '../../memory/store.js';
import { tempDir } from '../support/cli.js';
import { keyPair } from '../support/jobs.js';
import { startRedis } from '../support/redis.js';
import type { Row } from './table.js';

const AMI = 'ami-00000000000000a11';
const BUCKET = 'clawdinator-bench';

export async function spawnOverhead(): Promise<Row[]> {
  const server = await startRedis();
  const redis = server.client();
  const conn = { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null };
  const dir = tempDir('bench-spawn-');
  const entry = {
    host: 'clawdinator-1',
    instanceType: 't3.large',
    bootstrapPrefix: 'bootstrap/clawdinator-1',
    discordTokenSecret: 'clawdinator/discord-token/clawdinator-1',
    ami: AMI,
  };
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify({ 'clawdinator-1': entry }));
  mkdirSync(join(dir, 'memory'));
  const registry = new FileRegistryStore(join(dir, 'fleet.json'));
  const cloud = createSimCloud({
    timings: instantSimTimings,
    secrets: { 'clawdinator/discord-token/clawdinator-3': 't' },
    amis: [{ name: 'clawdinator-nixos', imageId: AMI }],
    fleet: [{ name: 'clawdinator-1' }],
    buckets: [BUCKET],
  });
  cloud.onHostOnline((host) => {
    const at = Date.now();
    void redis.set(
      keys.heartbeat(host.name),
      JSON.stringify({
        host: host.name,
        instanceId: host.instanceId,
        version: 'b',
        revision: 'r',
        startedAt: at,
        activeJobs: 0,
        at,
      }),
      'EX',
      60,
    );
  });
  const settings = {
    awsRegion: 'eu-central-1',
    deployerRoleArn: undefined,
    vpcId: undefined,
    subnetIds: [],
    sshCidrs: [],
    rootVolumeGb: 40,
    redisNodeType: 'cache.t4g.micro',
  };
  const fleet = {
    cloud,
    deployer: new SimDeployer({ cloud, registry, settings, outdir: join(dir, 'cdktf.out'), bucket: BUCKET }),
    registryStore: registry,
    bucket: BUCKET,
    region: 'eu-central-1',
    fleetMaxSize: 5,
    spawnsPerHour: 3,
    defaultInstanceType: 't3.large',
    waits: { pollMs: 20 },
  };
  const memory = new MemoryStore({ root: join(dir, 'memory'), maxBytes: 1 << 20, waitSeconds: 5 });
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
  const creates = ['RunInstances', 'CreateSecret', 'PutObject'].map((op) => `${op} ${ops[op] ?? 0}`).join(', ');
  const total = cloud.calls.ec2 + cloud.calls.ssm + cloud.calls.s3 + cloud.calls.secrets;
  const createdOnce = (ops.RunInstances ?? 0) === 1 && (ops.CreateSecret ?? 0) <= 1;
  await worker.close();
  await enqueuer.close();
  await queue.close();
  cloud.close();
  await server.stop();
  return [
    {
      what: 'spawn orchestration, request → online, simulated cloud with zero delays (includes the real synth of the instance stack)',
      project: `${state === 'completed' ? '' : 'FAILED '}${(wall / 1000).toFixed(2)} s; ${total} cloud calls (EC2 ${cloud.calls.ec2}, SSM ${cloud.calls.ssm}, S3 ${cloud.calls.s3}, secrets ${cloud.calls.secrets}); creates: ${creates}`,
      floor: '—',
      ratio: null,
      budget: '≤ 2 s; each create call exactly once',
      ok: state === 'completed' && wall <= 2000 && createdOnce,
    },
  ];
}
