// `clawdinator infra` and the cdktf app entry, run from the built dist/ as CI and operators
// run them. Plans against AWS need credentials and the AWS provider: the runner's own tests
// drive terraform; here, what happens before terraform and how errors read.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../lib/paths.js';
import { runCli, tempDir } from '../support/cli.js';

function registryFile(content: unknown): string {
  const path = join(tempDir(), 'fleet.json');
  writeFileSync(path, JSON.stringify(content));
  return path;
}

const example = JSON.parse(readFileSync(projectPath('infra', 'fleet.json'), 'utf8'));

describe('clawdinator infra', () => {
  it('synthesizes every stack of the registry, reporting members without an AMI', async () => {
    const registry = registryFile({
      ...example,
      'clawdinator-2': {
        ...example['clawdinator-1'],
        host: 'clawdinator-2',
        ami: undefined,
        bootstrapPrefix: 'b/2',
        discordTokenSecret: 'clawdinator/t/2',
      },
    });
    const out = join(tempDir(), 'out');
    const r = await runCli(['infra', 'synth', '--out', out], { env: { CLAWDINATOR_FLEET_REGISTRY: registry } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `synthesized base: ${out}/stacks/base\nsynthesized clawdinator-1: ${out}/stacks/clawdinator-1\n` +
        'skipped clawdinator-2: no ami recorded yet\n',
    );
    expect(existsSync(join(out, 'stacks', 'clawdinator-1', 'cdk.tf.json'))).toBe(true);
  });

  it('refuses a bad registry entry in one line, exit 2', async () => {
    const registry = registryFile({ 'clawdinator-1': { ...example['clawdinator-1'], instanceType: 'big' } });
    const r = await runCli(['infra', 'synth', '--out', tempDir()], { env: { CLAWDINATOR_FLEET_REGISTRY: registry } });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `clawdinator: fleet registry ${registry}: clawdinator-1: instanceType must be an EC2 instance type like t3.large\n`,
    );
  });

  it('names the missing setting, the unknown stack and the missing binary', async () => {
    let r = await runCli(['infra', 'plan', 'base', '--out', tempDir()]);
    expect([r.code, r.stderr]).toEqual([
      2,
      'clawdinator: config: CLAWDINATOR_STATE_BUCKET (or stateBucket in the config file) is not set: expected the S3 bucket of the Terraform state\n',
    ]);
    const env = { CLAWDINATOR_STATE_BUCKET: 'clawdinator-state' };
    r = await runCli(['infra', 'plan', 'clawdinator-9', '--out', tempDir()], { env });
    expect([r.code, r.stderr]).toEqual([
      2,
      'clawdinator: no stack "clawdinator-9": expected base or a name in the fleet registry\n',
    ]);
    r = await runCli(['infra', 'apply', 'base', '--out', tempDir()], {
      env: { ...env, CLAWDINATOR_TERRAFORM_BIN: 'no-tf' },
    });
    expect([r.code, r.stderr]).toEqual([
      1,
      'clawdinator: cannot run no-tf (ENOENT): install terraform or tofu, or set CLAWDINATOR_TERRAFORM_BIN\n',
    ]);
  });
});

describe('the cdktf app entry (cdktf.json "app", npm run synth)', () => {
  it('synthesizes from dist/ into the directory the cdktf CLI names', () => {
    const out = join(tempDir(), 'cdktf-out');
    const r = spawnSync(process.execPath, [projectPath('dist', 'infra', 'main.js')], {
      cwd: tempDir(),
      env: { PATH: process.env.PATH, CDKTF_OUTDIR: out },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('synthesized base\nsynthesized clawdinator-1\n');
    expect(JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')).stacks).toHaveProperty('clawdinator-1');
  });
});
