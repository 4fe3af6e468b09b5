import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../lib/paths.js';
import { tempDir } from '../support/cli.js';
import { runSandbox, section } from '../support/sandbox-script.js';

const SCRIPT = projectPath('test', 'fixtures', 'sandbox-ami.txt');

describe('the image sandbox script', () => {
  it('rebuilds, rolls out to the canary, and /status flags the member on the older image', async () => {
    const dir = tempDir('clawdinator-sandbox-ami-');
    const r = await runSandbox(dir, ['sandbox', '--fast', '--dir', dir, '--script', SCRIPT]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('8 lines ok, 0 failed');

    // The confirmation, then the stage list as the job goes, the import's bar, the canary.
    expect(section(r.stdout, '/rebuild-ami rollout:canary')).toMatch(
      /\[button Rebuild and roll out \(canary\)\] press with: \/press rebuild-ami:confirm:canary:\d+:\d+\n/,
    );
    const pressed = section(r.stdout, '/press confirm');
    expect(pressed).toContain('**▶ resolve** · build · upload · import · register · rollout');
    expect(pressed).toContain('✓ resolve · ✓ build · ✓ upload · **▶ import** · register · rollout');
    expect(pressed).toMatch(/▰+▱* \d+%\nimport: import-snap-[0-9a-f]+ /);
    // Which peer builds is said by the rebuild itself; the peer's own lines are relayed only
    // when a poll sees its job running, so a fast build may show none of them.
    expect(pressed).toMatch(/build: clawdinator-2 builds 5a4dbee \(job ami-build-[0-9a-f]+\)/);
    const canary = pressed.match(/rollout: canary online on (ami-[0-9a-f]+): clawdinator-2/);
    const ami = canary?.[1] as string;
    expect(ami).toBeDefined();
    expect(pressed).toMatch(
      new RegExp(
        `✅ \`rebuild-ami-[^\`]+\` ${ami} \\(clawdinator-nixos-\\d{14}\\) from 5a4dbee \\(main\\), built by clawdinator-2: available; canary online on ${ami} \\(clawdinator-2\\)`,
      ),
    );

    const status = section(r.stdout, '/status');
    // Each host runs the revision its image was built from (the image's revision tag).
    expect(status).toMatch(
      new RegExp(`🟢 clawdinator-2 {2}online {2}i-[0-9a-f]+ {2}${ami} {2}rev 5a4dbeef since [0-9: -]+\\n`),
    );
    expect(status).toMatch(
      /🟢 clawdinator-1 {2}online {2}i-[0-9a-f]+ {2}ami-0c1a3d5a4d0b0e001 {2}rev 00c1a3d5 since [0-9: -]+ {2}⚠️ older image\n/,
    );
    expect(section(r.stdout, '/status name:clawdinator-1')).toContain(
      `AMI: ami-0c1a3d5a4d0b0e001 (registry: ami-0c1a3d5a4d0b0e001) ⚠️ older than the newest image ${ami}`,
    );

    expect(section(r.stdout, '/rebuild-ami rev:$(reboot)')).toContain('rev "$(reboot)" is not a revision');
    expect(section(r.stdout, '/rebuild-ami rev:no-such-branch')).toMatch(
      /❌ `rebuild-ami-[^`]+` refused: no-such-branch is not a commit, branch or tag of sandbox\/clawdinators/,
    );

    const registry = JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8'));
    expect(registry['clawdinator-2'].ami).toBe(ami);
    expect(registry['clawdinator-1'].ami).toBe('ami-0c1a3d5a4d0b0e001');
    const cloud = JSON.parse(readFileSync(join(dir, 'cloud.json'), 'utf8')) as { objects: string[] };
    expect(cloud.objects.filter((k) => k.startsWith('images/'))).toEqual([
      expect.stringMatching(/^images\/clawdinator-nixos-\d{14}-5a4dbee\.raw$/),
    ]);
    expect(readFileSync(join(dir, 'images', 'clawdinator-stand-in-5a4dbeef0c1a.raw'), 'utf8')).toContain(
      'CLAWDINATOR SANDBOX STAND-IN IMAGE',
    );
    const ops = readFileSync(join(dir, 'memory', 'ops.md'), 'utf8');
    expect(ops).toMatch(
      new RegExp(
        `UTC rebuild-ami: ${ami} \\(clawdinator-nixos-\\d{14}\\) from 5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5 \\(main\\), built by clawdinator-2`,
      ),
    );
    expect(ops).toMatch(new RegExp(`UTC replace clawdinator-2: i-[0-9a-f]+ → i-[0-9a-f]+ \\(${ami}\\)`));
    expect(r.stdout).not.toContain('sandbox-discord-token-');
    expect(r.stdout).not.toContain('PRIVATE KEY');
  });
});
