import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { projectPath } from '../../lib/paths.js';
import { sha256 } from '../../memory/store.js';
import { runCli, tempDir } from '../support/cli.js';
import { holdFlock, tryFlock } from '../support/flock.js';
import { mkfifo, plantBackupTempLinks } from '../support/hostile.js';
import { checkLines } from '../support/lines.js';

let root: string;
let env: Record<string, string>;

beforeEach(() => {
  root = tempDir();
  env = { CLAWDINATOR_MEMORY_DIR: root };
});

function listTree(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

describe('clawdinator memory (CLI)', () => {
  it('init, read, write, append, list round trip', async () => {
    const init = await runCli(['memory', 'init'], { env });
    expect(init.code).toBe(0);
    expect(init.stdout).toContain('created ops.md');
    expect((await runCli(['memory', 'init'], { env })).stdout).not.toContain('created');

    const read = await runCli(['memory', 'read', 'ops.md'], { env });
    expect(read.code).toBe(0);
    expect(read.stdout).toBe(readFileSync(join(root, 'ops.md'), 'utf8'));
    // An absolute path inside the root works like the shell tool.
    expect((await runCli(['memory', 'read', join(root, 'ops.md')], { env })).stdout).toBe(read.stdout);

    expect((await runCli(['memory', 'write', 'daily/2026-11-24.md'], { env, input: 'hello\n' })).code).toBe(0);
    expect((await runCli(['memory', 'append', 'daily/2026-11-24.md'], { env, input: 'world' })).code).toBe(0);
    expect(readFileSync(join(root, 'daily/2026-11-24.md'), 'utf8')).toBe('hello\nworld\n');

    const list = await runCli(['memory', 'list', '--json'], { env });
    const entries = JSON.parse(list.stdout) as { path: string; size: number; mtime: string }[];
    expect(entries.find((e) => e.path === 'daily/2026-11-24.md')).toMatchObject({ size: 12 });
    expect(entries.map((e) => e.path)).toContain('index.md');
    const plain = await runCli(['memory', 'list', 'daily'], { env });
    expect(plain.stdout.trim()).toMatch(/^12 {2}\S+ {2}daily\/2026-11-24\.md$/);
  });

  it('read of a missing file exits 1 with "no such file" and creates nothing', async () => {
    const r = await runCli(['memory', 'read', 'missing.md'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('clawdinator: no such file: missing.md\n');
    expect(existsSync(join(root, 'missing.md'))).toBe(false);
  });

  it('--if-sha256: writes when unchanged, exits 1 "changed since" otherwise', async () => {
    writeFileSync(join(root, 'ops.md'), 'v1\n');
    const stale = sha256('v0\n');
    const conflict = await runCli(['memory', 'write', 'ops.md', '--if-sha256', stale], { env, input: 'mine\n' });
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toMatch(/^clawdinator: changed since: ops\.md/);
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('v1\n');
    const ok = await runCli(['memory', 'write', 'ops.md', '--if-sha256', sha256('v1\n')], { env, input: 'mine\n' });
    expect(ok.code).toBe(0);
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('mine\n');
    const bad = await runCli(['memory', 'write', 'ops.md', '--if-sha256', 'abc'], { env, input: 'x' });
    expect(bad.code).toBe(2);
  });

  it('size cap: oversize stdin exits 1 and writes nothing', async () => {
    const r = await runCli(['memory', 'write', 'big.md'], {
      env: { ...env, CLAWDINATOR_MEMORY_MAX_BYTES: '100' },
      input: 'x'.repeat(101),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/too large/);
    expect(listTree(root)).toEqual([]);
  });

  it('a wrong setting stops with one line naming it (exit 2)', async () => {
    const r = await runCli(['memory', 'read', 'ops.md'], { env: { ...env, CLAWDINATOR_MEMORY_LOCK_WAIT: 'soon' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'clawdinator: config: CLAWDINATOR_MEMORY_LOCK_WAIT is invalid: expected seconds from 0 to 600\n',
    );
  });

  it('usage errors exit 2 with one line; --help exits 0', async () => {
    expect((await runCli(['memory', 'read'], { env })).code).toBe(2);
    expect((await runCli(['memory', 'read', 'ops.md', '--wait', '-1'], { env })).code).toBe(2);
    expect((await runCli(['nonsense'], { env })).code).toBe(2);
    const help = await runCli(['--help'], { env });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('memory');
  });

  describe('hostile paths: exit 2, nothing written anywhere', () => {
    const outside = tempDir('clawdinator-outside-');
    const cases: [string, string][] = [
      ['parent segment', '../escape.md'],
      ['nested parent segment', 'daily/../../escape.md'],
      ['absolute outside', join(outside, 'escape.md')],
      ['absolute /etc', '/etc/passwd-clawdinator'],
      ['newline', 'ops\n.md'],
      ['escape character', 'ops\u001b[31m.md'],
      ['DEL', 'ops\u007f.md'],
      ['empty', ''],
      ['only dots and slashes', './/'],
      ['symlink leading out', 'link/escape.md'],
      ['symlinked file leading out', 'filelink.md'],
      ['dangling symlink leading out', 'dangling.md'],
      ['very long', 'a/'.repeat(600)],
    ];
    for (const [label, path] of cases) {
      it(label, async () => {
        mkdirSync(join(root, 'daily'));
        symlinkSync(outside, join(root, 'link'));
        writeFileSync(join(outside, 'target.md'), 'outside\n');
        symlinkSync(join(outside, 'target.md'), join(root, 'filelink.md'));
        symlinkSync(join(outside, 'nothing-here.md'), join(root, 'dangling.md'));
        const before = { inside: listTree(root), outside: listTree(outside) };
        for (const sub of ['write', 'append']) {
          const r = await runCli(['memory', sub, path], { env, input: 'pwned\n' });
          expect(r.code, `${sub} ${JSON.stringify(path)}: ${r.stderr}`).toBe(2);
          expect(r.stderr.trim().split('\n')).toHaveLength(1);
        }
        expect((await runCli(['memory', 'read', path], { env })).code).toBe(2);
        expect({ inside: listTree(root), outside: listTree(outside) }).toEqual(before);
        expect(readFileSync(join(outside, 'target.md'), 'utf8')).toBe('outside\n');
        expect(existsSync('/etc/passwd-clawdinator')).toBe(false);
      });
    }
  });

  describe('what an agent can plant in the folder (issue 13)', () => {
    it('a FIFO named like a note: read, write, append, edit exit 2 with one line; no lock is left', async () => {
      const fifo = join(root, 'fifo.md');
      mkfifo(fifo);
      for (const args of [['read'], ['write'], ['append'], ['edit', 'fifo.md', '--', 'true']]) {
        const argv = ['memory', ...(args.length === 1 ? [...args, 'fifo.md'] : args)];
        const r = await runCli(argv, { env, input: 'pwned\n' });
        expect(r.stderr, argv.join(' ')).toBe('clawdinator: not a file: fifo.md is a FIFO\n');
        expect(r.code, argv.join(' ')).toBe(2);
      }
      // Opened read-write a FIFO does not block: nobody holds a lock on it.
      const free = spawnSync('bash', ['-c', 'exec 9<>"$1" && flock -n -x 9', '_', fifo]);
      expect(free.status).toBe(0);
    });

    it('symlinks at the old backup temp names (.ops.md.prev.<pid>.tmp) never redirect `memory write`', async () => {
      const outside = tempDir('clawdinator-outside-');
      const victim = join(outside, 'victim');
      writeFileSync(victim, 'precious\n');
      writeFileSync(join(root, 'ops.md'), 'before\n');
      const planted = plantBackupTempLinks(root, 'ops.md', victim);
      symlinkSync(victim, join(root, '.ops.md.prev'));
      const r = await runCli(['memory', 'write', 'ops.md'], { env, input: 'after\n' });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(readFileSync(victim, 'utf8')).toBe('precious\n');
      expect(readFileSync(join(root, 'ops.md'), 'utf8')).toBe('after\n');
      expect(readFileSync(join(root, '.ops.md.prev'), 'utf8')).toBe('before\n');
      expect(listTree(root)).toEqual(['.ops.md.prev', 'ops.md', ...planted].sort());
    });
  });

  it('write waits for a flock(1) holder, and --wait shorter than the hold exits 1 unchanged', async () => {
    const file = join(root, 'ops.md');
    writeFileSync(file, 'before\n');
    const held = await holdFlock(file, '-x', 30);
    const timedOut = await runCli(['memory', 'write', 'ops.md', '--wait', '0.5'], { env, input: 'after\n' });
    expect(timedOut.code).toBe(1);
    expect(timedOut.stderr).toMatch(/lock timeout/);
    expect(readFileSync(file, 'utf8')).toBe('before\n');
    const waiting = runCli(['memory', 'write', 'ops.md', '--wait', '20'], { env, input: 'after\n' });
    await new Promise((r) => setTimeout(r, 500));
    expect(readFileSync(file, 'utf8')).toBe('before\n');
    await held.release();
    expect((await waiting).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('after\n');
  });

  it('memory edit holds the lock while its command runs: flock -n fails meanwhile', async () => {
    const file = join(root, 'ops.md');
    writeFileSync(file, 'x\n');
    const editing = runCli(['memory', 'edit', 'ops.md', '--', 'sh', '-c', `echo started > ${root}/started; sleep 2`], {
      env,
    });
    const startedAt = join(root, 'started');
    while (!existsSync(startedAt)) await new Promise((r) => setTimeout(r, 20));
    expect(tryFlock(file, '-x')).toBe(1);
    expect(tryFlock(file, '-s')).toBe(1);
    expect((await editing).code).toBe(0);
    expect(tryFlock(file, '-x')).toBe(0);
    // One argument runs through bash -c, like the shell memory-edit; a failing command exits 1.
    const failing = await runCli(['memory', 'edit', 'ops.md', '--', 'exit 3'], { env });
    expect(failing.code).toBe(1);
    expect(failing.stderr.trim().split('\n').at(-1)).toBe('clawdinator: edit command exited with 3');
  });

  it('the CLI and the original shell tool append to one file at once: nothing lost or torn', async () => {
    const file = join(root, 'shared.md');
    writeFileSync(file, '');
    const pad = 'x'.repeat(80);
    const perSide = 40;
    const shell = new Promise<number>((resolve) => {
      const script = `for i in $(seq 0 ${perSide - 1}); do printf 'wsh %s ${pad} end\\n' "$i" | flock -x -w 5 "$1" bash -c 'cat >> "$1"' _ "$1"; done`;
      spawn('bash', ['-c', script, '_', file], { stdio: 'inherit' }).on('close', (c) => resolve(c ?? -1));
    });
    const cli = (async () => {
      for (let i = 0; i < perSide; i++) {
        const r = await runCli(['memory', 'append', 'shared.md'], { env, input: `wcli ${i} ${pad} end` });
        if (r.code !== 0) return r.code;
      }
      return 0;
    })();
    expect(await Promise.all([shell, cli])).toEqual([0, 0]);
    const check = checkLines(readFileSync(file, 'utf8'), ['sh', 'cli'], perSide);
    expect(check).toEqual({ total: 2 * perSide, torn: 0, lost: 0, duplicated: 0 });
  });

  it('16 long-lived processes x 200 appends through the store: 3200 lines, none lost or torn', async () => {
    const worker = projectPath('dist', 'test', 'bench', 'append-worker.js');
    const ids = Array.from({ length: 16 }, (_, i) => String(i));
    const codes = await Promise.all(
      ids.map(
        (id) =>
          new Promise<number>((resolve) => {
            spawn(process.execPath, [worker, root, 'daily/load.md', id, '200'], { stdio: 'inherit' }).on('close', (c) =>
              resolve(c ?? -1),
            );
          }),
      ),
    );
    expect(codes.every((c) => c === 0)).toBe(true);
    const check = checkLines(readFileSync(join(root, 'daily/load.md'), 'utf8'), ids, 200);
    expect(check).toEqual({ total: 3200, torn: 0, lost: 0, duplicated: 0 });
  });
});
