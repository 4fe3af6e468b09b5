// The AWS SDKs cost about +65 MiB RSS, and the gateway and worker idle budgets cannot afford
// them: importing the cloud layer (adapter or simulated cloud) must not load any SDK; each
// service's SDK comes in through a dynamic import on first use. Checked on the bundle esbuild
// makes of it, as build.mjs does for dist/.
import { build, type Metafile } from 'esbuild';
import { expect, it } from 'vitest';
import { projectRoot } from '../../../lib/paths.js';

function staticExternals(meta: Metafile, output: string, seen = new Set<string>()): string[] {
  if (seen.has(output)) return [];
  seen.add(output);
  const out: string[] = [];
  for (const imp of meta.outputs[output]?.imports ?? []) {
    if (imp.kind !== 'import-statement') continue;
    if (imp.external) out.push(imp.path);
    else out.push(...staticExternals(meta, imp.path, seen));
  }
  return out;
}

it('loads no AWS SDK until a service is first used', async () => {
  const result = await build({
    stdin: {
      contents: [
        "export { createAwsCloud } from './jobs/cloud/aws.ts';",
        "export { createSimCloud } from './jobs/cloud/sim.ts';",
      ].join('\n'),
      resolveDir: projectRoot,
      loader: 'ts',
    },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    packages: 'external',
    outdir: '/virtual',
    metafile: true,
    write: false,
    logLevel: 'silent',
  });
  const meta = result.metafile;
  const entry = Object.keys(meta.outputs).find((o) => meta.outputs[o]?.entryPoint === '<stdin>') as string;

  expect(staticExternals(meta, entry).filter((p) => p.startsWith('@aws-sdk/'))).toEqual([]);
  // …and each SDK is there behind a dynamic import.
  const lazy = (meta.outputs[entry]?.imports ?? []).filter((i) => i.kind === 'dynamic-import');
  const behind = lazy.flatMap((i) => staticExternals(meta, i.path));
  for (const sdk of ['client-ec2', 'client-s3', 'client-ssm', 'client-secrets-manager', 'client-sts', 'lib-storage']) {
    expect(behind).toContain(`@aws-sdk/${sdk}`);
  }
});
