// One stack per fleet member: its role (bounded by base's boundary, narrowed to its own
// bootstrap prefix and secrets), its instance profile and its EC2 instance. Its own state
// key, so spawning or replacing one host never plans a change to another or to base.
//
// Fencing against a second create: the instance is tagged at launch with the id of the job
// that made it (the `job_id` variable, set by the deployer; later changes of the tag are
// ignored, so a later plan or CI's synth never changes it). A deployer that resumes an apply
// killed after the launch, or after the role or profile were made but before terraform saved
// its state, looks them up and passes `imports`: import blocks adopt them into the state
// instead of creating a second instance or dying on EntityAlreadyExists.
import { IamInstanceProfile } from '@cdktf/provider-aws/lib/iam-instance-profile/index.js';
import { IamRole } from '@cdktf/provider-aws/lib/iam-role/index.js';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy/index.js';
import { IamRolePolicyAttachment } from '@cdktf/provider-aws/lib/iam-role-policy-attachment/index.js';
import { Instance } from '@cdktf/provider-aws/lib/instance/index.js';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider/index.js';
import { TerraformOutput, TerraformStack, TerraformVariable } from 'cdktf';
import type { Construct } from 'constructs';
import { isInstanceName, NAME_RULE } from '../lib/config.js';
import {
  APP_TAG,
  AUDIT_PREFIX,
  BASE_OUTPUTS,
  FLEET_SECRETS_PREFIX,
  hostSecretsPrefix,
  INSTANCE_ROLE_PATH,
  JOB_ID_VARIABLE,
  JOB_TAG,
  type MEMBER_ADDRESSES,
} from './names.js';
import { policyDocument, serviceTrust } from './policy.js';
import { type RegistryEntry, RegistryError } from './registry.js';
import type { InfraSettings } from './settings.js';
import { baseState, useStateBackend } from './state.js';

/** Where user data leaves the host's identity for the NixOS bootstrap units. */
export const INSTANCE_ENV_FILE = '/var/lib/clawdinator/instance.env';

/** What exists already and terraform's state lacks, by address (MEMBER_ADDRESSES): its id. */
export type MemberImports = Partial<Record<(typeof MEMBER_ADDRESSES)[keyof typeof MEMBER_ADDRESSES], string>>;

export class InstanceStack extends TerraformStack {
  constructor(
    scope: Construct,
    name: string,
    entry: RegistryEntry & { ami: string },
    settings: InfraSettings,
    imports: MemberImports = {},
  ) {
    // The name becomes the IAM role and profile names and part of the session name (IAM's
    // limits) and the host's name: checked here too, whatever registry the stack came from.
    if (!isInstanceName(name)) throw new RegistryError(`no stack "${name}": not a fleet name (${NAME_RULE})`);
    super(scope, name);
    const jobId = new TerraformVariable(this, JOB_ID_VARIABLE, {
      type: 'string',
      default: '',
      description: 'The job that launches the instance (its clawdinator:job tag); set by the deployer',
    });
    const assumeRole = settings.deployerRoleArn
      ? [{ roleArn: settings.deployerRoleArn, sessionName: `clawdinator-${name}`.slice(0, 64) }]
      : undefined;
    new AwsProvider(this, 'aws', { region: settings.awsRegion, assumeRole, defaultTags: [{ tags: { ...APP_TAG } }] });
    useStateBackend(this, name, settings.deployerRoleArn);
    const base = baseState(this, settings.deployerRoleArn);
    // Each read makes a new token (with a stack trace): read each output once.
    const out = (key: keyof typeof BASE_OUTPUTS) => base.getString(BASE_OUTPUTS[key]);
    const partition = out('partition');
    const secretsArn = `arn:${partition}:secretsmanager:${out('region')}:${out('accountId')}:secret:`;
    const secretArn = (secret: string) => `${secretsArn}${secret}`;
    const bucketArn = out('bucketArn');

    const role = new IamRole(this, 'role', {
      name,
      path: INSTANCE_ROLE_PATH,
      description: `Instance role of ${name}`,
      permissionsBoundary: out('instanceBoundaryArn'),
      assumeRolePolicy: serviceTrust('ec2.amazonaws.com'),
    });
    new IamRolePolicyAttachment(this, 'ssm_core', {
      role: role.name,
      policyArn: `arn:${partition}:iam::aws:policy/AmazonSSMManagedInstanceCore`,
    });
    new IamRolePolicy(this, 'own', {
      role: role.id,
      name: 'own-bootstrap-and-secrets',
      policy: policyDocument([
        {
          Sid: 'ReadOwnBootstrap',
          Effect: 'Allow',
          Action: 's3:GetObject',
          Resource: `${bucketArn}/${entry.bootstrapPrefix}/*`,
        },
        // The audit trail, one new object per event; the bucket's versioning keeps anything
        // overwritten. Nothing else in the bucket is writable by a host.
        { Sid: 'WriteAudit', Effect: 'Allow', Action: 's3:PutObject', Resource: `${bucketArn}/${AUDIT_PREFIX}*` },
        {
          Sid: 'ReadOwnSecrets',
          Effect: 'Allow',
          Action: 'secretsmanager:GetSecretValue',
          // A secret's ARN is its name, "-" and six random characters.
          Resource: [
            secretArn(`${entry.discordTokenSecret}-??????`),
            secretArn(`${hostSecretsPrefix(name)}*`),
            secretArn(`${FLEET_SECRETS_PREFIX}*`),
          ],
        },
        { Sid: 'AssumeDeployer', Effect: 'Allow', Action: 'sts:AssumeRole', Resource: out('deployerRoleArn') },
      ]),
    });
    const profile = new IamInstanceProfile(this, 'profile', { name, path: INSTANCE_ROLE_PATH, role: role.name });

    const host = new Instance(this, 'host', {
      // From the registry only: a new image replaces hosts when a job asks, never at a plan.
      ami: entry.ami,
      instanceType: entry.instanceType,
      iamInstanceProfile: profile.name,
      vpcSecurityGroupIds: [out('instanceSecurityGroupId')],
      subnetId: pickSubnet(name, settings.subnetIds),
      // IMDSv2 only, one hop: containers and other network namespaces cannot reach it.
      metadataOptions: {
        httpEndpoint: 'enabled',
        httpTokens: 'required',
        httpPutResponseHopLimit: 1,
        instanceMetadataTags: 'disabled',
      },
      rootBlockDevice: {
        volumeType: 'gp3',
        volumeSize: settings.rootVolumeGb,
        encrypted: true,
        deleteOnTermination: true,
      },
      userData: userData(name, entry, out('bucket')),
      tags: { ...APP_TAG, Name: name, [JOB_TAG]: jobId.stringValue },
      // Set at launch only: a later job's plan must not retag (or CI's synth change) the host.
      lifecycle: { ignoreChanges: [`tags["${JOB_TAG}"]`] },
    });

    // Import blocks for what an earlier, killed apply made (the deployer looked them up).
    const blocks = Object.entries(imports).map(([to, id]) => ({ to, id }));
    if (blocks.length > 0) this.addOverride('import', blocks);

    new TerraformOutput(this, 'instance_id', { value: host.id });
    new TerraformOutput(this, 'private_ip', { value: host.privateIp });
    new TerraformOutput(this, 'public_ip', { value: host.publicIp });
    new TerraformOutput(this, 'role_name', { value: role.name });
  }
}

/**
 * NixOS runs user data that starts with `#!`. It records who this host is, then starts the
 * bootstrap (which is idempotent and re-reads this file, or IMDS when it is missing).
 * Every value passed the registry's checks: no quotes, spaces or newlines.
 */
export function userData(name: string, entry: RegistryEntry, bucket: string): string {
  return [
    '#!/bin/sh',
    'set -eu',
    'install -d -m 0755 /var/lib/clawdinator',
    `cat > ${INSTANCE_ENV_FILE} <<'EOF'`,
    `CLAWDINATOR_INSTANCE_NAME=${name}`,
    `CLAWDINATOR_HOST=${entry.host}`,
    `CLAWDINATOR_BOOTSTRAP_BUCKET=${bucket}`,
    `CLAWDINATOR_BOOTSTRAP_PREFIX=${entry.bootstrapPrefix}`,
    'EOF',
    'systemctl start --no-block clawdinator-bootstrap.service',
    '',
  ].join('\n');
}

/** A configured subnet per host, spread over the list by name and stable across synths. */
function pickSubnet(name: string, subnetIds: string[]): string | undefined {
  if (subnetIds.length === 0) return undefined;
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + (ch.codePointAt(0) ?? 0)) >>> 0;
  return subnetIds[hash % subnetIds.length];
}
