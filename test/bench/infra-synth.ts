// One synth of the base stack and N instance stacks in a fresh process, so that its time
// (loading cdktf and the provider classes included, as a job's first deploy pays it) and
// its peak RSS are its own: `node infra-synth.js <project|floor|barrel> <outdir> <N>`.
// Prints {"ms": …, "maxRssMiB": …} on stdout.
import { performance } from 'node:perf_hooks';

const [mode, outdir, count] = process.argv.slice(2);
if (outdir === undefined || count === undefined) {
  process.stderr.write('usage: infra-synth <project|floor|barrel> <outdir> <instances>\n');
  process.exit(2);
}
const instances = Number(count);

if (mode === 'project') {
  const { synthesize } = await import('../../infra/app.js');
  const { parseRegistry } = await import('../../infra/registry.js');
  const { loadInfraSettings } = await import('../../infra/settings.js');
  const raw = Object.fromEntries(
    Array.from({ length: instances }, (_, i) => [
      `clawdinator-${i + 1}`,
      {
        host: `clawdinator-${i + 1}`,
        instanceType: 't3.large',
        bootstrapPrefix: `bootstrap/clawdinator-${i + 1}`,
        discordTokenSecret: `clawdinator/discord-token/clawdinator-${i + 1}`,
        ami: 'ami-0123456789abcdef0',
      },
    ]),
  );
  synthesize({ outdir, registry: parseRegistry(raw, 'bench'), settings: loadInfraSettings({ env: {} }) });
} else if (mode === 'floor' || mode === 'barrel') {
  const { barrelClasses, floorApp } = await import('./infra-floor.js');
  const aws = mode === 'floor' ? (await import('./infra-floor-deep.js')).deepClasses : await barrelClasses();
  floorApp(aws, outdir, instances);
} else {
  process.stderr.write(`infra-synth: unknown mode ${mode}\n`);
  process.exit(2);
}
const ms = performance.now();
const maxRssMiB = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify({ ms, maxRssMiB })}\n`);
