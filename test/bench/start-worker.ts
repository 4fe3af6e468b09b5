// The worker side of the job-start bench, in its own process as on a host: the gateway
// that adds a job and the worker that starts it are different processes (often different
// hosts), so what one does after its add (the journal write, its own events) runs beside
// the other's pickup, not before it. Reports each start and each completion to the bench
// over IPC, with the start's time on the machine's monotonic clock (process.hrtime, one
// clock for every process), so the bench subtracts its own add time from it.
// `node start-worker.js '<json: {port, side: "project" | "floor", publicKeyPem, settings}>'`.
import { createPublicKey } from 'node:crypto';
import { type Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { startWorker, type WorkerSettings } from '../../jobs/engine/worker.js';
import { verifyPayload } from '../../jobs/signing.js';
import { createLogger } from '../../lib/log.js';
import { policy } from '../support/bot.js';
import { testStepSigner } from '../support/jobs.js';
import { BARE_QUEUE, benchStart, bullmqOptions, setOnStart } from './jobs.js';

const config = JSON.parse(process.argv[2] ?? '{}') as {
  port: number;
  side: 'project' | 'floor';
  publicKeyPem: string;
  settings: WorkerSettings;
};
const send = (message: object) => process.send?.(message);
const connection = { host: '127.0.0.1', port: config.port, maxRetriesPerRequest: null };
const publicKey = createPublicKey(config.publicKeyPem);
const redis = new Redis(connection);
setOnStart((n) => send({ started: n, at: process.hrtime.bigint().toString() }));

let worker: Worker;
let close: () => Promise<void>;
if (config.side === 'project') {
  const w = startWorker(
    FLEET_QUEUE,
    {
      connection,
      redis,
      types: new JobTypes([benchStart]),
      publicKey: async (id) => (id === 'gateway' ? publicKey : null),
      policy: { policy, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
    },
    config.settings,
  );
  worker = w.worker;
  close = () => w.close();
} else {
  // The floor: BullMQ plus the least the trust boundary costs (DESIGN.md): one verify and one
  // SET NX (the replay check) before the start is recorded.
  worker = new Worker(
    BARE_QUEUE,
    async (job: Job<{ signed: { data: { n: number }; nonce: string }; signature: string }>) => {
      const { signed, signature } = job.data;
      if (!verifyPayload(signed, signature, publicKey)) throw new Error('bad signature');
      await redis.set(`bench:nonce:${signed.nonce}`, job.id as string, 'EX', 600, 'NX');
      send({ started: signed.data.n, at: process.hrtime.bigint().toString() });
    },
    bullmqOptions(connection, config.settings),
  );
  close = () => worker.close();
}
worker.on('completed', (job: Job) =>
  send({ completed: (job.data as { signed: { data: { n: number } } }).signed.data.n }),
);
worker.on('failed', (_job, err) => send({ failed: err.message }));
await worker.waitUntilReady();
send({ ready: true });
process.on('disconnect', () => {
  void close()
    .then(() => redis.quit())
    .then(() => process.exit(0));
});
