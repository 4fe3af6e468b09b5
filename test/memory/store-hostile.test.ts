// The memory folder as hostile input (issue 13): the agent writes /memory, the ops user
// reads and writes it. Each attack here worked against the store before it opened files
// component by component from a directory descriptor.
import { spawn } from 'node:child_process';
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryError, MemoryStore } from '../../memory/store.js';
import { tempDir } from '../support/cli.js';
import { locksHeldBy, mkfifo, plantBackupTempLinks } from '../support/hostile.js';

const CAP = 1024;
let root: string;
let outside: string;
let store: MemoryStore;
const servers: Server[] = [];

beforeEach(() => {
  root = tempDir('clawdinator-memory-');
  outside = tempDir('clawdinator-outside-');
  store = new MemoryStore({ root, maxBytes: CAP, waitSeconds: 5 });
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

/** The error a settled promise rejected with: its class, code and message. */
async function failure(p: Promise<unknown>): Promise<{ name: string; code?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error;
    return { name: e.name, code: err instanceof MemoryError ? err.code : undefined, message: e.message };
  }
  return { name: 'none', message: 'resolved' };
}

describe('the .<name>.prev backup cannot be steered by planted links', () => {
  it('symlinks at every likely temp name and at .<name>.prev never redirect a write', async () => {
    const victim = join(outside, 'victim');
    writeFileSync(victim, 'precious\n');
    await store.write('notes/ops.md', 'first\n');
    const dir = join(root, 'notes');
    // The old temp name was `.<name>.prev.<pid>.tmp`: this process and a range of pids.
    const planted = plantBackupTempLinks(dir, 'ops.md', victim, [process.pid]);
    symlinkSync(victim, join(dir, '.ops.md.prev'));
    for (const content of ['second\n', 'third\n']) await store.write('notes/ops.md', content);

    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(readFileSync(join(dir, 'ops.md'), 'utf8')).toBe('third\n');
    // The backup is a regular file of its own now (rename replaced the link, never followed it).
    expect(lstatSync(join(dir, '.ops.md.prev')).isFile()).toBe(true);
    expect(readFileSync(join(dir, '.ops.md.prev'), 'utf8')).toBe('second\n');
    // Nothing left behind but the planted links.
    expect(readdirSync(dir).sort()).toEqual(['.ops.md.prev', 'ops.md', ...planted].sort());
    expect(tree(outside)).toEqual(['victim']);
  });
});

describe('an intermediate directory flipped between absent and a symlink out', () => {
  it('500 appends during the flips put nothing outside the root', async () => {
    // Another process flips root/a as fast as it can: a symlink to outside, then gone (and
    // a real directory the store made is removed too).
    const flipper = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('node:fs');
         const [a, out] = process.argv.slice(1);
         process.stdout.write('go\\n');
         for (;;) {
           try { fs.symlinkSync(out, a); } catch {}
           try { fs.rmSync(a, { recursive: true, force: true }); } catch {}
         }`,
        join(root, 'a'),
        outside,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise((r) => flipper.stdout?.once('data', r));
    const outcomes = { ok: 0, refused: 0 };
    try {
      for (let i = 0; i < 500; i++) {
        const f = await failure(store.append('a/b/note.md', `line ${i}`, { waitSeconds: 1 }));
        if (f.name === 'none') outcomes.ok++;
        else {
          outcomes.refused++;
          expect(f.message.split('\n')).toHaveLength(1);
        }
      }
    } finally {
      flipper.kill('SIGKILL');
      await new Promise((r) => flipper.once('close', r));
    }
    expect(tree(outside)).toEqual([]);
    expect(outcomes.ok + outcomes.refused).toBe(500);
  });
});

describe('special files named like a note: a one-line error, no lock held', () => {
  const ops = {
    read: (s: MemoryStore, p: string) => s.read(p),
    write: (s: MemoryStore, p: string) => s.write(p, 'pwned\n'),
    append: (s: MemoryStore, p: string) => s.append(p, 'pwned'),
    edit: (s: MemoryStore, p: string) => s.withExclusiveLock(p, async () => 'ran'),
    // The control plane's ops.md log and its month files (memory/ops-log.ts) go through it.
    update: (s: MemoryStore, p: string) => s.update(p, async () => 'pwned\n'),
  };

  async function expectRefusedEverywhere(path: string, message: RegExp): Promise<void> {
    for (const [op, run] of Object.entries(ops)) {
      const f = await failure(run(store, path));
      expect(f.message, `${op} ${path}`).toMatch(message);
      expect(f.message.split('\n'), `${op} ${path}`).toHaveLength(1);
      expect(f.name, `${op} ${path}`).toBe('MemoryError');
    }
    expect(locksHeldBy(process.pid)).toEqual([]);
  }

  it('a FIFO', async () => {
    mkfifo(join(root, 'fifo.md'));
    await expectRefusedEverywhere('fifo.md', /^not a file: fifo\.md is a FIFO$/);
    expect(lstatSync(join(root, 'fifo.md')).isFIFO()).toBe(true);
  });

  it('a unix socket', async () => {
    const server = createServer();
    servers.push(server);
    await new Promise<void>((r) => server.listen(join(root, 'sock.md'), r));
    await expectRefusedEverywhere('sock.md', /^not a file: sock\.md is a socket$/);
  });

  it('a directory', async () => {
    mkdirSync(join(root, 'dir.md'));
    await expectRefusedEverywhere('dir.md', /^not a file: dir\.md is a directory$/);
    expect(tree(join(root, 'dir.md'))).toEqual([]);
  });

  it('an over-size file: refused before it is read (no backup made), unchanged', async () => {
    writeFileSync(join(root, 'big.md'), 'z'.repeat(CAP + 1));
    await expectRefusedEverywhere('big.md', /^too large: big\.md is 1025 bytes \(cap 1024\)$/);
    expect(readFileSync(join(root, 'big.md'), 'utf8')).toBe('z'.repeat(CAP + 1));
    expect(existsSync(join(root, '.big.md.prev'))).toBe(false);
  });

  it('a hard-linked file: refused, the other name unchanged', async () => {
    const secret = join(outside, 'secret');
    writeFileSync(secret, 'precious\n');
    linkSync(secret, join(root, 'hard.md'));
    await expectRefusedEverywhere('hard.md', /^refused: hard\.md has 2 links \(a hard-linked file is never opened\)$/);
    expect(readFileSync(secret, 'utf8')).toBe('precious\n');
  });

  it('a symlink, to a file inside or outside: never followed', async () => {
    writeFileSync(join(root, 'real.md'), 'inside\n');
    symlinkSync(join(root, 'real.md'), join(root, 'inner.md'));
    symlinkSync(join(outside, 'x'), join(root, 'outer.md'));
    mkdirSync(join(outside, 'dir'));
    symlinkSync(join(outside, 'dir'), join(root, 'linked'));
    for (const path of ['inner.md', 'outer.md', 'linked/x.md']) {
      for (const [op, run] of Object.entries(ops)) {
        const f = await failure(run(store, path));
        expect(f.name, `${op} ${path}`).toBe('UsageError');
        expect(f.message, `${op} ${path}`).toMatch(/^path refused: (inner\.md|outer\.md|linked) is a symlink/);
      }
    }
    expect(tree(outside)).toEqual(['dir']);
    expect(readFileSync(join(root, 'real.md'), 'utf8')).toBe('inside\n');
  });
});
