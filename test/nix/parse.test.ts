// Every .nix file in the repository must parse (`nix-instantiate --parse`, Debian's nix-bin).
// Nothing is evaluated or built: the flake's inputs and npmDepsHash need a machine with network.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../lib/paths.js';

const SKIP_DIRS = new Set(['node_modules', '.git', 'dist', 'cdktf.out', '.sandbox', 'coverage', '.terraform']);

function nixFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) out.push(...nixFiles(join(dir, entry.name)));
    } else if (entry.isFile() && entry.name.endsWith('.nix')) {
      out.push(join(dir, entry.name));
    }
  }
  return out.sort();
}

function hasNixInstantiate(): boolean {
  try {
    execFileSync('nix-instantiate', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const HAS_NIX = hasNixInstantiate();
if (!HAS_NIX) {
  process.stderr.write(
    '\n*** nix-instantiate is not on PATH: the Nix parse tests are SKIPPED (apt-get install nix-bin; .ci/run does) ***\n\n',
  );
}

const files = nixFiles(projectRoot);

describe('Nix files', () => {
  it('include the flake, the module and the host configuration', () => {
    const names = files.map((f) => relative(projectRoot, f));
    expect(names).toEqual(expect.arrayContaining(['flake.nix', 'nix/module.nix', 'nix/hosts/clawdinator.nix']));
  });

  if (!HAS_NIX)
    it.skip('SKIPPED: nix-instantiate is not on PATH, so no .nix file was parsed (install nix-bin)', () => {});

  describe.skipIf(!HAS_NIX)('nix-instantiate --parse', () => {
    it.each(files.map((f) => [relative(projectRoot, f), f]))('%s parses', (_name, file) => {
      const result = spawnSync('nix-instantiate', ['--parse', file], { encoding: 'utf8' });
      // nix-bin warns about a missing nixbld group on machines without a Nix daemon; only errors count.
      const errors = result.stderr
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith('warning:'))
        .join('\n');
      expect(errors).toBe('');
      expect(result.status).toBe(0);
    });
  });
});
