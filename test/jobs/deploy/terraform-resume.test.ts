// The Terraform deployer killed mid-apply and resumed by another process — real terraform,
// the S3 backend (use_lockfile) on the s3rver stand-in, and a stand-in of the member's
// instance stack made of built-in `terraform_data` resources: the AWS provider cannot be
// downloaded here, so the full spawn job over real terraform is not run (the spawn job's
// own resume is test/jobs/types/spawn-resume.test.ts, on the simulated deployer).
// What this proves: the first worker plans and starts the apply (its lock owner saved, as
// the spawn job saves it with the plan), then dies with its terraform, leaving the state
// lock behind; a second worker process, given only the saved summary and owner, re-plans
// within that summary, releases the lock its job's dead run left, applies, and the state
// holds exactly one instance stand-in.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Terraform interpolations, not JavaScript templates
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockOwner } from '../../../jobs/terraform/lock.js';
import type { PlanSummary } from '../../../jobs/terraform/summary.js';
import { projectPath } from '../../../lib/paths.js';
import { tempDir } from '../../support/cli.js';
import { S3_KEY, S3_SECRET, type S3StandIn, startS3StandIn } from '../terraform/s3-standin.js';
import { HAS_TERRAFORM, killHard, waitFor } from '../terraform/tf-stack.js';

const NAME = 'clawdinator-3';
const STATE_KEY = `clawdinator/instances/${NAME}.tfstate`;
const INSTANCE = 'i-0standin000000003';

/** The member's stack as the deployer plans it, with terraform_data for the instance. */
function standInStack(slowSeconds: number | null): unknown {
  const host: Record<string, unknown> = { input: INSTANCE };
  if (slowSeconds !== null) host.provisioner = [{ 'local-exec': { command: `sleep ${slowSeconds}` } }];
  return {
    terraform: { backend: { s3: { key: STATE_KEY, use_lockfile: true } } },
    variable: { state_bucket: { type: 'string' }, state_region: { type: 'string' } },
    resource: { terraform_data: { host } },
    output: { instance_id: { value: '${terraform_data.host.output}' }, private_ip: { value: '10.0.0.3' } },
  };
}

type Said = { line?: string; summary?: PlanSummary; outputs?: unknown; error?: string };

function deployerProcess(config: Record<string, unknown>): {
  child: ChildProcess;
  said: Said[];
  done: Promise<number>;
} {
  const child = spawn(
    process.execPath,
    [projectPath('dist/test/support/deployer-process.js'), JSON.stringify(config)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const said: Said[] = [];
  let buffer = '';
  child.stdout?.on('data', (d: Buffer) => {
    buffer += d.toString();
    const lines = buffer.split('\n');
    buffer = lines.pop() ?? '';
    for (const l of lines) if (l.trim() !== '') said.push(JSON.parse(l) as Said);
  });
  const done = new Promise<number>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? (signal ? -1 : 0))),
  );
  return { child, said, done };
}

describe.skipIf(!HAS_TERRAFORM)('Terraform deployer, killed mid-apply and resumed in another process', () => {
  let s3: S3StandIn;
  beforeAll(async () => {
    s3 = await startS3StandIn(['state']);
  });
  afterAll(async () => {
    await s3?.close();
  });

  it('the resumed apply re-plans within the saved summary, releases its own stale lock, and makes one instance', async () => {
    const dir = tempDir('clawdinator-tfresume-');
    const registryPath = join(dir, 'fleet.json');
    writeFileSync(
      registryPath,
      JSON.stringify({
        [NAME]: {
          host: NAME,
          instanceType: 't3.large',
          bootstrapPrefix: `bootstrap/${NAME}`,
          discordTokenSecret: `clawdinator/discord-token/${NAME}`,
          ami: 'ami-0123456789abcdef0',
        },
      }),
    );
    const backendConfig = {
      bucket: 'state',
      region: 'eu-central-1',
      endpoints: `{s3="${s3.endpoint}"}`,
      use_path_style: 'true',
      access_key: S3_KEY,
      secret_key: S3_SECRET,
      skip_credentials_validation: 'true',
      skip_requesting_account_id: 'true',
      skip_metadata_api_check: 'true',
      skip_region_validation: 'true',
      skip_s3_checksum: 'true',
    };
    // Saved in the job with the plan, as the spawn job's plan step does.
    const owner = lockOwner();

    // The first worker: plans, then applies; the instance takes a minute to "create".
    const firstOut = join(dir, 'worker-1');
    const first = deployerProcess({
      name: NAME,
      registryPath,
      outdir: firstOut,
      stack: standInStack(60),
      backendConfig,
      owner,
      plan: true,
    });
    await waitFor(
      () => first.said.some((s) => s.line?.includes("Provisioning with 'local-exec'")),
      'the first apply to be under way',
      60_000,
    );
    const saved = first.said.find((s) => s.summary)?.summary as PlanSummary;
    expect(saved.resources).toEqual([{ address: 'terraform_data.host', action: 'create' }]);
    // It dies with everything it started: its terraform, the provisioner's sleep.
    first.child.kill('SIGKILL');
    killHard(join(firstOut, 'stacks', NAME));
    expect(await first.done).toBe(-1);
    expect(first.said.some((s) => s.outputs !== undefined)).toBe(false);
    expect(await s3.get('state', `${STATE_KEY}.tflock`)).toBeDefined();

    // Another worker resumes the job at its apply step: no plan of its own in memory, only
    // the saved summary and owner. (No sleep now: provisioners are not part of a plan.)
    const second = deployerProcess({
      name: NAME,
      registryPath,
      outdir: join(dir, 'worker-2'),
      stack: standInStack(null),
      backendConfig,
      owner,
      plan: false,
      expected: saved,
    });
    expect(await second.done).toBe(0);
    const lines = second.said.flatMap((s) => (s.line === undefined ? [] : [s.line]));
    expect(lines.some((l) => l.startsWith("releasing the lock of this job's earlier run: "))).toBe(true);
    expect(lines).toContain(
      'plan for clawdinator-3: 1 to add, 0 to change, 0 to destroy: terraform_data.host (create)',
    );
    expect(second.said.find((s) => s.outputs)?.outputs).toEqual({ instanceId: INSTANCE, privateIp: '10.0.0.3' });
    expect(await s3.get('state', `${STATE_KEY}.tflock`)).toBeUndefined();
    const state = JSON.parse((await s3.get('state', STATE_KEY)) as string) as {
      resources: { type: string; name: string; instances: unknown[] }[];
    };
    expect(state.resources.map((r) => `${r.type}.${r.name}`)).toEqual(['terraform_data.host']);
    expect(state.resources[0]?.instances).toHaveLength(1);
  });
});
