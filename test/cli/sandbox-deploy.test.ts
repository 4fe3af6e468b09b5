import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../lib/paths.js';
import { tempDir } from '../support/cli.js';
import { runSandbox, section } from '../support/sandbox-script.js';

const SCRIPT = projectPath('test', 'fixtures', 'sandbox-deploy.txt');

describe('the fast-lane sandbox script', () => {
  it('deploys canary first, rolls a broken canary back, and asks the hosts from chat', async () => {
    const dir = tempDir('clawdinator-sandbox-deploy-');
    const r = await runSandbox(dir, ['sandbox', '--fast', '--dir', dir, '--script', SCRIPT]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('17 lines ok, 0 failed');

    const deploy = section(r.stdout, '/deploy');
    expect(deploy).toContain(
      'main → 5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5: clawdinator-2, clawdinator-3, clawdinator-1, canary clawdinator-2',
    );
    // This console's worker is clawdinator-1's: its own switch is last, offered to a peer first.
    expect(deploy).toContain("clawdinator-1 runs this job's worker: left to a peer's worker");
    expect(deploy).toMatch(
      /✅ `deploy-[^`]+` deployed 5a4dbee \(main\) to clawdinator-2, clawdinator-3, clawdinator-1/,
    );
    const status = section(r.stdout, '/status', 1);
    for (const m of ['clawdinator-1', 'clawdinator-2', 'clawdinator-3']) {
      expect(status).toMatch(new RegExp(`🟢 ${m} {2}online {2}i-[0-9a-f]+ {2}ami-[0-9a-f]+ {2}rev 5a4dbeef since `));
    }
    expect(status).toMatch(/last deploy: 5a4dbeef succeeded at /);
    expect(section(r.stdout, '/deploy rev:main')).toMatch(
      /✅ `deploy-[^`]+` nothing to switch: clawdinator-2, clawdinator-3, clawdinator-1 already run 5a4dbee \(main\)/,
    );

    expect(section(r.stdout, '/deploy rev:broken')).toMatch(
      /❌ `deploy-[^`]+` deploy of b40ce0b \(broken\) stopped at the canary clawdinator-2, step verify: its heartbeat did not report b40ce0b within 3 s; rollback: clawdinator-2 rolled back to 5a4dbee; verified: its heartbeat reports it; untouched: clawdinator-3, clawdinator-1/,
    );
    const after = section(r.stdout, '/status', 2);
    expect(after).toMatch(/🟢 clawdinator-2 {2}online {2}i-[0-9a-f]+ {2}ami-[0-9a-f]+ {2}rev 5a4dbeef since /);
    expect(after).toMatch(/last deploy: b40ce0b4 FAILED at /);

    expect(section(r.stdout, '/deploy rev:$(reboot)')).toContain('rev "$(reboot)" is not a revision');
    // Refused by the gateway before anything is queued: no job id in the answer.
    const unknown = section(r.stdout, '/deploy target:clawdinator-9');
    expect(unknown).toContain('⚠️ clawdinator-9 is not in the fleet registry; /status lists the members.');
    expect(unknown).not.toContain('deploy-');
    expect(section(r.stdout, '/logs name:clawdinator-2 unit:sshd')).toContain(
      '/logs unit: one of clawdinator-bootstrap',
    );

    expect(section(r.stdout, '/deploy rev:v0')).toMatch(
      /deploy of 00c1a3d \(v0\) stopped at the canary clawdinator-2, step switch: the host's health step failed; the host rolled back to 5a4dbee by itself; .*untouched: clawdinator-3, clawdinator-1/,
    );

    const doctor = section(r.stdout, '/doctor name:clawdinator-2');
    expect(doctor).toContain('🩺 clawdinator-2: every check passed');
    expect(doctor).toMatch(/✅ secrets — discord-token 0400, redis-password 0400/);
    expect(doctor).toMatch(/✅ revision — 5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5 since /);
    const logs = section(r.stdout, '/logs name:clawdinator-2 lines:20');
    expect(logs).toContain('redis: AUTH [redacted] failed (WRONGPASS), retrying');
    expect(logs).toContain('github: fetched with Authorization: token [redacted]');
    expect(section(r.stdout, '/logs name:clawdinator-2 unit:clawdinator-deploy')).toMatch(
      /clawdinator-deploy: switch d[0-9a-f]+-rb: b40ce0b40ce0 → 5a4dbeef0c1a started/,
    );

    // The hosts' planted secrets (bot/sandbox/world.ts) appear nowhere: not in replies, not in the log.
    for (const text of [r.stdout, readFileSync(join(dir, 'sandbox.log'), 'utf8')]) {
      expect(text).not.toMatch(/sandbox-redis-[0-9a-f]{12}/);
      expect(text).not.toMatch(/sandbox-ops-bot-token-[0-9a-f]{12}/);
      expect(text).not.toMatch(/ghs_[0-9a-f]{24}sandboxsandbox/);
    }
    const ops = readFileSync(join(dir, 'memory', 'ops.md'), 'utf8');
    expect(ops).toMatch(/deploy all: 5a4dbee \(main\) on clawdinator-2, clawdinator-3, clawdinator-1/);
    expect(ops).toMatch(
      /deploy all: b40ce0b \(broken\) stopped at clawdinator-2 \(verify\); clawdinator-2 rolled back to 5a4dbee/,
    );
  });
});
