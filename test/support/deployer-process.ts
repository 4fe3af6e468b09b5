// The Terraform deployer in its own process, for the killed-and-resumed apply test: the
// real TerraformDeployer and runner (real terraform, the S3 backend on the test's s3rver
// stand-in), with the member's synthesized stack replaced by a stand-in of built-in
// `terraform_data` resources (the AWS provider cannot be downloaded here), the import blocks
// the deployer asks for written into it as the instance stack writes them, and the test's
// simulated cloud (over loopback HTTP) where the deployer's fence looks up instances.
// `node deployer-process.js '<json>'`; prints JSON lines: {line}, {summary}, {outputs}, {error}.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SynthOptions } from '../../infra/app.js';
import { TerraformDeployer } from '../../jobs/deploy/terraform.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import type { LockOwner } from '../../jobs/terraform/lock.js';
import { Terraform } from '../../jobs/terraform/runner.js';
import type { PlanSummary } from '../../jobs/terraform/summary.js';
import { errorLine } from '../../lib/errors.js';
import { simCloudClient } from './sim-server.js';

const config = JSON.parse(process.argv[2] ?? '{}') as {
  name: string;
  registryPath: string;
  outdir: string;
  /** The stand-in stack's Terraform JSON. */
  stack: unknown;
  backendConfig: Record<string, string>;
  owner: LockOwner;
  /** Plan first (the first worker) or only apply within the saved summary (the resumed one). */
  plan: boolean;
  expected?: PlanSummary;
  /** The job asking: its id tags what the apply launches. */
  jobId: string;
  /** The test's simulated cloud (sim-server.ts). */
  simUrl: string;
  /** Where the stand-in keeps the member's instance (default: terraform_data.host). */
  instanceAddress?: string;
};
const say = (msg: unknown) => process.stdout.write(`${JSON.stringify(msg)}\n`);

const deployer = new TerraformDeployer({
  cloud: simCloudClient(config.simUrl),
  addresses: { instance: config.instanceAddress ?? 'terraform_data.host' },
  runner: new Terraform({ bin: 'terraform', backendConfig: config.backendConfig, killGraceMs: 5_000 }),
  registry: new FileRegistryStore(config.registryPath),
  settings: {
    awsRegion: 'eu-central-1',
    deployerRoleArn: undefined,
    vpcId: undefined,
    subnetIds: [],
    sshCidrs: [],
    rootVolumeGb: 40,
    redisNodeType: 'cache.t4g.micro',
  },
  outdir: config.outdir,
  stateBucket: 'state',
  stateRegion: 'eu-central-1',
  synth: async (o: SynthOptions) => {
    const dir = join(o.outdir as string, 'stacks', config.name);
    mkdirSync(dir, { recursive: true });
    // As InstanceStack writes them: one import block per address the deployer asks for.
    const imports = Object.entries(o.imports?.[config.name] ?? {}).map(([to, id]) => ({ to, id }));
    const stack = imports.length > 0 ? { ...(config.stack as object), import: imports } : config.stack;
    writeFileSync(join(dir, 'cdk.tf.json'), JSON.stringify(stack, null, 2));
    return { outdir: o.outdir as string, dirs: { [config.name]: dir }, withoutAmi: [] };
  },
});
const ctx = { onLine: (line: string) => say({ line }), owner: config.owner };
try {
  let expected = config.expected;
  if (config.plan) {
    expected = await deployer.planInstance(config.name, { jobId: config.jobId }, ctx);
    say({ summary: expected });
  }
  if (expected === undefined) throw new Error('no plan and no expected summary');
  say({ outputs: await deployer.applyInstance(config.name, { expected, jobId: config.jobId }, ctx) });
} catch (err) {
  say({ error: errorLine(err) });
  process.exitCode = 1;
}
