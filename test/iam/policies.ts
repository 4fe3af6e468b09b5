// The IAM policies of the synthesized stacks, as AWS would hold them for one test account: the
// deployer role's policy (base), the instance roles' boundary (base) and each instance role's
// own policy plus AmazonSSMManagedInstanceCore (its instance stack). Terraform interpolations
// are replaced by fixed values from one table; an interpolation the table does not know stops
// the test (a `${…}` left in a Resource would match nothing or, as a non-ARN, everything).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { SSM_CORE_ACTIONS } from '../../infra/policy.js';
import type { FleetRegistry } from '../../infra/registry.js';
import { synthStacks } from '../../jobs/terraform/synth.js';
import { SIM_BUCKET, SIM_INFRA_SETTINGS } from '../support/fleet.js';

/** The simulated cloud's default account and region (jobs/cloud/sim-core.ts), and our bucket. */
export const ACCOUNT = '123456789012';
export const REGION = SIM_INFRA_SETTINGS.awsRegion ?? 'eu-central-1';
export const STATE_BUCKET = 'clawdinator-test-state';
const BOUNDARY_ARN = `arn:aws:iam::${ACCOUNT}:policy/clawdinator/clawdinator-instance-boundary`;
const DEPLOYER_ARN = `arn:aws:iam::${ACCOUNT}:role/clawdinator/clawdinator-deployer`;

/** Every interpolation the policies may hold, and the value AWS would see in the test account. */
const VALUES: Record<string, string> = {
  'aws_s3_bucket.bucket.arn': `arn:aws:s3:::${SIM_BUCKET}`,
  'data.aws_caller_identity.account.account_id': ACCOUNT,
  'data.aws_partition.partition.partition': 'aws',
  'data.aws_region.region.region': REGION,
  'aws_iam_policy.instance_boundary.arn': BOUNDARY_ARN,
  'aws_iam_role.vmimport.arn': `arn:aws:iam::${ACCOUNT}:role/vmimport`,
  'var.state_bucket': STATE_BUCKET,
  'data.terraform_remote_state.base.outputs.account_id': ACCOUNT,
  'data.terraform_remote_state.base.outputs.bucket_arn': `arn:aws:s3:::${SIM_BUCKET}`,
  'data.terraform_remote_state.base.outputs.deployer_role_arn': DEPLOYER_ARN,
  'data.terraform_remote_state.base.outputs.partition': 'aws',
  'data.terraform_remote_state.base.outputs.region': REGION,
  'data.terraform_remote_state.base.outputs.instance_boundary_arn': BOUNDARY_ARN,
};

export interface PolicyDocument {
  Version: string;
  Statement: { Sid?: string; Effect: string; Action: string | string[]; Resource: string | string[] }[];
}

export interface PrincipalPolicies {
  /** The ARN the caller has in the request (an assumed-role session). */
  arn: string;
  identity: { name: string; policy: PolicyDocument }[];
  boundary?: { name: string; policy: PolicyDocument };
}

/** Replaces every `${…}` from VALUES; throws naming one it does not know. */
export function substitute(text: string, where: string): string {
  const out = text.replace(/\$\{([^}]*)\}/g, (_, expr: string) => {
    const value = VALUES[expr];
    if (value === undefined) throw new Error(`${where}: no test value for the interpolation \${${expr}}`);
    return value;
  });
  if (out.includes('${')) throw new Error(`${where}: an interpolation is left after substitution`);
  return out;
}

type StackJson = { resource: Record<string, Record<string, Record<string, unknown>>> };

function readStack(dir: string): StackJson {
  return JSON.parse(readFileSync(join(dir, 'cdk.tf.json'), 'utf8')) as StackJson;
}

function policyOf(stack: StackJson, type: string, id: string, where: string): PolicyDocument {
  const text = stack.resource[type]?.[id]?.policy;
  if (typeof text !== 'string') throw new Error(`${where}: no ${type}.${id} policy`);
  return JSON.parse(substitute(text, `${where} ${type}.${id}`)) as PolicyDocument;
}

/** AmazonSSMManagedInstanceCore, as the actions the project's boundary mirrors. */
const SSM_CORE: PolicyDocument = {
  Version: '2012-10-17',
  Statement: [{ Sid: 'AmazonSSMManagedInstanceCore', Effect: 'Allow', Action: SSM_CORE_ACTIONS, Resource: '*' }],
};

/** Synthesizes base and the members' stacks; returns each principal's policies by principal name. */
export async function synthesizedPolicies(
  registry: FleetRegistry,
  outdir: string,
): Promise<Record<string, PrincipalPolicies>> {
  const { dirs } = await synthStacks({ outdir, registry, settings: SIM_INFRA_SETTINGS });
  const baseDir = dirs.base;
  if (baseDir === undefined) throw new Error('synth made no base stack');
  const base = readStack(baseDir);
  const boundary = policyOf(base, 'aws_iam_policy', 'instance_boundary', 'base');
  const principals: Record<string, PrincipalPolicies> = {
    deployer: {
      arn: `arn:aws:sts::${ACCOUNT}:assumed-role/clawdinator-deployer/clawdinator-worker`,
      identity: [{ name: 'deploy', policy: policyOf(base, 'aws_iam_role_policy', 'deployer_policy', 'base') }],
    },
  };
  for (const name of Object.keys(registry)) {
    const dir = dirs[name];
    if (dir === undefined) continue;
    const stack = readStack(dir);
    principals[`instance:${name}`] = {
      arn: `arn:aws:sts::${ACCOUNT}:assumed-role/${name}/i-0123456789abcdef0`,
      identity: [
        { name: 'own', policy: policyOf(stack, 'aws_iam_role_policy', 'own', name) },
        { name: 'AmazonSSMManagedInstanceCore', policy: SSM_CORE },
      ],
      boundary: { name: 'clawdinator-instance-boundary', policy: boundary },
    };
  }
  return principals;
}

export interface Verdict {
  allowed: boolean;
  /** The statements (policy name + Sid) that allowed it. */
  grants: string[];
  /** Context keys the simulator left out as not applying to this action: a mistake in the request. */
  ignored: string[];
  /** The simulator's complaint about the request, when it could not run it. */
  error?: string;
}

/** Evaluates one authorization as AWS would: identity policies within the boundary. */
export async function evaluate(
  policies: PrincipalPolicies,
  request: { action: string; resource: string; context: Record<string, string | string[]> },
): Promise<Verdict> {
  const result = await runSimulation(
    {
      request: {
        principal: policies.arn,
        action: request.action,
        resource: { resource: request.resource, accountId: ACCOUNT },
        contextVariables: request.context,
      },
      identityPolicies: policies.identity,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(policies.boundary === undefined ? {} : { permissionBoundaryPolicies: [policies.boundary] }),
    },
    {},
  );
  if (result.resultType === 'error') {
    return { allowed: false, grants: [], ignored: [], error: result.errors.message };
  }
  const details = result.resultType === 'single' ? [result.result] : result.results;
  const grants = new Set<string>();
  const ignored = new Set<string>();
  for (const detail of details) {
    for (const key of detail.ignoredContextKeys ?? []) ignored.add(key);
    for (const s of detail.analysis.identityAnalysis?.allowStatements ?? []) {
      // The explain's identifier is the statement's Sid (its index when it has none).
      grants.add(`${s.policyId}/${s.explain?.identifier ?? '?'}`);
    }
  }
  return { allowed: result.overallResult === 'Allowed', grants: [...grants], ignored: [...ignored] };
}
