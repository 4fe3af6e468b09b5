// A worker in its own process, for the kill-and-resume tests: the production worker with
// the test job types. `node worker-process.js '<json: {port, keys: {id: pem}}>'`.
import { createPublicKey } from 'node:crypto';
import { Redis } from 'ioredis';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { createLogger } from '../../lib/log.js';
import { fastSettings, setEffectsClient, testStepSigner, testTypes } from './jobs.js';

const config = JSON.parse(process.argv[2] ?? '{}') as { port: number; keys: Record<string, string> };
const connection = { host: '127.0.0.1', port: config.port, maxRetriesPerRequest: null };
const redis = new Redis(connection);
setEffectsClient(redis);
const w = startWorker(
  FLEET_QUEUE,
  {
    connection,
    redis,
    types: new JobTypes(testTypes),
    publicKey: async (id) => (config.keys[id] ? createPublicKey(config.keys[id] as string) : null),
    policy: { policy: {}, redis, agentRequestsPerHour: 3 },
    log: createLogger('silent'),
    stepSigner: testStepSigner,
  },
  fastSettings,
);
await w.worker.waitUntilReady();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void w.close().then(() => process.exit(0));
});
