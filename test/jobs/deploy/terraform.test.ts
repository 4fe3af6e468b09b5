// The terraform deployer builds the runner's calls: synth of the member's stack, a plan
// with the state variables and the job id, the state's ids and the fence's lookups in the
// (simulated) cloud, apply of exactly that plan, outputs. The runner itself is tested with
// real terraform in test/jobs/terraform, and the deployer with real terraform killed
// mid-apply in terraform-resume.test.ts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { SynthOptions } from '../../../infra/app.js';
import { createSimCloud, instantSimTimings } from '../../../jobs/cloud/sim.js';
import { TerraformDeployer } from '../../../jobs/deploy/terraform.js';
import { FileRegistryStore } from '../../../jobs/registry/file.js';
import type { Plan, PlanRequest, RunContext } from '../../../jobs/terraform/runner.js';
import { tempDir } from '../../support/cli.js';

const NAME = 'clawdinator-3';
const settings = {
  awsRegion: undefined,
  deployerRoleArn: undefined,
  vpcId: undefined,
  subnetIds: [],
  sshCidrs: [],
  rootVolumeGb: 40,
  redisNodeType: 'cache.t4g.micro',
};
const created = {
  add: 1,
  change: 0,
  destroy: 0,
  resources: [{ address: 'aws_instance.host', action: 'create' as const }],
};

const JOB = 'spawn-test-1';

function setup() {
  const dir = tempDir('clawdinator-tfdeploy-');
  const path = join(dir, 'fleet.json');
  writeFileSync(
    path,
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
  const calls: { op: string; arg: unknown }[] = [];
  const synths: SynthOptions[] = [];
  const state = new Map<string, string>();
  const cloud = createSimCloud({
    timings: instantSimTimings,
    amis: [{ name: 'one', imageId: 'ami-0123456789abcdef0' }],
  });
  const runner = {
    async stateIds(stack: string) {
      calls.push({ op: 'state', arg: stack });
      return new Map(state);
    },
    async plan(request: PlanRequest, _ctx: RunContext): Promise<Plan> {
      calls.push({ op: 'plan', arg: request });
      return {
        stack: request.stack,
        dir: request.dir,
        file: join(request.dir, 'clawdinator.tfplan'),
        summary: created,
      };
    },
    async apply(plan: Plan) {
      calls.push({ op: 'apply', arg: plan });
    },
    async outputs(stack: string, stackDir: string) {
      calls.push({ op: 'outputs', arg: { stack, stackDir } });
      return { instance_id: 'i-0abc', private_ip: '10.0.0.9', role_name: NAME };
    },
  };
  const options = {
    runner,
    cloud,
    registry: new FileRegistryStore(path),
    settings,
    outdir: join(dir, 'out'),
    stateBucket: 'state-bucket',
    stateRegion: 'eu-central-1',
    synth: async (o: SynthOptions) => {
      synths.push(o);
      return { outdir: o.outdir as string, dirs: { [NAME]: join(o.outdir as string, 'stacks', NAME) }, withoutAmi: [] };
    },
  };
  return { calls, synths, options, state, cloud, stackDir: join(dir, 'out', 'stacks', NAME) };
}

describe('terraform deployer', () => {
  it('plans the member’s stack alone, then applies exactly that plan and reads its outputs', async () => {
    const { calls, synths, options, stackDir } = setup();
    const deployer = new TerraformDeployer(options);
    const ctx = { onLine: () => {} };
    expect(await deployer.planInstance(NAME, { jobId: JOB }, ctx)).toEqual(created);
    expect(synths.map((s) => [s.stacks, Object.keys(s.registry)])).toEqual([[[NAME], [NAME]]]);
    expect(await deployer.applyInstance(NAME, { expected: created, jobId: JOB }, ctx)).toEqual({
      instanceId: 'i-0abc',
      privateIp: '10.0.0.9',
    });
    expect(calls).toEqual([
      {
        op: 'plan',
        arg: {
          stack: NAME,
          dir: stackDir,
          vars: { state_bucket: 'state-bucket', state_region: 'eu-central-1', job_id: JOB },
          replace: undefined,
          destroy: undefined,
        },
      },
      { op: 'state', arg: NAME },
      {
        op: 'apply',
        arg: { stack: NAME, dir: stackDir, file: join(stackDir, 'clawdinator.tfplan'), summary: created },
      },
      { op: 'outputs', arg: { stack: NAME, stackDir } },
    ]);
  });

  it('resumed on another worker: plans again within the saved summary before applying', async () => {
    const { calls, options } = setup();
    const deployer = new TerraformDeployer(options);
    await deployer.applyInstance(NAME, { replace: true, expected: created, jobId: JOB }, { onLine: () => {} });
    expect(calls.map((c) => c.op)).toEqual(['state', 'plan', 'apply', 'outputs']);
    expect(calls[1]?.arg).toMatchObject({ replace: ['aws_instance.host'], expected: created });
  });

  it('a destroy applies and reads no outputs', async () => {
    const { calls, options } = setup();
    const deployer = new TerraformDeployer(options);
    const ctx = { onLine: () => {} };
    await deployer.planInstance(NAME, { destroy: true, jobId: JOB }, ctx);
    expect(await deployer.applyInstance(NAME, { destroy: true, expected: created, jobId: JOB }, ctx)).toEqual({
      instanceId: null,
      privateIp: null,
    });
    expect(calls.map((c) => c.op)).toEqual(['plan', 'state', 'apply']);
    expect(calls[0]?.arg).toMatchObject({ destroy: true });
  });

  it('imports what a killed apply of this job launched, and the role and profile it made, instead of creating them again', async () => {
    const { calls, synths, options, cloud } = setup();
    const launched = await cloud.launchInstance({
      name: NAME,
      ami: 'ami-0123456789abcdef0',
      instanceType: 't3.large',
      tags: { 'clawdinator:job': JOB },
    });
    await cloud.createRole(NAME, 'own-bootstrap-and-secrets');
    const deployer = new TerraformDeployer(options);
    const lines: string[] = [];
    const ctx = { onLine: (l: string) => lines.push(l) };
    await deployer.planInstance(NAME, { jobId: JOB }, ctx);
    await deployer.applyInstance(NAME, { expected: created, jobId: JOB }, ctx);
    // The plan made before is not applied: a new one, with the import blocks, within the saved summary.
    expect(calls.map((c) => c.op)).toEqual(['plan', 'state', 'plan', 'apply', 'outputs']);
    expect(calls[2]?.arg).toMatchObject({ expected: created });
    expect(synths.at(-1)?.imports).toEqual({
      [NAME]: { 'aws_instance.host': launched, 'aws_iam_role.role': NAME },
    });
    expect(lines).toContain(
      `aws_instance.host: ${launched} was launched by this job and is not in the state: importing it`,
    );
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
  });

  it('refuses to create beside an instance of the name that neither the state nor this job knows', async () => {
    const { calls, options, cloud } = setup();
    await cloud.launchInstance({ name: NAME, ami: 'ami-0123456789abcdef0', instanceType: 't3.large', tags: {} });
    const deployer = new TerraformDeployer(options);
    await expect(deployer.applyInstance(NAME, { expected: created, jobId: JOB }, { onLine: () => {} })).rejects.toThrow(
      /^clawdinator-3: an instance named clawdinator-3 \(i-[0-9a-f]+, running\) exists that terraform's state does not hold and this job did not launch: not applied/,
    );
    expect(calls.map((c) => c.op)).toEqual(['state']);
  });
});
