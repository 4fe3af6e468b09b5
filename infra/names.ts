// Names the infra app, the jobs and `clawdinator infra` share. No cdktf here: jobs import
// this without loading the CDKTF app.

/** The stack of the shared resources; every other stack is one fleet member. */
export const BASE_STACK = 'base';

/** One state object per stack, so planning one stack never touches another's state. */
export function stateKey(stack: string): string {
  return `clawdinator/${stack}.tfstate`;
}

/**
 * The Redis auth token. `clawdinator infra init` creates it; the base stack reads it into
 * ElastiCache; hosts read it through their instance role (`clawdinator/fleet/*`).
 */
export const REDIS_AUTH_SECRET = 'clawdinator/fleet/redis-auth';

/** Secrets every host may read: the control plane's shared ones. */
export const FLEET_SECRETS_PREFIX = 'clawdinator/fleet/';

/** Secrets of one host (e.g. its job-signing key), readable by that host only. */
export function hostSecretsPrefix(name: string): string {
  return `clawdinator/host/${name}/`;
}

/**
 * Where each host's control plane writes the audit trail in the bootstrap bucket, one object
 * per event (jobs/audit.ts). The one S3 write an instance role is allowed.
 */
export const AUDIT_PREFIX = 'audit/';

/** IAM path of the per-instance roles; the deployer may create roles under it only. */
export const INSTANCE_ROLE_PATH = '/clawdinator/instance/';

export const APP_TAG = { app: 'clawdinator' } as const;

/**
 * Tag a member's instance carries from its launch: the id of the job that made it (the
 * instance stack's `job_id` variable). A resumed apply finds by it what a killed one
 * launched; the stack ignores later changes of it, so later plans and CI's synth stay stable.
 */
export const JOB_TAG = 'clawdinator:job';
/** The instance stacks' variable holding that job id (set by the deployer with -var). */
export const JOB_ID_VARIABLE = 'job_id';

/** Addresses of a member's resources with fixed names or a job tag: what a resumed apply may import. */
export const MEMBER_ADDRESSES = {
  instance: 'aws_instance.host',
  role: 'aws_iam_role.role',
  profile: 'aws_iam_instance_profile.profile',
} as const;

/** Variables the runner sets with `-var`: where the state lives. */
export const STATE_VARIABLES = { bucket: 'state_bucket', region: 'state_region' } as const;

/**
 * The `-var` values for one stack: base declares only the bucket (its deployer policy);
 * instance stacks also the region they read base's state from.
 */
export function stateVariables(stack: string, bucket: string, region: string | undefined): Record<string, string> {
  const vars: Record<string, string> = { [STATE_VARIABLES.bucket]: bucket };
  if (stack !== BASE_STACK && region !== undefined) vars[STATE_VARIABLES.region] = region;
  return vars;
}

/** `-backend-config` values: the partial S3 backend's bucket and region. */
export function backendConfig(bucket: string, region: string | undefined): Record<string, string> {
  return region === undefined ? { bucket } : { bucket, region };
}

/** The base stack's outputs: what instance stacks and jobs read. */
export const BASE_OUTPUTS = {
  bucket: 'bucket',
  bucketArn: 'bucket_arn',
  efsId: 'efs_id',
  redisEndpoint: 'redis_endpoint',
  redisPort: 'redis_port',
  redisAuthSecret: 'redis_auth_secret',
  instanceSecurityGroupId: 'instance_security_group_id',
  instanceBoundaryArn: 'instance_boundary_arn',
  deployerRoleArn: 'deployer_role_arn',
  deployerRoleName: 'deployer_role_name',
  vmimportRoleName: 'vmimport_role_name',
  accountId: 'account_id',
  partition: 'partition',
  region: 'region',
} as const;
