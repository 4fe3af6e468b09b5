// The worker side of the job-start bench, in its own process as on a host: the gateway
// that adds a job and the worker that starts it are different processes (often different
// hosts), so what one does after its add (the journal write, its own events) runs beside
// the other's pickup, not before it. Reports each start and each completion to the bench
// over IPC, with the start's time on the machine's monotonic clock (process.hrtime, one
// clock for every process), so the bench subtracts its own add time from it.
// `node start-worker.js '<json: {port, side: "project" | "floor", publicKeyPem, settings}>'`.
import { createPublicKey } from 'node:crypto';
import type { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { WorkerSettings } from '../../jobs/engine/worker.js';
import { floorWorker, projectWorker, setOnStart } from './jobs.js';

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

// The same workers as the in-process rows (jobs.ts): the project's, or the floor's.
const running = config.side === 'project' ? projectWorker(connection, redis, publicKey, config.settings) : undefined;
const worker: Worker = running?.worker ?? floorWorker(connection, redis, publicKey, config.settings);
const close = () => (running ?? worker).close();
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
