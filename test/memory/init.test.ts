// `memory init` over a folder the agent may have prepared: it follows no planted link.
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { initMemory } from '../../memory/init.js';
import { tempDir } from '../support/cli.js';

let root: string;
let outside: string;

beforeEach(() => {
  root = tempDir('clawdinator-memory-');
  outside = tempDir('clawdinator-outside-');
});

function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

describe('initMemory with planted links', () => {
  it('a symlink named like a template is kept as it is, never written through', async () => {
    writeFileSync(join(outside, 'victim'), 'precious\n');
    symlinkSync(join(outside, 'victim'), join(root, 'ops.md'));
    symlinkSync(join(outside, 'absent'), join(root, 'project.md'));
    const result = await initMemory(root);
    expect(result.kept).toEqual(expect.arrayContaining(['ops.md', 'project.md']));
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('precious\n');
    expect(tree(outside)).toEqual(['victim']);
    expect(lstatSync(join(root, 'ops.md')).isSymbolicLink()).toBe(true);
  });

  it('symlinks at the old temp names (.<name>.<pid>.init) redirect nothing', async () => {
    writeFileSync(join(outside, 'victim'), 'precious\n');
    for (const name of ['index.md', 'ops.md', 'project.md']) {
      symlinkSync(join(outside, 'victim'), join(root, `.${name}.${process.pid}.init`));
    }
    await initMemory(root);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('precious\n');
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toContain('# Ops Memory');
  });

  it('a folder planted as a symlink out: one line of error, nothing made outside', async () => {
    mkdirSync(join(outside, 'dir'));
    symlinkSync(join(outside, 'dir'), join(root, 'audit'));
    await expect(initMemory(root)).rejects.toThrow(/^path refused: audit is a symlink/);
    expect(tree(outside)).toEqual(['dir']);
    expect(existsSync(join(outside, 'dir', 'index.md'))).toBe(false);
  });

  it('a file where a folder belongs is refused', async () => {
    writeFileSync(join(root, 'daily'), 'not a folder\n');
    await expect(initMemory(root)).rejects.toThrow(/^not a directory: daily is a file$/);
  });
});
