// The simulated deployer: the synthesized instance stack made real in the simulated cloud,
// with a state of its own (in the simulated S3) as terraform keeps one, refused like the
// runner refuses, and fenced like the terraform deployer against a second create.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import type { FleetRegistry } from '../../../infra/registry.js';
import { createSimCloud, instantSimTimings, type SimCloud } from '../../../jobs/cloud/sim.js';
import { SimDeployer } from '../../../jobs/deploy/sim.js';
import { FileRegistryStore } from '../../../jobs/registry/file.js';
import { PlanRefusedError } from '../../../jobs/terraform/runner.js';
import { tempDir } from '../../support/cli.js';

const settings = {
  awsRegion: 'eu-central-1',
  deployerRoleArn: undefined,
  vpcId: undefined,
  subnetIds: [],
  sshCidrs: [],
  rootVolumeGb: 40,
  redisNodeType: 'cache.t4g.micro',
};
const AMI = 'ami-0000000000000000a';
const NEWER = 'ami-0000000000000000b';
const NAME = 'clawdinator-3';
const ctx = { onLine: () => {} };
const JOB = 'spawn-test-1';

let cloud: SimCloud;
let registry: FileRegistryStore;
let deployer: SimDeployer;

function registryWith(ami: string): FleetRegistry {
  return {
    [NAME]: {
      host: NAME,
      instanceType: 't3.large',
      bootstrapPrefix: `bootstrap/${NAME}`,
      discordTokenSecret: `clawdinator/discord-token/${NAME}`,
      ami,
    },
  };
}

beforeEach(() => {
  const dir = tempDir('clawdinator-simdeploy-');
  writeFileSync(join(dir, 'fleet.json'), JSON.stringify(registryWith(AMI)));
  cloud = createSimCloud({
    timings: instantSimTimings,
    amis: [
      { name: 'one', imageId: AMI },
      { name: 'two', imageId: NEWER },
    ],
    buckets: ['fleet-bucket'],
  });
  registry = new FileRegistryStore(join(dir, 'fleet.json'));
  deployer = new SimDeployer({ cloud, registry, settings, outdir: join(dir, 'out'), bucket: 'fleet-bucket' });
  return () => cloud.close();
});

describe('simulated deployer', () => {
  it('plans every resource the stack declares, and applying creates the instance it declares, once', async () => {
    const summary = await deployer.planInstance(NAME, { jobId: JOB }, ctx);
    expect(summary).toMatchObject({ add: 5, change: 0, destroy: 0 });
    expect(summary.resources.map((r) => r.address)).toEqual([
      'aws_iam_instance_profile.profile',
      'aws_iam_role.role',
      'aws_iam_role_policy.own',
      'aws_iam_role_policy_attachment.ssm_core',
      'aws_instance.host',
    ]);
    const out = await deployer.applyInstance(NAME, { expected: summary, jobId: JOB }, ctx);
    expect(out.instanceId).toMatch(/^i-/);
    const [instance] = await cloud.listFleetInstances();
    expect(instance).toMatchObject({ name: NAME, imageId: AMI, instanceType: 't3.large', privateIp: out.privateIp });
    expect(instance?.tags).toMatchObject({ app: 'clawdinator', Name: NAME, 'clawdinator:job': JOB });
    expect(await cloud.getJson('fleet-bucket', 'clawdinator/clawdinator-3.tfstate')).toEqual({
      resources: {
        'aws_iam_instance_profile.profile': NAME,
        'aws_iam_role.role': NAME,
        'aws_iam_role_policy.own': `${NAME}:aws_iam_role_policy.own`,
        'aws_iam_role_policy_attachment.ssm_core': `${NAME}:aws_iam_role_policy_attachment.ssm_core`,
        'aws_instance.host': out.instanceId,
      },
    });
    // Applied again (a resumed job): nothing left to do, the same instance.
    expect(await deployer.planInstance(NAME, { jobId: JOB }, ctx)).toEqual({
      add: 0,
      change: 0,
      destroy: 0,
      resources: [],
    });
    expect(await deployer.applyInstance(NAME, { expected: summary, jobId: JOB }, ctx)).toEqual(out);
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
  });

  it('the user data names the instance and its bootstrap bucket', async () => {
    const hosts: string[] = [];
    cloud.onHostOnline((h) => hosts.push(h.userData));
    await deployer.applyInstance(
      NAME,
      { expected: await deployer.planInstance(NAME, { jobId: JOB }, ctx), jobId: JOB },
      ctx,
    );
    await new Promise((r) => setTimeout(r, 10));
    expect(hosts[0]).toContain('CLAWDINATOR_INSTANCE_NAME=clawdinator-3');
    expect(hosts[0]).toContain('CLAWDINATOR_BOOTSTRAP_BUCKET=fleet-bucket');
  });

  it('a new AMI in the registry plans a replace: refused unless asked; a destroy is planned when asked', async () => {
    await deployer.applyInstance(
      NAME,
      { expected: await deployer.planInstance(NAME, { jobId: JOB }, ctx), jobId: JOB },
      ctx,
    );
    await registry.update(() => registryWith(NEWER), { message: 'rollout' });
    const refused = deployer.planInstance(NAME, { jobId: JOB }, ctx);
    await expect(refused).rejects.toThrow(PlanRefusedError);
    await expect(refused).rejects.toThrow(
      'plan for clawdinator-3 would destroy aws_instance.host, which was not asked: not applied (1 to add, 0 to change, 1 to destroy: aws_instance.host (replace))',
    );
    const replace = await deployer.planInstance(NAME, { replace: true, jobId: JOB }, ctx);
    await deployer.applyInstance(NAME, { replace: true, expected: replace, jobId: JOB }, ctx);
    expect((await cloud.listFleetInstances()).filter((i) => i.state !== 'shutting-down')).toMatchObject([
      { imageId: NEWER },
    ]);
    const destroy = await deployer.planInstance(NAME, { destroy: true, jobId: JOB }, ctx);
    expect(destroy).toMatchObject({ add: 0, destroy: 5 });
    // The plan of a destroy is what the state holds, and applying it empties the cloud and the state.
    expect(await deployer.applyInstance(NAME, { destroy: true, expected: destroy, jobId: JOB }, ctx)).toEqual({
      instanceId: null,
      privateIp: null,
    });
  });

  it('an apply beyond the saved plan is refused', async () => {
    const empty = { add: 0, change: 0, destroy: 0, resources: [] };
    await expect(deployer.applyInstance(NAME, { expected: empty, jobId: JOB }, ctx)).rejects.toThrow(
      /goes beyond the saved plan: not applied/,
    );
    expect(cloud.calls.byOperation.RunInstances).toBeUndefined();
  });

  it('an apply killed after RunInstances, before the state was saved: the resumed apply imports, one instance runs', async () => {
    const lines: string[] = [];
    const log = { onLine: (l: string) => lines.push(l) };
    const summary = await deployer.planInstance(NAME, { jobId: JOB }, log);
    cloud.faults.arm('apply', { message: 'Error: the worker was killed\n\nSIGKILL after RunInstances.' });
    await expect(deployer.applyInstance(NAME, { expected: summary, jobId: JOB }, log)).rejects.toThrow(
      'terraform apply failed for clawdinator-3: the worker was killed: SIGKILL after RunInstances.',
    );
    // Made, and not in the state: an instance, the role and the profile.
    const [launched] = await cloud.listFleetInstances();
    expect(await cloud.getJson('fleet-bucket', 'clawdinator/clawdinator-3.tfstate')).toBeNull();
    expect(await cloud.roleExists(NAME)).toBe(true);
    // Resumed: what this job made is imported, nothing is created again.
    const out = await deployer.applyInstance(NAME, { expected: summary, jobId: JOB }, log);
    expect(out.instanceId).toBe(launched?.instanceId);
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
    expect(cloud.calls.byOperation.CreateRole).toBe(1);
    expect(cloud.calls.byOperation.CreateInstanceProfile).toBe(1);
    expect((await cloud.listFleetInstances()).map((i) => i.instanceId)).toEqual([launched?.instanceId]);
    expect(lines).toContain(
      'plan for clawdinator-3: 3 to import, 2 to add, 0 to change, 0 to destroy: aws_iam_instance_profile.profile (import), aws_iam_role.role (import), aws_iam_role_policy.own (create), aws_iam_role_policy_attachment.ssm_core (create), aws_instance.host (import)',
    );
  });

  it('a replace killed after launching the new host (the old one gone): the resumed replace adopts the new one', async () => {
    const first = await deployer.applyInstance(
      NAME,
      { expected: await deployer.planInstance(NAME, { jobId: JOB }, ctx), jobId: JOB },
      ctx,
    );
    const replaceJob = 'replace-test-1';
    const replace = await deployer.planInstance(NAME, { replace: true, jobId: replaceJob }, ctx);
    cloud.faults.arm('apply');
    await expect(
      deployer.applyInstance(NAME, { replace: true, expected: replace, jobId: replaceJob }, ctx),
    ).rejects.toThrow(
      'terraform apply failed for clawdinator-3: simulated apply failure: The apply fault of the simulated cloud was armed.',
    );
    const launched = (await cloud.listFleetInstances()).find((i) => i.tags['clawdinator:job'] === replaceJob);
    const out = await deployer.applyInstance(NAME, { replace: true, expected: replace, jobId: replaceJob }, ctx);
    const live = (await cloud.listFleetInstances()).filter((i) => i.state === 'running' || i.state === 'pending');
    expect(live.map((i) => i.instanceId)).toEqual([out.instanceId]);
    expect(out.instanceId).toBe(launched?.instanceId);
    expect(out.instanceId).not.toBe(first.instanceId);
    expect(cloud.calls.byOperation.RunInstances).toBe(2);
  });

  it('a member from before the jobs (untagged, no state) is the state; a tagged stranger is not adopted', async () => {
    const seeded = createSimCloud({
      timings: instantSimTimings,
      amis: [{ name: 'one', imageId: AMI }],
      fleet: [{ name: NAME, imageId: AMI }],
      buckets: ['fleet-bucket'],
    });
    const dir = tempDir('clawdinator-simdeploy-');
    const d = new SimDeployer({ cloud: seeded, registry, settings, outdir: join(dir, 'out'), bucket: 'fleet-bucket' });
    expect(await d.planInstance(NAME, { jobId: JOB }, ctx)).toEqual({ add: 0, change: 0, destroy: 0, resources: [] });
    expect(await d.planInstance(NAME, { destroy: true, jobId: JOB }, ctx)).toMatchObject({ destroy: 5 });
    seeded.close();

    // An instance of the name launched by another job, which no state holds, is not the member's.
    await cloud.launchInstance({
      name: NAME,
      ami: AMI,
      instanceType: 't3.large',
      tags: { 'clawdinator:job': 'spawn-other' },
    });
    const summary = await deployer.planInstance(NAME, { jobId: JOB }, ctx);
    expect(summary).toMatchObject({ add: 5, destroy: 0 });
    await expect(deployer.applyInstance(NAME, { expected: summary, jobId: JOB }, ctx)).rejects.toThrow(
      /exists that terraform's state does not hold and this job did not launch: not applied/,
    );
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
  });
});
