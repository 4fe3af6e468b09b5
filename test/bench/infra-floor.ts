// The floor of the synth bench: a bare cdktf app declaring the same resources as the base
// stack and N instance stacks (same classes, same counts), with minimal literal properties
// and nothing else: no registry, settings, validation or policy documents.
import { App, DataTerraformRemoteStateS3, S3Backend, TerraformOutput, TerraformStack, TerraformVariable } from 'cdktf';

// biome-ignore lint/suspicious/noExplicitAny: each is a generated resource class with its own config type
type ResourceClass = new (scope: TerraformStack, id: string, config?: any) => object;

/** The provider classes the stacks use, from deep imports or from the barrel. */
export type AwsClasses = Record<keyof typeof DEEP, ResourceClass>;

/** Class name → its folder under @cdktf/provider-aws/lib (the barrel's namespace, camel-cased). */
export const DEEP = {
  AwsProvider: 'provider',
  DataAwsCallerIdentity: 'data-aws-caller-identity',
  DataAwsPartition: 'data-aws-partition',
  DataAwsRegion: 'data-aws-region',
  DataAwsVpc: 'data-aws-vpc',
  DataAwsSubnets: 'data-aws-subnets',
  DataAwsSecretsmanagerSecretVersion: 'data-aws-secretsmanager-secret-version',
  SecurityGroup: 'security-group',
  VpcSecurityGroupEgressRule: 'vpc-security-group-egress-rule',
  VpcSecurityGroupIngressRule: 'vpc-security-group-ingress-rule',
  S3Bucket: 's3-bucket',
  S3BucketOwnershipControls: 's3-bucket-ownership-controls',
  S3BucketPublicAccessBlock: 's3-bucket-public-access-block',
  S3BucketVersioningA: 's3-bucket-versioning',
  S3BucketServerSideEncryptionConfigurationA: 's3-bucket-server-side-encryption-configuration',
  S3BucketPolicy: 's3-bucket-policy',
  IamRole: 'iam-role',
  IamRolePolicy: 'iam-role-policy',
  IamRolePolicyAttachment: 'iam-role-policy-attachment',
  IamPolicy: 'iam-policy',
  IamInstanceProfile: 'iam-instance-profile',
  EfsFileSystem: 'efs-file-system',
  EfsMountTarget: 'efs-mount-target',
  ElasticacheSubnetGroup: 'elasticache-subnet-group',
  ElasticacheParameterGroup: 'elasticache-parameter-group',
  ElasticacheReplicationGroup: 'elasticache-replication-group',
  Instance: 'instance',
} as const;

/** The same classes through `import … from '@cdktf/provider-aws'`, for reference. */
export async function barrelClasses(): Promise<AwsClasses> {
  const barrel = (await import('@cdktf/provider-aws')) as unknown as Record<string, Record<string, ResourceClass>>;
  const camel = (dir: string) => dir.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  return Object.fromEntries(
    Object.entries(DEEP).map(([name, dir]) => [name, barrel[camel(dir)]?.[name]]),
  ) as AwsClasses;
}

export function floorApp(aws: AwsClasses, outdir: string, instances: number): void {
  const app = new App({ outdir, stackTraces: false });
  const base = new TerraformStack(app, 'base');
  new aws.AwsProvider(base, 'aws', { region: 'eu-central-1' });
  new S3Backend(base, { bucket: 'state', key: 'base.tfstate' });
  new TerraformVariable(base, 'state_bucket', { type: 'string' });
  for (const [cls, id] of [
    ['DataAwsCallerIdentity', 'account'],
    ['DataAwsPartition', 'partition'],
    ['DataAwsRegion', 'region'],
    ['DataAwsVpc', 'vpc'],
    ['DataAwsSubnets', 'subnets'],
  ] as const) {
    new aws[cls](base, id, {});
  }
  new aws.DataAwsSecretsmanagerSecretVersion(base, 'token', { secretId: 'token' });
  for (const id of ['sg1', 'sg2', 'sg3']) new aws.SecurityGroup(base, id, { name: id });
  for (const id of ['eg1', 'eg2'])
    new aws.VpcSecurityGroupEgressRule(base, id, { securityGroupId: 'sg', ipProtocol: '-1' });
  for (const id of ['in1', 'in2'])
    new aws.VpcSecurityGroupIngressRule(base, id, { securityGroupId: 'sg', ipProtocol: 'tcp' });
  new aws.S3Bucket(base, 'bucket', {});
  new aws.S3BucketOwnershipControls(base, 'own', { bucket: 'b', rule: { objectOwnership: 'BucketOwnerEnforced' } });
  new aws.S3BucketPublicAccessBlock(base, 'pab', { bucket: 'b' });
  new aws.S3BucketVersioningA(base, 'ver', { bucket: 'b', versioningConfiguration: { status: 'Enabled' } });
  new aws.S3BucketServerSideEncryptionConfigurationA(base, 'sse', { bucket: 'b', rule: [] });
  new aws.S3BucketPolicy(base, 'policy', { bucket: 'b', policy: '{}' });
  for (const id of ['role1', 'role2']) new aws.IamRole(base, id, { assumeRolePolicy: '{}' });
  for (const id of ['rp1', 'rp2']) new aws.IamRolePolicy(base, id, { role: 'r', policy: '{}' });
  new aws.IamPolicy(base, 'boundary', { policy: '{}' });
  new aws.EfsFileSystem(base, 'efs', {});
  new aws.EfsMountTarget(base, 'mount', { fileSystemId: 'fs', subnetId: 's' });
  new aws.ElasticacheSubnetGroup(base, 'csg', { name: 'c', subnetIds: [] });
  new aws.ElasticacheParameterGroup(base, 'cpg', { name: 'c', family: 'valkey8' });
  new aws.ElasticacheReplicationGroup(base, 'redis', { replicationGroupId: 'c', description: 'c' });
  for (let i = 0; i < 14; i++) new TerraformOutput(base, `out${i}`, { value: 'v' });

  for (let n = 1; n <= instances; n++) {
    const stack = new TerraformStack(app, `clawdinator-${n}`);
    new aws.AwsProvider(stack, 'aws', { region: 'eu-central-1' });
    new S3Backend(stack, { bucket: 'state', key: `${n}.tfstate` });
    new TerraformVariable(stack, 'state_bucket', { type: 'string' });
    new TerraformVariable(stack, 'state_region', { type: 'string' });
    new DataTerraformRemoteStateS3(stack, 'base', { bucket: 'state', key: 'base.tfstate' });
    new aws.IamRole(stack, 'role', { assumeRolePolicy: '{}' });
    new aws.IamRolePolicyAttachment(stack, 'ssm', { role: 'r', policyArn: 'p' });
    new aws.IamRolePolicy(stack, 'own', { role: 'r', policy: '{}' });
    new aws.IamInstanceProfile(stack, 'profile', {});
    new aws.Instance(stack, 'host', { ami: 'ami-0123456789abcdef0', instanceType: 't3.large' });
    for (let i = 0; i < 4; i++) new TerraformOutput(stack, `out${i}`, { value: 'v' });
  }
  app.synth();
}
