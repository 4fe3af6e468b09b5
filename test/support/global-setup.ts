// Builds dist/ once before the suite: the CLI tests run the real `clawdinator` binary, as
// hosts and CI do, not the TypeScript sources.
import { execFileSync } from 'node:child_process';
import { projectRoot } from '../../lib/paths.js';

export default function setup(): void {
  execFileSync(process.execPath, ['build.mjs'], { cwd: projectRoot, stdio: 'inherit' });
}
