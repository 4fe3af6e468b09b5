// The base stack: what the whole fleet shares. Applied from an operator's machine with the
// operator's credentials (`clawdinator infra apply base`); the deployer role cannot change it.
//
// Instance roles are not here but in each instance stack: "its own bootstrap prefix and its
// own secrets" needs one role per host, and a base that listed the hosts would change at
// every spawn. Base holds the permissions boundary that caps every instance role, and the
// deployer may create instance roles only under that boundary.
//
// Provider classes are imported one file each: the barrel `@cdktf/provider-aws` loads all
// ~1 500 resources (4–5 s, 560 MiB) where these imports load what is used (see the bench).
import { DataAwsCallerIdentity } from '@cdktf/provider-aws/lib/data-aws-caller-identity/index.js';
import { DataAwsPartition } from '@cdktf/provider-aws/lib/data-aws-partition/index.js';
import { DataAwsRegion } from '@cdktf/provider-aws/lib/data-aws-region/index.js';
import { DataAwsSecretsmanagerSecretVersion } from '@cdktf/provider-aws/lib/data-aws-secretsmanager-secret-version/index.js';
import { DataAwsSubnets } from '@cdktf/provider-aws/lib/data-aws-subnets/index.js';
import { DataAwsVpc } from '@cdktf/provider-aws/lib/data-aws-vpc/index.js';
import { EfsFileSystem } from '@cdktf/provider-aws/lib/efs-file-system/index.js';
import { EfsMountTarget } from '@cdktf/provider-aws/lib/efs-mount-target/index.js';
import { ElasticacheParameterGroup } from '@cdktf/provider-aws/lib/elasticache-parameter-group/index.js';
import { ElasticacheReplicationGroup } from '@cdktf/provider-aws/lib/elasticache-replication-group/index.js';
import { ElasticacheSubnetGroup } from '@cdktf/provider-aws/lib/elasticache-subnet-group/index.js';
import { IamPolicy } from '@cdktf/provider-aws/lib/iam-policy/index.js';
import { IamRole } from '@cdktf/provider-aws/lib/iam-role/index.js';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy/index.js';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider/index.js';
import { S3Bucket } from '@cdktf/provider-aws/lib/s3-bucket/index.js';
import { S3BucketOwnershipControls } from '@cdktf/provider-aws/lib/s3-bucket-ownership-controls/index.js';
import { S3BucketPolicy } from '@cdktf/provider-aws/lib/s3-bucket-policy/index.js';
import { S3BucketPublicAccessBlock } from '@cdktf/provider-aws/lib/s3-bucket-public-access-block/index.js';
import { S3BucketServerSideEncryptionConfigurationA } from '@cdktf/provider-aws/lib/s3-bucket-server-side-encryption-configuration/index.js';
import { S3BucketVersioningA } from '@cdktf/provider-aws/lib/s3-bucket-versioning/index.js';
import { SecurityGroup } from '@cdktf/provider-aws/lib/security-group/index.js';
import { SsmDocument } from '@cdktf/provider-aws/lib/ssm-document/index.js';
import { VpcSecurityGroupEgressRule } from '@cdktf/provider-aws/lib/vpc-security-group-egress-rule/index.js';
import { VpcSecurityGroupIngressRule } from '@cdktf/provider-aws/lib/vpc-security-group-ingress-rule/index.js';
import { TerraformIterator, TerraformOutput, TerraformStack } from 'cdktf';
import type { Construct } from 'constructs';
import { HOST_DOCUMENT, hostDocumentContent } from './host-document.js';
import {
  APP_TAG,
  AUDIT_PREFIX,
  BASE_OUTPUTS,
  BASE_STACK,
  INSTANCE_ROLE_PATH,
  REDIS_AUTH_SECRET,
  stateKey,
} from './names.js';
import { policyDocument, SSM_CORE_ACTIONS, serviceTrust } from './policy.js';
import type { InfraSettings } from './settings.js';
import { stateBucketVariable, useStateBackend } from './state.js';

const REDIS_PORT = 6379;
const NFS_PORT = 2049;

export class BaseStack extends TerraformStack {
  constructor(scope: Construct, settings: InfraSettings) {
    super(scope, BASE_STACK);
    new AwsProvider(this, 'aws', { region: settings.awsRegion, defaultTags: [{ tags: { ...APP_TAG } }] });
    useStateBackend(this, BASE_STACK);
    const stateBucket = stateBucketVariable(this).stringValue;

    const account = new DataAwsCallerIdentity(this, 'account').accountId;
    const partition = new DataAwsPartition(this, 'partition').partition;
    const region = new DataAwsRegion(this, 'region').region;
    const iamArn = (resource: string) => `arn:${partition}:iam::${account}:${resource}`;
    const secretArn = (name: string) => `arn:${partition}:secretsmanager:${region}:${account}:secret:${name}`;
    const instanceRoles = iamArn(`role${INSTANCE_ROLE_PATH}*`);
    const deployerArn = iamArn('role/clawdinator/clawdinator-deployer');

    // Network: the default VPC and its default subnets (one per zone) unless configured.
    let vpcId: string;
    let subnetIds: string[];
    if (settings.vpcId !== undefined) {
      vpcId = settings.vpcId;
      subnetIds = settings.subnetIds;
    } else {
      const vpc = new DataAwsVpc(this, 'default_vpc', { default: true });
      vpcId = vpc.id;
      subnetIds = new DataAwsSubnets(this, 'default_subnets', {
        filter: [
          { name: 'vpc-id', values: [vpc.id] },
          { name: 'default-for-az', values: ['true'] },
        ],
      }).ids;
    }

    // Hosts: nothing inbound (SSM needs none) unless SSH CIDRs are configured; all outbound.
    const instanceSg = new SecurityGroup(this, 'instance_sg', {
      name: 'clawdinator-instance',
      description: 'CLAWDINATOR hosts: no inbound unless SSH CIDRs are configured',
      vpcId,
    });
    const instanceSgId = instanceSg.id;
    new VpcSecurityGroupEgressRule(this, 'instance_egress_ipv4', {
      securityGroupId: instanceSgId,
      ipProtocol: '-1',
      cidrIpv4: '0.0.0.0/0',
    });
    new VpcSecurityGroupEgressRule(this, 'instance_egress_ipv6', {
      securityGroupId: instanceSgId,
      ipProtocol: '-1',
      cidrIpv6: '::/0',
    });
    for (const cidr of settings.sshCidrs) {
      const family = cidr.includes(':') ? { cidrIpv6: cidr } : { cidrIpv4: cidr };
      new VpcSecurityGroupIngressRule(this, `ssh_${cidr.replace(/[^0-9a-fA-F]/g, '_')}`, {
        securityGroupId: instanceSgId,
        ipProtocol: 'tcp',
        fromPort: 22,
        toPort: 22,
        description: 'SSH from a configured CIDR',
        ...family,
      });
    }
    const efsSg = this.fromHostsOnly('efs', NFS_PORT, vpcId, instanceSgId);
    const redisSg = this.fromHostsOnly('redis', REDIS_PORT, vpcId, instanceSgId);

    // Images and bootstrap bundles: private, versioned, encrypted, TLS only, kept on destroy.
    const bucket = new S3Bucket(this, 'bucket', { bucketPrefix: 'clawdinator-', lifecycle: { preventDestroy: true } });
    // Each read of an attribute makes a new token (with a stack trace): read each once.
    const bucketId = bucket.id;
    const bucketArn = bucket.arn;
    new S3BucketOwnershipControls(this, 'bucket_ownership', {
      bucket: bucketId,
      rule: { objectOwnership: 'BucketOwnerEnforced' },
    });
    const publicAccess = new S3BucketPublicAccessBlock(this, 'bucket_public_access', {
      bucket: bucketId,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
    new S3BucketVersioningA(this, 'bucket_versioning', {
      bucket: bucketId,
      versioningConfiguration: { status: 'Enabled' },
    });
    new S3BucketServerSideEncryptionConfigurationA(this, 'bucket_encryption', {
      bucket: bucketId,
      rule: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: 'AES256' }, bucketKeyEnabled: true }],
    });
    new S3BucketPolicy(this, 'bucket_policy', {
      bucket: bucketId,
      // S3 refuses a bucket policy while the public access block is still being set.
      dependsOn: [publicAccess],
      policy: policyDocument([
        {
          Sid: 'TlsOnly',
          Effect: 'Deny',
          Principal: { AWS: '*' },
          Action: 's3:*',
          Resource: [bucketArn, `${bucketArn}/*`],
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        },
      ]),
    });

    // VM import reads the uploaded image from the bucket (the role name is fixed by AWS).
    const vmimport = new IamRole(this, 'vmimport', {
      name: 'vmimport',
      assumeRolePolicy: serviceTrust('vmie.amazonaws.com', { StringEquals: { 'sts:Externalid': 'vmimport' } }),
    });
    new IamRolePolicy(this, 'vmimport_policy', {
      role: vmimport.id,
      name: 'vmimport',
      policy: policyDocument([
        {
          Sid: 'ReadImages',
          Effect: 'Allow',
          Action: ['s3:GetBucketLocation', 's3:GetObject', 's3:ListBucket'],
          Resource: [bucketArn, `${bucketArn}/*`],
        },
        {
          Sid: 'RegisterImages',
          Effect: 'Allow',
          Action: ['ec2:ModifySnapshotAttribute', 'ec2:CopySnapshot', 'ec2:RegisterImage', 'ec2:Describe*'],
          Resource: '*',
        },
      ]),
    });

    // The most any instance role may do; each instance stack narrows it to its own host.
    const boundary = new IamPolicy(this, 'instance_boundary', {
      name: 'clawdinator-instance-boundary',
      path: '/clawdinator/',
      description: 'Permissions boundary of every CLAWDINATOR instance role',
      policy: policyDocument([
        { Sid: 'SsmCore', Effect: 'Allow', Action: SSM_CORE_ACTIONS, Resource: '*' },
        { Sid: 'ListBootstrap', Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn },
        { Sid: 'ReadBootstrap', Effect: 'Allow', Action: 's3:GetObject', Resource: `${bucketArn}/*` },
        { Sid: 'WriteAudit', Effect: 'Allow', Action: 's3:PutObject', Resource: `${bucketArn}/${AUDIT_PREFIX}*` },
        {
          Sid: 'ReadSecrets',
          Effect: 'Allow',
          Action: 'secretsmanager:GetSecretValue',
          Resource: secretArn('clawdinator/*'),
        },
        { Sid: 'AssumeDeployer', Effect: 'Allow', Action: 'sts:AssumeRole', Resource: deployerArn },
      ]),
    });

    // The deployer: what the control plane on a host assumes to run jobs. Only instance
    // roles may assume it; it manages fleet instances, images, instance roles (under the
    // boundary), SSM commands and the instance stacks' state, and cannot touch base.
    const deployer = new IamRole(this, 'deployer', {
      name: 'clawdinator-deployer',
      path: '/clawdinator/',
      maxSessionDuration: 3600,
      assumeRolePolicy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: iamArn('root') },
            Action: 'sts:AssumeRole',
            Condition: { ArnLike: { 'aws:PrincipalArn': instanceRoles } },
          },
        ],
      }),
    });
    // What the control plane may run on a host over SSM: the shipped host script's actions
    // with checked parameters (switch, doctor, logs).
    new SsmDocument(this, 'host_document', {
      name: HOST_DOCUMENT,
      documentType: 'Command',
      documentFormat: 'JSON',
      content: hostDocumentContent(),
    });
    const fleetTag = { StringEquals: { 'aws:ResourceTag/app': APP_TAG.app } };
    const stateArn = `arn:${partition}:s3:::${stateBucket}`;
    new IamRolePolicy(this, 'deployer_policy', {
      role: deployer.id,
      name: 'deploy',
      policy: policyDocument([
        {
          Sid: 'Read',
          Effect: 'Allow',
          Action: [
            'ec2:Describe*',
            'ssm:DescribeInstanceInformation',
            'ssm:GetCommandInvocation',
            'ssm:ListCommandInvocations',
            'ssm:ListCommands',
            'secretsmanager:ListSecrets',
          ],
          Resource: '*',
        },
        {
          Sid: 'Launch',
          Effect: 'Allow',
          Action: ['ec2:RunInstances', 'ec2:ImportSnapshot', 'ec2:RegisterImage'],
          Resource: '*',
        },
        {
          Sid: 'TagOnCreate',
          Effect: 'Allow',
          Action: 'ec2:CreateTags',
          Resource: '*',
          Condition: { StringEquals: { 'ec2:CreateAction': ['RunInstances', 'ImportSnapshot', 'RegisterImage'] } },
        },
        {
          Sid: 'FleetInstances',
          Effect: 'Allow',
          Action: [
            'ec2:TerminateInstances',
            'ec2:StopInstances',
            'ec2:StartInstances',
            'ec2:RebootInstances',
            'ec2:ModifyInstanceAttribute',
            'ec2:ModifyInstanceMetadataOptions',
            'ec2:CreateTags',
            'ec2:DeleteTags',
          ],
          Resource: '*',
          Condition: fleetTag,
        },
        {
          Sid: 'FleetImages',
          Effect: 'Allow',
          Action: ['ec2:DeregisterImage', 'ec2:DeleteSnapshot', 'ec2:CreateTags'],
          Resource: '*',
          Condition: { StringEquals: { 'aws:ResourceTag/clawdinator': 'true' } },
        },
        {
          // VM Import leaves the imported snapshot untagged: the rebuild tags it as ours (only
          // with our tag keys), or FleetImages could not delete it when prune deregisters its image.
          Sid: 'TagImportedSnapshots',
          Effect: 'Allow',
          Action: 'ec2:CreateTags',
          Resource: `arn:${partition}:ec2:${region}::snapshot/*`,
          Condition: {
            StringEquals: { 'aws:RequestTag/clawdinator': 'true' },
            'ForAllValues:StringEquals': {
              'aws:TagKeys': [
                'Name',
                'clawdinator',
                'clawdinator:revision',
                'clawdinator:built-by',
                'clawdinator:image-object',
              ],
            },
          },
        },
        { Sid: 'PassRoles', Effect: 'Allow', Action: 'iam:PassRole', Resource: [instanceRoles, vmimport.arn] },
        {
          Sid: 'CreateBoundedInstanceRoles',
          Effect: 'Allow',
          Action: ['iam:CreateRole', 'iam:PutRolePermissionsBoundary'],
          Resource: instanceRoles,
          Condition: { StringEquals: { 'iam:PermissionsBoundary': boundary.arn } },
        },
        {
          Sid: 'ManageInstanceRoles',
          Effect: 'Allow',
          Action: [
            'iam:GetRole',
            'iam:DeleteRole',
            'iam:TagRole',
            'iam:UntagRole',
            'iam:PutRolePolicy',
            'iam:GetRolePolicy',
            'iam:DeleteRolePolicy',
            'iam:ListRolePolicies',
            'iam:ListAttachedRolePolicies',
            'iam:ListInstanceProfilesForRole',
          ],
          Resource: instanceRoles,
        },
        {
          Sid: 'AttachSsmCore',
          Effect: 'Allow',
          Action: ['iam:AttachRolePolicy', 'iam:DetachRolePolicy'],
          Resource: instanceRoles,
          Condition: {
            ArnEquals: { 'iam:PolicyARN': `arn:${partition}:iam::aws:policy/AmazonSSMManagedInstanceCore` },
          },
        },
        {
          Sid: 'ManageInstanceProfiles',
          Effect: 'Allow',
          Action: [
            'iam:CreateInstanceProfile',
            'iam:DeleteInstanceProfile',
            'iam:GetInstanceProfile',
            'iam:AddRoleToInstanceProfile',
            'iam:RemoveRoleFromInstanceProfile',
            'iam:TagInstanceProfile',
            'iam:UntagInstanceProfile',
          ],
          Resource: iamArn(`instance-profile${INSTANCE_ROLE_PATH}*`),
        },
        {
          // Our document only (infra/host-document.ts): never AWS-RunShellScript, so this
          // role cannot run an arbitrary root shell on a host.
          Sid: 'RunHostDocument',
          Effect: 'Allow',
          Action: 'ssm:SendCommand',
          Resource: `arn:${partition}:ssm:${region}:${account}:document/${HOST_DOCUMENT}`,
        },
        {
          Sid: 'RunOnFleetInstances',
          Effect: 'Allow',
          Action: 'ssm:SendCommand',
          Resource: `arn:${partition}:ec2:${region}:${account}:instance/*`,
          Condition: { StringEquals: { 'ssm:resourceTag/app': APP_TAG.app } },
        },
        { Sid: 'ListBucket', Effect: 'Allow', Action: ['s3:ListBucket', 's3:GetBucketLocation'], Resource: bucketArn },
        {
          Sid: 'BucketObjects',
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload'],
          Resource: `${bucketArn}/*`,
        },
        { Sid: 'ListState', Effect: 'Allow', Action: 's3:ListBucket', Resource: stateArn },
        {
          Sid: 'InstanceStacksState',
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
          Resource: `${stateArn}/${stateKey('clawdinator-*')}*`,
        },
        {
          Sid: 'ReadBaseState',
          Effect: 'Allow',
          Action: 's3:GetObject',
          Resource: `${stateArn}/${stateKey(BASE_STACK)}`,
        },
        {
          Sid: 'CheckSecrets',
          Effect: 'Allow',
          Action: 'secretsmanager:DescribeSecret',
          Resource: secretArn('clawdinator/*'),
        },
        {
          Sid: 'HostSecrets',
          Effect: 'Allow',
          Action: [
            'secretsmanager:CreateSecret',
            'secretsmanager:PutSecretValue',
            'secretsmanager:DeleteSecret',
            'secretsmanager:TagResource',
          ],
          Resource: secretArn('clawdinator/host/*'),
        },
      ]),
    });

    // The hive mind (/memory): encrypted, reachable over NFS from the hosts only, kept on destroy.
    const efs = new EfsFileSystem(this, 'memory', {
      creationToken: 'clawdinator-memory',
      encrypted: true,
      tags: { Name: 'clawdinator-memory' },
      lifecycle: { preventDestroy: true },
    });
    const subnets = TerraformIterator.fromList(subnetIds);
    new EfsMountTarget(this, 'memory_mount', {
      forEach: subnets,
      fileSystemId: efs.id,
      subnetId: subnets.value,
      securityGroups: [efsSg],
    });

    // The fleet's Redis: BullMQ loses jobs to eviction, so noeviction; provisioned (the
    // serverless flavour has no parameter groups); TLS and an auth token from Secrets Manager.
    const authToken = new DataAwsSecretsmanagerSecretVersion(this, 'redis_auth', { secretId: REDIS_AUTH_SECRET });
    const redisSubnets = new ElasticacheSubnetGroup(this, 'redis_subnets', {
      name: 'clawdinator',
      description: 'CLAWDINATOR fleet Redis',
      subnetIds,
    });
    const redisParams = new ElasticacheParameterGroup(this, 'redis_params', {
      name: 'clawdinator-valkey8',
      family: 'valkey8',
      description: 'noeviction: BullMQ must never lose a key to eviction',
      parameter: [{ name: 'maxmemory-policy', value: 'noeviction' }],
    });
    const redis = new ElasticacheReplicationGroup(this, 'redis', {
      replicationGroupId: 'clawdinator',
      description: 'BullMQ queues and notifications of the CLAWDINATOR fleet',
      engine: 'valkey',
      engineVersion: '8.0',
      nodeType: settings.redisNodeType,
      port: REDIS_PORT,
      numCacheClusters: 2,
      automaticFailoverEnabled: true,
      multiAzEnabled: true,
      parameterGroupName: redisParams.name,
      subnetGroupName: redisSubnets.name,
      securityGroupIds: [redisSg],
      atRestEncryptionEnabled: 'true',
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      authToken: authToken.secretString,
      snapshotRetentionLimit: 1,
    });

    const outputs: Record<keyof typeof BASE_OUTPUTS, string> = {
      bucket: bucket.bucket,
      bucketArn,
      efsId: efs.id,
      redisEndpoint: redis.primaryEndpointAddress,
      redisPort: String(REDIS_PORT),
      redisAuthSecret: REDIS_AUTH_SECRET,
      instanceSecurityGroupId: instanceSgId,
      instanceBoundaryArn: boundary.arn,
      deployerRoleArn: deployer.arn,
      deployerRoleName: deployer.name,
      vmimportRoleName: vmimport.name,
      accountId: account,
      partition,
      region,
    };
    for (const [key, value] of Object.entries(outputs)) {
      // Output names may equal resource ids ("bucket"), which construct ids may not.
      const output = new TerraformOutput(this, `output_${key}`, { value });
      output.overrideLogicalId(BASE_OUTPUTS[key as keyof typeof BASE_OUTPUTS]);
    }
  }

  /** A security group that admits one TCP port from the hosts' group and nothing else. */
  private fromHostsOnly(name: string, port: number, vpcId: string, instanceSgId: string): string {
    const sg = new SecurityGroup(this, `${name}_sg`, {
      name: `clawdinator-${name}`,
      description: `CLAWDINATOR ${name}: port ${port} from the hosts only`,
      vpcId,
    });
    new VpcSecurityGroupIngressRule(this, `${name}_from_hosts`, {
      securityGroupId: sg.id,
      ipProtocol: 'tcp',
      fromPort: port,
      toPort: port,
      referencedSecurityGroupId: instanceSgId,
    });
    return sg.id;
  }
}
