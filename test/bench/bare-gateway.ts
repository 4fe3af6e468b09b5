// The floor of the gateway benches: a bare discord.js client that only defers.
// `node bare-gateway.js <api-url> <token>`; with a third argument "idle" it only logs in, and
// with a fourth (a redis:// URL) it also holds what a gateway joined to the fleet needs at
// least from BullMQ: a Queue and a QueueEvents on the fleet queue.
import { Queue, QueueEvents } from 'bullmq';
import { Client, Events, GatewayIntentBits } from 'discord.js';

const [api, token, mode, redisUrl] = process.argv.slice(2);
const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api } });
if (mode !== 'idle') {
  client.on(Events.InteractionCreate, (interaction) => {
    if (interaction.isRepliable()) void interaction.deferReply().catch(() => {});
  });
}
const closers: (() => Promise<void>)[] = [];
if (redisUrl !== undefined) {
  const url = new URL(redisUrl);
  const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
  const queue = new Queue('clawdinator-fleet', { connection });
  const events = new QueueEvents('clawdinator-fleet', { connection });
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  closers.push(
    () => queue.close(),
    () => events.close(),
  );
}
client.once(Events.ClientReady, () => process.stdout.write('ready\n'));
await client.login(token);
process.on('SIGTERM', () => {
  void Promise.all(closers.map((close) => close()))
    .then(() => client.destroy())
    .then(() => process.exit(0));
});
