// The project's side of the worker idle-RSS bench until `clawdinator worker` exists (then the
// bench runs `node dist/cli/main.js worker` instead): the production startWorker as a worker
// process runs it — its own Redis client, pino at info on stderr, public keys parsed from PEM,
// the real registry of job types (jobs/types/index.ts) over an empty fleet.
// `node engine-worker.js '<json: {port, keys: {keyId: pem}, settings}>'`.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { Redis } from 'ioredis';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { startWorker, type WorkerSettings } from '../../jobs/engine/worker.js';
import { parsePublicKey } from '../../jobs/signing.js';
import { jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';

const config = JSON.parse(process.argv[2] ?? '{}') as {
  port: number;
  keys: Record<string, string>;
  settings: WorkerSettings;
};
const connection = { host: '127.0.0.1', port: config.port, maxRetriesPerRequest: null };
const keys = new Map<string, KeyObject>();
for (const [id, pem] of Object.entries(config.keys)) {
  const key = parsePublicKey(pem);
  if (key !== null) keys.set(id, key);
}
const redis = new Redis(connection);
const w = startWorker(
  FLEET_QUEUE,
  {
    connection,
    redis,
    types: new JobTypes(jobTypes({ redis, registry: async () => ({}) })),
    publicKey: async (id) => keys.get(id) ?? null,
    policy: { policy: {}, redis, agentRequestsPerHour: 3 },
    log: createLogger('info'),
    // As `clawdinator worker` holds one: the workers' key signs saved step results.
    stepSigner: { keyId: 'schedule', key: generateKeyPairSync('ed25519').privateKey },
  },
  config.settings,
);
await w.worker.waitUntilReady();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void w
    .close()
    .then(() => redis.quit())
    .then(() => process.exit(0));
});
