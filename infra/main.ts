// The cdktf app entry (`cdktf.json` "app", `npm run synth`): synthesizes every stack from
// the fleet registry and the settings into cdktf.out/ (or the cdktf CLI's CDKTF_OUTDIR).
import { ClawError, EXIT_FAILED, errorLine } from '../lib/errors.js';
import { synthesize } from './app.js';
import { readRegistry } from './registry.js';
import { loadInfraSettings, registryPath } from './settings.js';

try {
  const path = registryPath();
  const result = synthesize({ registry: readRegistry(path), settings: loadInfraSettings() });
  for (const name of Object.keys(result.dirs)) process.stdout.write(`synthesized ${name}\n`);
  for (const name of result.withoutAmi) process.stdout.write(`skipped ${name}: no ami recorded yet\n`);
} catch (err) {
  process.stderr.write(`synth: ${errorLine(err)}\n`);
  process.exitCode = err instanceof ClawError ? err.exitCode : EXIT_FAILED;
}
