import { readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { initMemory } from '../../memory/init.js';
import { MemoryError, MemoryStore, sha256 } from '../../memory/store.js';
import { tempDir } from '../support/cli.js';
import { holdFlock, tryFlock } from '../support/flock.js';

let root: string;
let store: MemoryStore;

beforeEach(() => {
  root = tempDir();
  store = new MemoryStore({ root, maxBytes: 1024, waitSeconds: 5 });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MemoryError) return err.code;
    return (err as Error).name;
  }
  return 'ok';
}

describe('MemoryStore', () => {
  it('writes, reads and appends', async () => {
    const written = await store.write('notes/a.md', 'one\n');
    expect(written).toEqual({ path: 'notes/a.md', bytes: 4, sha256: sha256('one\n') });
    await store.append('notes/a.md', 'two');
    const read = await store.read('notes/a.md');
    expect(read.content.toString()).toBe('one\ntwo\n');
    expect(read.sha256).toBe(sha256('one\ntwo\n'));
    // Appended text starts on its own line even when the file lacks a final newline.
    await store.write('notes/b.md', 'no newline');
    await store.append('notes/b.md', 'next');
    expect((await store.read('notes/b.md')).content.toString()).toBe('no newline\nnext\n');
  });

  it('keeps the previous content as .<name>.prev when replacing', async () => {
    await store.write('ops.md', 'first version\n');
    await store.write('ops.md', 'second\n');
    expect(readFileSync(join(root, '.ops.md.prev'), 'utf8')).toBe('first version\n');
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('second\n');
  });

  it('writes in place: the inode stays the same, so flock holders keep excluding', async () => {
    await store.write('ops.md', 'a much longer first version\n');
    const { statSync } = await import('node:fs');
    const before = statSync(join(root, 'ops.md')).ino;
    await store.write('ops.md', 'short\n');
    expect(statSync(join(root, 'ops.md')).ino).toBe(before);
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('short\n');
  });

  it('reports a missing file and does not create it', async () => {
    expect(await codeOf(store.read('nope.md'))).toBe('not-found');
    expect(readdirSync(root)).toEqual([]);
  });

  it('writes with --if-sha256 only when the content is unchanged', async () => {
    await store.write('ops.md', 'v1\n');
    const { sha256: seen } = await store.read('ops.md');
    await store.write('ops.md', 'v2 by someone else\n');
    expect(await codeOf(store.write('ops.md', 'v2 by me\n', { ifSha256: seen }))).toBe('conflict');
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('v2 by someone else\n');
    const current = (await store.read('ops.md')).sha256;
    await store.write('ops.md', 'v3\n', { ifSha256: current });
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('v3\n');
    expect(await codeOf(store.write('new.md', 'x', { ifSha256: current }))).toBe('not-found');
    expect(readdirSync(root).includes('new.md')).toBe(false);
  });

  it('enforces the size cap on write, append and read, changing nothing', async () => {
    expect(await codeOf(store.write('big.md', 'x'.repeat(1025)))).toBe('too-large');
    expect(readdirSync(root)).toEqual([]);
    await store.write('a.md', 'x'.repeat(1000));
    expect(await codeOf(store.append('a.md', 'y'.repeat(100)))).toBe('too-large');
    expect(readFileSync(join(root, 'a.md'), 'utf8')).toBe('x'.repeat(1000));
    writeFileSync(join(root, 'huge.md'), 'z'.repeat(2000));
    expect(await codeOf(store.read('huge.md'))).toBe('too-large');
  });

  it('refuses NUL and control characters in names (argv cannot carry NUL: tested here)', async () => {
    for (const name of ['ops\u0000.md', 'a\u0007.md', 'x/\u0085.md']) {
      expect(await codeOf(store.write(name, 'x'))).toBe('UsageError');
      expect(await codeOf(store.read(name))).toBe('UsageError');
    }
    expect(readdirSync(root)).toEqual([]);
  });

  it('refuses content that is not UTF-8', async () => {
    expect(await codeOf(store.write('bin.md', Buffer.from([0xff, 0xfe, 0x00])))).toBe('not-utf8');
    expect(readdirSync(root)).toEqual([]);
  });

  it('lists files without hidden ones, refusing to follow symlinks out', async () => {
    await store.write('b.md', 'b');
    await store.write('daily/2026-01-01.md', 'day');
    await store.write('b.md', 'b2'); // leaves .b.md.prev, which is hidden
    const outside = tempDir();
    writeFileSync(join(outside, 'secret.md'), 'nope');
    symlinkSync(outside, join(root, 'link'));
    const list = await store.list();
    expect(list.map((e) => e.path)).toEqual(['b.md', 'daily/2026-01-01.md']);
    expect(list[0]?.size).toBe(2);
    expect((await store.list('daily')).map((e) => e.path)).toEqual(['daily/2026-01-01.md']);
    expect(await codeOf(store.list('link'))).toBe('UsageError');
  });
});

describe('locking against util-linux flock(1)', () => {
  it('a write waits for an exclusive flock(1) holder, then succeeds', async () => {
    await store.write('ops.md', 'before\n');
    const file = join(root, 'ops.md');
    const held = await holdFlock(file, '-x', 30);
    let done = false;
    const write = store.write('ops.md', 'after\n').then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe('before\n');
    await held.release();
    await write;
    expect(done).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('after\n');
  });

  it('gives up after --wait with "lock timeout" and leaves the file unchanged', async () => {
    await store.write('ops.md', 'before\n');
    const file = join(root, 'ops.md');
    const held = await holdFlock(file, '-x', 30);
    try {
      expect(await codeOf(store.write('ops.md', 'after\n', { waitSeconds: 0.3 }))).toBe('busy');
      expect(await codeOf(store.read('ops.md', { waitSeconds: 0.2 }))).toBe('busy');
      expect(readFileSync(file, 'utf8')).toBe('before\n');
    } finally {
      await held.release();
    }
  });

  it('readers share: a read succeeds while flock -s holds the file, a write does not', async () => {
    await store.write('ops.md', 'shared\n');
    const held = await holdFlock(join(root, 'ops.md'), '-s', 30);
    try {
      expect((await store.read('ops.md', { waitSeconds: 0.2 })).content.toString()).toBe('shared\n');
      expect(await codeOf(store.append('ops.md', 'x', { waitSeconds: 0.2 }))).toBe('busy');
    } finally {
      await held.release();
    }
  });

  it('flock(1) is excluded while the store holds the lock', async () => {
    await store.write('ops.md', 'x\n');
    const file = join(root, 'ops.md');
    const during = await store.withExclusiveLock('ops.md', async () => [tryFlock(file, '-x'), tryFlock(file, '-s')]);
    expect(during).toEqual([1, 1]);
    expect(tryFlock(file, '-x')).toBe(0);
  });
});

describe('initMemory', () => {
  it('lays out the folders and templates and never overwrites', async () => {
    const first = await initMemory(root);
    expect(first.created).toEqual(
      expect.arrayContaining(['daily/', 'discord/', 'github/', 'audit/', 'index.md', 'ops.md', 'project.md']),
    );
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toContain('# Ops Memory');
    writeFileSync(join(root, 'ops.md'), 'my own notes\n');
    const second = await initMemory(root);
    expect(second.created).toEqual([]);
    expect(second.kept).toHaveLength(first.created.length);
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('my own notes\n');
    expect(readdirSync(root).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
