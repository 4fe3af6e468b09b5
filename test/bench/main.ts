// `npm run bench`: one table for the whole project. Each row is a small function in the
// file of its area; run a subset with `npm run bench -- <name> …`.
import { rebuildOverhead } from './ami.js';
import { cloudFleetStatus } from './cloud.js';
import { deployOverhead } from './deploy.js';
import { gatewayIdleRss, interactionLatency } from './discord.js';
import { githubSync300 } from './github.js';
import { synthBudget, synthReference } from './infra.js';
import { jobStartLatency, jobThroughput, workerIdleRss } from './jobs.js';
import { appendThroughput, coldStart, lockLatency } from './memory.js';
import { modelProxyOverhead } from './model-proxy.js';
import { spawnOverhead } from './spawn.js';
import { fleetStatus500 } from './status.js';
import { type Bench, type Row, render } from './table.js';

const benches: Record<string, Bench> = {
  'memory-cold-start': coldStart,
  'memory-lock-latency': lockLatency,
  'memory-appends': appendThroughput,
  'discord-first-response': interactionLatency,
  'gateway-idle-rss': gatewayIdleRss,
  'cloud-fleet-status': cloudFleetStatus,
  'status-500': fleetStatus500,
  'spawn-overhead': spawnOverhead,
  'rebuild-overhead': rebuildOverhead,
  'deploy-overhead': deployOverhead,
  'jobs-start-latency': jobStartLatency,
  'jobs-throughput': jobThroughput,
  'worker-idle-rss': workerIdleRss,
  'infra-synth': synthBudget,
  'infra-synth-reference': synthReference,
  'github-sync': githubSync300,
  'model-proxy': modelProxyOverhead,
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !(w in benches));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown bench ${unknown.join(', ')}; known: ${Object.keys(benches).join(', ')}\n`);
  process.exit(2);
}
const rows: Row[] = [];
for (const [name, bench] of Object.entries(benches)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  process.stderr.write(`bench: ${name}…\n`);
  rows.push(...(await bench()));
}
process.stdout.write(render(rows));
