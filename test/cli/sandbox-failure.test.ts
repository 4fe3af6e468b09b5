import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../lib/paths.js';
import { tempDir } from '../support/cli.js';
import { runSandbox, section } from '../support/sandbox-script.js';

const FAILURE = projectPath('test', 'fixtures', 'sandbox-failure.txt');

describe('the failure sandbox script', () => {
  it('/sim fail apply times:5: the spawn fails after its retries, naming the step and terraform’s cause', async () => {
    // The script up to the failed spawn: what holds whatever cleans up afterwards.
    const text = readFileSync(FAILURE, 'utf8');
    const upToFailure = text.slice(0, text.indexOf('\n# Cleaned up'));
    const dir = tempDir('clawdinator-failure-');
    const script = join(dir, 'failure-first-half.txt');
    writeFileSync(script, `${upToFailure}\n/sim faults\n`);
    const r = await runSandbox(dir, ['sandbox', '--fast', '--dir', dir, '--script', script]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('4 lines ok, 0 failed');
    expect(
      section(r.stdout, '/sim fail apply times:5 message:"Error: creating EC2 Instance: InsufficientInstanceCapacity"'),
    ).toContain('💥 armed: the next 5 × `apply` fail');
    const failed = section(r.stdout, '/spawn name:clawdinator-3');
    // The job's one end (the finalizer): the step, terraform's cause, what its undo did.
    expect(failed).toMatch(
      /❌ `spawn-[^`]+` spawn clawdinator-3 failed at apply: terraform apply failed for clawdinator-3: creating EC2 Instance: InsufficientInstanceCapacity\. Undone: terminated i-[0-9a-f]+\./,
    );
    // Three attempts, each at the apply: two of the five failures are left.
    expect(section(r.stdout, '/sim faults', 1)).toMatch(/💥 2× {2}apply/);
  });

  it('the whole script: the name is free after the clean-up and a second spawn goes online', async () => {
    const dir = tempDir('clawdinator-failure-');
    const r = await runSandbox(dir, ['sandbox', '--fast', '--dir', dir, '--script', FAILURE]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('7 lines ok, 0 failed');
    expect(section(r.stdout, '/spawn name:clawdinator-3', 1)).toMatch(/✅ `spawn-[^`]+` clawdinator-3 online: i-/);
    expect(section(r.stdout, '/status name:clawdinator-3', 1)).toContain('🟢 **clawdinator-3** — online');
    expect(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8'))).toHaveProperty('clawdinator-3');
  });
});
