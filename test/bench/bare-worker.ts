// The floor of the worker idle-RSS bench: a bare BullMQ Worker waiting on an empty queue.
// `node bare-worker.js '<json: {port, options: {concurrency, lockDuration, …}}>'`.
import { Worker, type WorkerOptions } from 'bullmq';

const config = JSON.parse(process.argv[2] ?? '{}') as { port: number; options: Partial<WorkerOptions> };
const worker = new Worker('bench-idle', async () => {}, {
  ...config.options,
  connection: { host: '127.0.0.1', port: config.port, maxRetriesPerRequest: null },
});
await worker.waitUntilReady();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
