// Builds dist/ with esbuild: one ESM bundle per entry point, with code splitting so each
// CLI command group stays a lazily loaded chunk. Small pure-JS dependencies (zod, commander)
// are bundled in: resolving and loading their dozens of files is most of the cold start of
// `clawdinator memory read`. Everything else stays in node_modules (native addons, packages
// that load files at run time, and the large SDKs that only some commands load).
// Type checking is `npm run typecheck` (tsc --noEmit); esbuild only strips types.
import { readFileSync, rmSync } from 'node:fs';
import { build } from 'esbuild';

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
const bundled = new Set(['zod', 'commander']);
const external = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.devDependencies)].filter((d) => !bundled.has(d));

// Stale chunks from an earlier build would otherwise pile up beside the new ones.
rmSync('dist', { recursive: true, force: true });

await build({
  entryPoints: [
    'cli/main.ts',
    'test/bench/main.ts',
    'test/bench/append-worker.ts',
    'infra/main.ts',
    'test/bench/infra-synth.ts',
    'test/bench/bare-gateway.ts',
    'test/support/worker-process.ts',
    'test/support/fleet-worker-process.ts',
    'test/support/deployer-process.ts',
    'test/bench/bare-worker.ts',
    'test/bench/start-worker.ts',
    'test/support/model-standin-process.ts',
  ],
  outdir: 'dist',
  outbase: '.',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  chunkNames: 'chunks/[name]-[hash]',
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
  minifySyntax: true,
  minifyWhitespace: true,
});
