// The flake as far as this machine can take it. nix/npm-lock.nix (how the package builds from
// package-lock.json's integrity hashes without a hash to keep in step) is evaluated for real
// with nix-instantiate; `nix flake check --no-build` needs nixpkgs, which a machine without
// network can only have from its store through a committed flake.lock: it runs where a nix with
// flakes finds one (or CLAWDINATOR_NIX_ONLINE=1 allows fetching), and is skipped loudly otherwise.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { projectPath, projectRoot } from '../../lib/paths.js';

const HAS_NIX = spawnSync('nix-instantiate', ['--version']).status === 0;
const FLAKES =
  spawnSync('nix', ['--extra-experimental-features', 'nix-command flakes', 'flake', '--help'], { stdio: 'ignore' })
    .status === 0;
const LOCKED = existsSync(projectPath('flake.lock'));
const ONLINE = process.env.CLAWDINATOR_NIX_ONLINE === '1';
const FLAKE_CHECK = FLAKES && (LOCKED || ONLINE);
if (!FLAKE_CHECK) {
  process.stderr.write(
    `\n*** nix flake check is SKIPPED: ${FLAKES ? 'no flake.lock (nixpkgs unpinned; set CLAWDINATOR_NIX_ONLINE=1 on a machine with network)' : 'no nix with flakes on PATH'} ***\n\n`,
  );
}

function evalJson(expr: string): unknown {
  const result = spawnSync('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr], { encoding: 'utf8' });
  if (result.status !== 0)
    throw new Error(
      result.stderr
        .split('\n')
        .filter((l) => !l.startsWith('warning:'))
        .join('\n'),
    );
  return JSON.parse(result.stdout);
}

describe.skipIf(!HAS_NIX)('nix/npm-lock.nix', () => {
  const lockOf = (registry: string) =>
    `import ${projectPath('nix', 'npm-lock.nix')} { lock = builtins.fromJSON (builtins.readFile ${projectPath('package-lock.json')}); npmRegistry = ${registry}; }`;

  it('gives every locked package its tarball URL (scoped and nested names too); bundled ones come with their parent', () => {
    const out = evalJson(`let l = ${lockOf('"https://registry.example/"')}; ps = builtins.attrNames l.packages; in {
      missing = builtins.filter (p: p != "" && (l.packages.\${p} ? integrity) && !(l.packages.\${p} ? resolved)) ps;
      zod = l.packages."node_modules/zod".resolved;
      zodIntegrity = l.packages."node_modules/zod".integrity;
      s3 = l.packages."node_modules/@aws-sdk/client-s3".resolved;
      nested = builtins.head (builtins.filter (p: builtins.match ".*node_modules/.*/node_modules/.*" p != null && (l.packages.\${p} ? integrity)) ps);
    }`) as { missing: string[]; zod: string; zodIntegrity: string; s3: string; nested: string };
    expect(out.missing).toEqual([]);
    const lock = JSON.parse(readFileSync(projectPath('package-lock.json'), 'utf8'));
    const zod = lock.packages['node_modules/zod'];
    expect(out.zod).toBe(`https://registry.example/zod/-/zod-${zod.version}.tgz`);
    // The hash stays the lock's own: importNpmLock fetches with it.
    expect(out.zodIntegrity).toBe(zod.integrity);
    const s3 = lock.packages['node_modules/@aws-sdk/client-s3'];
    expect(out.s3).toBe(`https://registry.example/@aws-sdk/client-s3/-/client-s3-${s3.version}.tgz`);
    const nestedName = out.nested.split('node_modules/').at(-1) as string;
    const nestedUrl = evalJson(`(${lockOf('"https://registry.example"')}).packages."${out.nested}".resolved`);
    expect(nestedUrl).toBe(
      `https://registry.example/${nestedName}/-/${nestedName.split('/').at(-1)}-${lock.packages[out.nested].version}.tgz`,
    );
  });

  it('without a registry it fails with one line saying what to set, not a fetch of nothing', () => {
    expect(() => evalJson(`(${lockOf('null')}).packages."node_modules/zod".resolved`)).toThrow(
      /write the npm registry's base URL into nix\/npm-registry.url/,
    );
  });
});

describe('nix flake check', () => {
  if (!FLAKE_CHECK) it.skip('SKIPPED: no nixpkgs to evaluate against here (see the notice above)', () => {});
  it.runIf(FLAKE_CHECK)('evaluates every output without building', { timeout: 600_000 }, () => {
    const result = spawnSync(
      'nix',
      ['--extra-experimental-features', 'nix-command flakes', 'flake', 'check', '--no-build', `path:${projectRoot}`],
      { encoding: 'utf8', timeout: 590_000 },
    );
    expect(result.stderr.split('\n').filter((l) => l.startsWith('error:'))).toEqual([]);
    expect(result.status).toBe(0);
  });
});
