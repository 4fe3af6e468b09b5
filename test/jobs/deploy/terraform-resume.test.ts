// The Terraform deployer killed mid-apply and resumed by another process — real terraform,
// the S3 backend (use_lockfile) on the s3rver stand-in, and a stand-in of the member's
// instance stack made of built-in `terraform_data` resources: the AWS provider cannot be
// downloaded here, so the full spawn job over real terraform is not run (the spawn job's
// own resume is test/jobs/types/spawn-resume.test.ts, on the simulated deployer). The
// stand-in's instance does what the AWS provider's create does: RunInstances (a call to this
// test's simulated cloud, tagged with the job id from the stack's `job_id` variable), then
// the wait for it to run (a sleep), and only then terraform records it in its state.
// What this proves: the first worker plans and starts the apply (its lock owner saved, as
// the spawn job saves it with the plan) and dies with its terraform after the launch and
// before the state was saved, leaving the instance and the state lock behind; a second
// worker process, given only the saved summary and owner, finds the instance by the job's
// tag, imports it with an import block (the plan says "import", within the saved create),
// releases the lock its job's dead run left and applies: one instance in the cloud at the
// end, the one the state holds.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Terraform interpolations, not JavaScript templates
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../../jobs/cloud/sim.js';
import { lockOwner } from '../../../jobs/terraform/lock.js';
import type { PlanSummary } from '../../../jobs/terraform/summary.js';
import { projectPath } from '../../../lib/paths.js';
import { tempDir } from '../../support/cli.js';
import { type SimServer, serveSim } from '../../support/sim-server.js';
import { S3_KEY, S3_SECRET, type S3StandIn, startS3StandIn } from '../terraform/s3-standin.js';
import { HAS_TERRAFORM, killHard } from '../terraform/tf-stack.js';

async function waitForValue<T>(check: () => Promise<T | undefined>, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const NAME = 'clawdinator-3';
const STATE_KEY = `clawdinator/instances/${NAME}.tfstate`;
const AMI = 'ami-0123456789abcdef0';
const JOB = 'spawn-resume-1';

/**
 * The member's stack as the deployer plans it, with terraform_data for the instance: its
 * create launches one in the simulated cloud (as RunInstances would, tagged with the job),
 * then waits `seconds` for it to run, before terraform records it.
 */
function standInStack(simUrl: string, seconds: number): unknown {
  const launch = JSON.stringify({
    method: 'launchInstance',
    args: [{ name: NAME, ami: AMI, instanceType: 't3.large', tags: { 'clawdinator:job': '${var.job_id}' } }],
  });
  const runInstances = `node -e 'fetch(process.argv[1], { method: "POST", body: process.argv[2] }).then((r) => r.json()).then((b) => process.exit(b.error ? 1 : 0))' ${simUrl} '${launch}'`;
  return {
    terraform: { backend: { s3: { key: STATE_KEY, use_lockfile: true } } },
    variable: {
      state_bucket: { type: 'string' },
      state_region: { type: 'string' },
      job_id: { type: 'string', default: '' },
    },
    resource: {
      terraform_data: {
        host: { input: NAME, provisioner: [{ 'local-exec': { command: `${runInstances} && sleep ${seconds}` } }] },
      },
    },
    output: { instance_id: { value: '${terraform_data.host.id}' }, private_ip: { value: '10.0.0.3' } },
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
  let cloud: SimCloud;
  let sim: SimServer;
  beforeAll(async () => {
    s3 = await startS3StandIn(['state']);
    cloud = createSimCloud({ timings: instantSimTimings, amis: [{ name: 'clawdinator-nixos', imageId: AMI }] });
    sim = await serveSim(cloud);
  });
  afterAll(async () => {
    await s3?.close();
    await sim?.close();
    cloud?.close();
  });

  it('killed after the launch, before the state was saved: the resumed apply imports that instance, and one runs', async () => {
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

    const stack = standInStack(sim.url, 60);
    const common = { name: NAME, registryPath, stack, backendConfig, owner, jobId: JOB, simUrl: sim.url };

    // The first worker: plans, then applies; the launch is made, and the instance takes a minute to run.
    const firstOut = join(dir, 'worker-1');
    const first = deployerProcess({ ...common, outdir: firstOut, plan: true });
    const launched = await waitForValue(
      async () => (await cloud.listFleetInstances()).find((i) => i.name === NAME),
      'the first apply to launch the instance',
      60_000,
    );
    expect(launched.tags['clawdinator:job']).toBe(JOB);
    const saved = first.said.find((s) => s.summary)?.summary as PlanSummary;
    expect(saved.resources).toEqual([{ address: 'terraform_data.host', action: 'create' }]);
    // It dies with everything it started, after the launch and before terraform saved it.
    first.child.kill('SIGKILL');
    killHard(join(firstOut, 'stacks', NAME));
    expect(await first.done).toBe(-1);
    expect(first.said.some((s) => s.outputs !== undefined)).toBe(false);
    expect(await s3.get('state', `${STATE_KEY}.tflock`)).toBeDefined();
    expect(await s3.get('state', STATE_KEY)).toBeUndefined();

    // Another worker resumes the job at its apply step: no plan of its own in memory, only
    // the saved summary and owner.
    const second = deployerProcess({ ...common, outdir: join(dir, 'worker-2'), plan: false, expected: saved });
    expect(await second.done).toBe(0);
    const lines = second.said.flatMap((s) => (s.line === undefined ? [] : [s.line]));
    expect(lines).toContain(
      `terraform_data.host: ${launched.instanceId} was launched by this job and is not in the state: importing it`,
    );
    expect(lines.some((l) => l.startsWith("releasing the lock of this job's earlier run: "))).toBe(true);
    expect(lines).toContain(
      'plan for clawdinator-3: 1 to import, 0 to add, 0 to change, 0 to destroy: terraform_data.host (import)',
    );
    expect(second.said.find((s) => s.outputs)?.outputs).toEqual({
      instanceId: launched.instanceId,
      privateIp: '10.0.0.3',
    });
    expect(await s3.get('state', `${STATE_KEY}.tflock`)).toBeUndefined();
    // In the cloud: one instance, launched once — the one terraform's state now holds.
    const running = (await cloud.listFleetInstances()).filter((i) => i.name === NAME);
    expect(running.map((i) => i.instanceId)).toEqual([launched.instanceId]);
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
    const state = JSON.parse((await s3.get('state', STATE_KEY)) as string) as {
      resources: { type: string; name: string; instances: { attributes: { id: string } }[] }[];
    };
    expect(state.resources.map((r) => `${r.type}.${r.name}`)).toEqual(['terraform_data.host']);
    expect(state.resources[0]?.instances.map((i) => i.attributes.id)).toEqual([launched.instanceId]);
  });
});
