// The lifecycle script (test/fixtures/sandbox-lifecycle.txt) through the built binary:
// spawn → online, the refusals (taken name, missing token secret, cap), replace and retire
// with their confirmation buttons — then what the run left on disk: the registry, the
// simulated cloud's state at exit, the audit and ops.md, and no secret value anywhere.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../lib/paths.js';
import { CLI, type CliResult, tempDir } from '../support/cli.js';
import { section } from '../support/sandbox-script.js';

const LIFECYCLE = projectPath('test', 'fixtures', 'sandbox-lifecycle.txt');

function run(cwd: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
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
  });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

describe('the lifecycle sandbox script', () => {
  it('spawn, refusals, replace and retire with confirmation: each line as expected, traces on disk', async () => {
    const dir = tempDir('clawdinator-lifecycle-');
    const r = await run(dir, ['sandbox', '--fast', '--dir', dir, '--script', LIFECYCLE], {
      CLAWDINATOR_FLEET_MAX_SIZE: '3',
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('15 lines ok, 0 failed');

    // Spawned to online, and /status shows it with that instance.
    const spawned = section(r.stdout, '/spawn name:clawdinator-3').match(
      /✅ `spawn-[^`]+` clawdinator-3 online: (i-[0-9a-f]+), ami-/,
    );
    const first = spawned?.[1] as string;
    expect(first).toBeDefined();
    expect(section(r.stdout, '/status')).toMatch(new RegExp(`🟢 clawdinator-3 {2}online {2}${first} `));
    expect(section(r.stdout, '/status name:clawdinator-3')).toContain(`instance: ${first} (running)`);

    // The refusals, each its own reason.
    expect(section(r.stdout, '/spawn name:clawdinator-3', 1)).toMatch(
      /❌ `spawn-[^`]+` refused: clawdinator-3 is already in the registry/,
    );
    expect(section(r.stdout, '/spawn name:clawdinator-6')).toContain(
      'refused: the Discord token secret clawdinator/discord-token/clawdinator-6 does not exist: create it before spawning clawdinator-6',
    );
    expect(section(r.stdout, '/spawn name:clawdinator-2')).toMatch(/✅ `spawn-[^`]+` clawdinator-2 online: i-/);
    expect(section(r.stdout, '/spawn name:clawdinator-4')).toContain(
      'refused: the fleet is at its cap of 3 members (3 in the registry): retire one first',
    );

    // Replace: the question with its buttons, the press, a new instance online.
    expect(section(r.stdout, '/replace name:clawdinator-3')).toMatch(
      /\[button Replace clawdinator-3\] press with: \/press replace:confirm:clawdinator-3:\d+:\d+\n/,
    );
    const replaced = section(r.stdout, '/press confirm', 0).match(
      /✅ `replace-[^`]+` clawdinator-3 replaced: (i-[0-9a-f]+) → (i-[0-9a-f]+) /,
    );
    expect(replaced?.[1]).toBe(first);
    const second = replaced?.[2] as string;
    expect(second).not.toBe(first);
    const after = section(r.stdout, '/status name:clawdinator-3', 1);
    expect(after).toContain('🟢 **clawdinator-3** — online');
    expect(after).toContain(`instance: ${second} (running)`);

    // Retire: the press destroys the host; the member is gone from the registry and /status.
    expect(section(r.stdout, '/retire name:clawdinator-3')).toContain('[button Retire clawdinator-3]');
    expect(section(r.stdout, '/press confirm', 1)).toMatch(
      new RegExp(`✅ \`retire-[^\`]+\` clawdinator-3 retired: ${second} terminated`),
    );
    expect(section(r.stdout, '/status name:clawdinator-3', 2)).toContain(
      '⚠️ clawdinator-3 is not in the fleet registry.',
    );
    const finalStatus = section(r.stdout, '/status', 1);
    expect(finalStatus).toMatch(/🟢 clawdinator-1 .*\n🟢 clawdinator-2 /);
    // A stray (an instance tagged as a member but not in the registry) would be listed here.
    expect(finalStatus).not.toContain('clawdinator-3');

    // On disk: the registry, the simulated cloud at exit (instances, bootstrap bundles).
    expect(Object.keys(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8'))).sort()).toEqual([
      'clawdinator-1',
      'clawdinator-2',
    ]);
    const cloud = JSON.parse(readFileSync(join(dir, 'cloud.json'), 'utf8')) as {
      instances: { name: string; instanceId: string }[];
      objects: string[];
    };
    expect(cloud.instances.map((i) => i.name).sort()).toEqual(['clawdinator-1', 'clawdinator-2']);
    expect(cloud.instances.map((i) => i.instanceId)).not.toContain(first);
    expect(cloud.instances.map((i) => i.instanceId)).not.toContain(second);
    expect(cloud.objects).toContain('bootstrap/clawdinator-2/config.json');
    expect(cloud.objects.filter((k) => k.startsWith('bootstrap/clawdinator-3/'))).toEqual([]);

    // The audit: every line and every job outcome; ops.md: each lifecycle change.
    const audit = readdirSync(join(dir, 'memory', 'audit'))
      .map((f) => readFileSync(join(dir, 'memory', 'audit', f), 'utf8'))
      .join('');
    expect(audit).toMatch(/spawn name:clawdinator-3 → online: clawdinator-3 online: /);
    expect(audit).toMatch(/spawn name:clawdinator-3 → failed: refused: clawdinator-3 is already in the registry/);
    expect(audit).toMatch(/spawn name:clawdinator-6 → failed: refused: the Discord token secret/);
    expect(audit).toMatch(/spawn name:clawdinator-4 → failed: refused: the fleet is at its cap of 3/);
    expect(audit).toMatch(/button replace:confirm:clawdinator-3:\d+:\d+ → ok/);
    expect(audit).toContain(`replace name:clawdinator-3 → replaced: clawdinator-3 replaced: ${first} → ${second}`);
    expect(audit).toMatch(/button retire:confirm:clawdinator-3:\d+:\d+ → ok/);
    expect(audit).toContain(`retire name:clawdinator-3 → retired: clawdinator-3 retired: ${second} terminated`);
    const ops = readFileSync(join(dir, 'memory', 'ops.md'), 'utf8');
    expect(ops).toMatch(new RegExp(`UTC spawn clawdinator-3: ${first}, ami-[0-9a-f]+, t3\\.large — requested by `));
    expect(ops).toMatch(/UTC spawn clawdinator-2: i-/);
    expect(ops).toContain(`UTC replace clawdinator-3: ${first} → ${second}`);
    expect(ops).toContain(`UTC retire clawdinator-3: ${second} terminated`);
    expect(ops).not.toContain('clawdinator-4:');

    // No secret value anywhere: the token pool's (planted by the world) and the hosts' keys.
    const outputs = [
      r.stdout,
      r.stderr,
      ...filesUnder(dir)
        .filter((f) => !f.includes('/keys/'))
        .map((f) => readFileSync(f, 'utf8')),
    ];
    for (const text of outputs) {
      expect(text).not.toContain('sandbox-discord-token-');
      expect(text).not.toContain('PRIVATE KEY');
    }
    expect(existsSync(join(dir, 'redis', 'redis-server.pid'))).toBe(false);
  });

  it('/press with a word no shown button has: one line, the line fails, nothing runs', async () => {
    const dir = tempDir('clawdinator-lifecycle-');
    writeFileSync(join(dir, 'script.txt'), '!/press confirm\n/status\n');
    const r = await run(dir, ['sandbox', '--fast', '--dir', dir, '--script', join(dir, 'script.txt')], {});
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('⚠️ /press confirm: no button with "confirm" in its id was shown');
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('2 lines ok, 0 failed');
  });
});
