// Failures of the image pipeline as a sandbox user sees them, in-process: the fault registry
// of the simulated world armed directly (what `/sim fail import|build` arms, once that command
// exists): a failed stand-in build and an import AWS deletes each end the job with one clean
// line naming the stage and the cause, and a rebuild after them succeeds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Sandbox, startSandbox } from '../../../bot/sandbox/run.js';
import { tempDir } from '../../support/cli.js';

describe('sandbox: the image pipeline’s failures', () => {
  let sandbox: Sandbox;
  const out: string[] = [];

  beforeAll(async () => {
    sandbox = await startSandbox({
      dir: tempDir('clawdinator-sandbox-ami-'),
      fast: true,
      fleetMaxSize: 5,
      print: (t) => out.push(t),
      logLevel: 'silent',
    });
    expect((await sandbox.runLine('/spawn name:clawdinator-2', { waitMs: 60_000 })).ok).toBe(true);
  });
  afterAll(async () => {
    await sandbox?.stop();
  });

  it('a failed build: the job ends naming the builder and nix’s exit', async () => {
    out.length = 0;
    // The build job is tried twice (a fetch can fail once): both fail.
    sandbox.cloud.faults.arm('build', {
      times: 2,
      message: 'error: builder for clawdinator-nixos-image failed with exit code 1',
    });
    const result = await sandbox.runLine('/rebuild-ami', { waitMs: 60_000 });
    expect(result.ok).toBe(false);
    const last = out.filter((l) => l.startsWith('❌')).at(-1) as string;
    expect(last).toMatch(
      /^❌ `rebuild-ami-[^`]+` rebuild-ami: build failed: build on clawdinator-2 failed: build: nix build exited 1: error: builder for clawdinator-nixos-image failed with exit code 1 · \d+s$/,
    );
    expect(sandbox.cloud.calls.byOperation.ImportSnapshot).toBeUndefined();
  });

  it('an import AWS deletes: the job ends with AWS’s message; the next rebuild succeeds', async () => {
    out.length = 0;
    sandbox.cloud.faults.arm('import-task', { message: 'ClientError: Disk validation failed [Invalid MBR]' });
    const failed = await sandbox.runLine('/rebuild-ami rev:v1', { waitMs: 60_000 });
    expect(failed.ok).toBe(false);
    expect(out.filter((l) => l.startsWith('❌')).at(-1)).toMatch(
      /^❌ `rebuild-ami-[^`]+` rebuild-ami: import failed: ImportSnapshot import-snap-[0-9a-f]+: failed: ClientError: Disk validation failed \[Invalid MBR\] \(ImportTask\.deleted\) · \d+s$/,
    );
    expect(sandbox.cloud.calls.byOperation.RegisterImage).toBeUndefined();
    out.length = 0;
    const again = await sandbox.runLine('/rebuild-ami rev:v1', { waitMs: 60_000 });
    expect(again.ok).toBe(true);
    expect(out.filter((l) => l.startsWith('✅')).at(-1)).toMatch(
      /from 0ddba11 \(v1\), built by clawdinator-2: available · \d+s$/,
    );
  });
});
