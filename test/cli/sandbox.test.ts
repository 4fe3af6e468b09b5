// `clawdinator sandbox` through the built binary, from clean directories: its own redis-server,
// the real handlers, worker and schedules, the simulated cloud with instant timings.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_MISSING } from '../../bot/sandbox/redis.js';
import { projectPath } from '../../lib/paths.js';
import { CLI, type CliResult, tempDir } from '../support/cli.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const SMOKE = projectPath('test', 'fixtures', 'sandbox-smoke.txt');

/** Runs the CLI in `cwd` with a minimal environment (no CLAWDINATOR_* settings unless given). */
function run(cwd: string, args: string[], env: Record<string, string> = {}, input = ''): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

function script(lines: string[]): string {
  const path = join(tempDir('clawdinator-script-'), 'script.txt');
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('clawdinator sandbox --script', () => {
  it('runs the smoke script in a clean directory: status, memory, refusals; exit 0', async () => {
    const cwd = tempDir('clawdinator-sandbox-');
    const r = await run(cwd, ['sandbox', '--fast', '--script', SMOKE]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('clawdinator sandbox in .sandbox');
    expect(r.stdout).toContain('redis-server started for the sandbox');
    expect(r.stdout).toMatch(
      /\n> \/status\n… thinking\n\*\*Fleet\*\* — 1 online\n```\n🟢 clawdinator-1 {2}online {2}i-/,
    );
    expect(r.stdout).toContain('🟢 **clawdinator-1** — online');
    expect(r.stdout).toContain('```md\n# Ops Memory');
    expect(r.stdout).toContain('Wrote **daily/x.md** (5 B).');
    expect(r.stdout).toContain('```md\nhello\nand a second line\n```');
    expect(r.stdout).toMatch(/ {3}24 B {2}daily\/x\.md/);
    expect(r.stdout).toContain('!> /memory read path:../etc/passwd\n… thinking\n⚠️ path refused: ".." is not allowed');
    expect(r.stdout).toContain('⚠️ clawdinator-9 is not in the fleet registry.');
    expect(r.stdout).toContain('⚠️ unknown command /frobnicate');
    // The GitHub org, synced from the simulated GitHub into the memory at start.
    expect(r.stdout).toContain('> /memory read path:github/prs.md\n… thinking\n**github/prs.md**');
    expect(r.stdout).toContain('```md\n# Open Pull Requests (openclaw org)\n\nLast synced: ');
    expect(r.stdout).toContain(
      '## openclaw/repo-001\n\n- **#1** [Change 4: tidy module 3](https://github.com/openclaw/repo-001/pull/1)',
    );
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('15 lines ok, 0 failed');

    // Everything it made stays; the redis-server it started is gone.
    const dir = join(cwd, '.sandbox');
    expect(readFileSync(join(dir, 'memory', 'daily', 'x.md'), 'utf8')).toBe('hello\nand a second line\n');
    expect(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8'))).toHaveProperty('clawdinator-1');
    const audit = readFileSync(join(dir, 'memory', 'audit', `${new Date().toISOString().slice(0, 10)}.md`), 'utf8');
    expect(audit).toContain('/memory write path:daily/x.md content:[5 chars] → ok');
    expect(audit).toContain('/memory read path:../etc/passwd → "failed: path refused');
    expect(existsSync(join(dir, 'redis', 'redis-server.pid'))).toBe(false);
  });

  it('--as a member: reads are allowed, writes and fleet actions refused', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const file = script([
      '/memory read path:index.md',
      '/status',
      '!/memory write path:x.md content:hi',
      '!/spawn name:clawdinator-3',
    ]);
    const r = await run(dir, ['sandbox', '--dir', dir, '--fast', '--as', 'bob', '--script', file]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('you      bob (member: may read memory and see /status only)');
    expect(r.stdout).toContain('⚠️ You are not allowed to use /memory write. (only you can see this)');
    expect(r.stdout).toContain('⚠️ You are not allowed to use /spawn. (only you can see this)');
    expect(r.stdout).toContain('4 lines ok, 0 failed');
    expect(existsSync(join(dir, 'memory', 'x.md'))).toBe(false);
  });

  it('a line that does not do what it expected: the summary, one line on stderr, exit 1', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const r = await run(dir, ['sandbox', '--dir', dir, '--fast', '--script', script(['/status', '!/memory list'])]);
    expect(r.code).toBe(1);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('1 line ok, 1 failed');
    expect(r.stderr).toBe(
      'clawdinator: sandbox: 1 of 2 script lines did not do what they expected: line 2 (/memory list) expected a refusal or failure, but it succeeded\n',
    );
  });

  it('a script failing on a sandbox kept from an earlier run says so, and how to start fresh', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const spawn = script(['/spawn name:clawdinator-2']);
    const first = await run(dir, ['sandbox', '--dir', dir, '--fast', '--script', spawn]);
    expect(first.code).toBe(0);
    const again = await run(dir, ['sandbox', '--dir', dir, '--fast', '--script', spawn]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `clawdinator: sandbox: 1 of 1 script lines did not do what they expected: line 1 (/spawn name:clawdinator-2) failed: refused: clawdinator-2 is already in the registry (${dir} was kept from an earlier run, with the fleet it left: remove it or pass another --dir for a fresh start)\n`,
    );
  });

  it('a missing script is a usage error: one line, exit 2, nothing started or made', async () => {
    const cwd = tempDir('clawdinator-sandbox-');
    const missing = join(cwd, 'no-such-script.txt');
    const r = await run(cwd, ['sandbox', '--fast', '--script', missing]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`clawdinator: --script: cannot read ${missing} (ENOENT)\n`);
    expect(existsSync(join(cwd, '.sandbox'))).toBe(false);
  });

  it('without redis-server on PATH: how to install it, one line, exit 1', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const r = await run(dir, ['sandbox', '--dir', dir, '--fast', '--script', SMOKE], { PATH: join(dir, 'empty-bin') });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`clawdinator: ${REDIS_MISSING}\n`);
  });
});

describe('clawdinator sandbox with CLAWDINATOR_REDIS_URL', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('uses that Redis and starts no redis-server of its own', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const r = await run(dir, ['sandbox', '--dir', dir, '--fast', '--script', script(['/status'])], {
      CLAWDINATOR_REDIS_URL: redis.url,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`redis    ${redis.url} (CLAWDINATOR_REDIS_URL: a Redis of its own, never the fleet’s)`);
    expect(r.stdout).toContain('1 line ok, 0 failed');
    expect(existsSync(join(dir, 'redis'))).toBe(false);
  });
});

describe('clawdinator sandbox, interactive', () => {
  it('piped lines run in order, each shown with its output', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const r = await run(dir, ['sandbox', '--dir', dir, '--fast'], {}, '/status\nhelp\n/memory read path:index.md\n');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/> \/status\n… thinking\n\*\*Fleet\*\* — 1 online/);
    expect(r.stdout).toContain('  /press <button-id>');
    expect(r.stdout).toContain('> /memory read path:index.md\n… thinking\n**index.md**');
  });

  it('SIGTERM stops everything it started and keeps the directory', async () => {
    const dir = tempDir('clawdinator-sandbox-');
    const child = spawn(process.execPath, [CLI, 'sandbox', '--dir', dir, '--fast'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('Type help')) resolve();
      });
      child.once('close', () => reject(new Error(`exited early: ${stderr}`)));
    });
    const pid = Number(readFileSync(join(dir, 'redis', 'redis-server.pid'), 'utf8'));
    expect(alive(pid)).toBe(true);
    child.kill('SIGTERM');
    expect(await closed).toBe(0);
    expect(stderr).toBe('');
    expect(alive(pid)).toBe(false);
    expect(existsSync(join(dir, 'memory', 'ops.md'))).toBe(true);
    expect(existsSync(join(dir, 'fleet.json'))).toBe(true);
  });
});
