// The CDKTF stacks, synthesized with cdktf's Testing and read back as the Terraform JSON
// terraform would get (no provider is downloaded: toBeValidTerraform is not used).
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Terraform interpolations, not JavaScript templates

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TerraformStack, Testing } from 'cdktf';
import { describe, expect, it } from 'vitest';
import { createStacks, synthesize } from '../../infra/app.js';
import { stateKey } from '../../infra/names.js';
import { type FleetRegistry, RegistryError } from '../../infra/registry.js';
import type { InfraSettings } from '../../infra/settings.js';
import { imageTags } from '../../jobs/ami/image.js';
import { NAME_RULE } from '../../lib/config.js';
import { tempDir } from '../support/cli.js';

const settings: InfraSettings = {
  awsRegion: 'eu-central-1',
  deployerRoleArn: undefined,
  vpcId: undefined,
  subnetIds: [],
  sshCidrs: [],
  rootVolumeGb: 60,
  redisNodeType: 'cache.t4g.small',
};

const entry = (n: number) => ({
  host: `clawdinator-${n}`,
  instanceType: 't3.large',
  bootstrapPrefix: `bootstrap/clawdinator-${n}`,
  discordTokenSecret: `clawdinator/discord-token/clawdinator-${n}`,
  ami: `ami-0${n}23456789abcdef0`,
});
const registry: FleetRegistry = {
  'clawdinator-1': entry(1),
  'clawdinator-2': entry(2),
  'clawdinator-3': { ...entry(3), ami: undefined },
};

// biome-ignore lint/suspicious/noExplicitAny: synthesized Terraform JSON, read field by field
type Json = any;

function synth(stack: TerraformStack | undefined): Json {
  if (stack === undefined) throw new Error('no such stack');
  return JSON.parse(Testing.synth(stack));
}

function stacks(overrides: Partial<InfraSettings> = {}, reg: FleetRegistry = registry) {
  const app = Testing.app();
  const made = createStacks(app, reg, { ...settings, ...overrides });
  const instances = Object.fromEntries([...made.instances].map(([name, stack]) => [name, synth(stack)]));
  return { base: synth(made.base), instances, withoutAmi: made.withoutAmi };
}

/** IAM's wildcards (* and ?) as a regular expression. */
function iamPattern(resource: string): RegExp {
  const escaped = resource
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/** The instance policy's resources with base's outputs filled in as AWS would. */
function concreteResources(policy: string): string[] {
  const outputs: Record<string, string> = { partition: 'aws', region: 'eu-central-1', account_id: '123456789012' };
  const doc = JSON.parse(policy) as { Statement: { Action: string | string[]; Resource: string | string[] }[] };
  return doc.Statement.filter((s) => [s.Action].flat().includes('secretsmanager:GetSecretValue'))
    .flatMap((s) => [s.Resource].flat())
    .map((r) =>
      r.replace(/\$\{data\.terraform_remote_state\.base\.outputs\.(\w+)\}/g, (_, k: string) => outputs[k] ?? k),
    );
}

const secretArn = (name: string) => `arn:aws:secretsmanager:eu-central-1:123456789012:secret:${name}-AbC123`;

describe('stacks', () => {
  const { base, instances, withoutAmi } = stacks();

  it('refuses a stack whose name is not a fleet name, whatever registry it came from', () => {
    for (const bad of ['clawdinator-3-', `clawdinator-${'a'.repeat(29)}`]) {
      expect(() => createStacks(Testing.app(), { [bad]: entry(3) }, settings)).toThrow(
        new RegistryError(`no stack "${bad}": not a fleet name (${NAME_RULE})`),
      );
    }
  });

  it('makes one stack per registry entry with an AMI, each with its own state key and lock file', () => {
    expect(Object.keys(instances)).toEqual(['clawdinator-1', 'clawdinator-2']);
    expect(withoutAmi).toEqual(['clawdinator-3']);
    for (const [name, json] of [['base', base], ...Object.entries(instances)] as [string, Json][]) {
      // bucket and region come from `terraform init -backend-config`: synth needs no setting.
      expect(json.terraform.backend).toEqual({ s3: { key: stateKey(name), encrypt: true, use_lockfile: true } });
    }
    expect(new Set([base, ...Object.values(instances)].map((j: Json) => j.terraform.backend.s3.key)).size).toBe(3);
  });

  it('gives each instance IMDSv2 only (hop limit 1), an encrypted gp3 root, its AMI, tags and user data', () => {
    const host = instances['clawdinator-1'].resource.aws_instance.host;
    expect(host.metadata_options).toEqual({
      http_endpoint: 'enabled',
      http_tokens: 'required',
      http_put_response_hop_limit: 1,
      instance_metadata_tags: 'disabled',
    });
    expect(host.root_block_device).toEqual({
      volume_type: 'gp3',
      volume_size: 60,
      encrypted: true,
      delete_on_termination: true,
    });
    expect(host.ami).toBe('ami-0123456789abcdef0');
    expect(host.instance_type).toBe('t3.large');
    expect(host.tags).toEqual({ app: 'clawdinator', Name: 'clawdinator-1', 'clawdinator:job': '${var.job_id}' });
    expect(host.iam_instance_profile).toBe('${aws_iam_instance_profile.profile.name}');
    expect(host.vpc_security_group_ids).toEqual([
      '${data.terraform_remote_state.base.outputs.instance_security_group_id}',
    ]);
    expect(host.subnet_id).toBeUndefined(); // the default VPC
    expect(host.user_data).toMatch(/^#!\/bin\/sh\n/);
    expect(host.user_data).toContain('CLAWDINATOR_INSTANCE_NAME=clawdinator-1\n');
    expect(host.user_data).toContain('CLAWDINATOR_BOOTSTRAP_PREFIX=bootstrap/clawdinator-1\n');
    expect(host.user_data).toContain('systemctl start --no-block clawdinator-bootstrap.service');
    // Never a lookup of the "latest" image at synth or plan time.
    expect(instances['clawdinator-1'].data.aws_ami).toBeUndefined();
  });

  it('lets an instance role read its own bootstrap prefix and secrets, never another host’s', () => {
    const own = instances['clawdinator-1'].resource.aws_iam_role_policy.own.policy as string;
    const allowed = concreteResources(own).map(iamPattern);
    const readable = (arn: string) => allowed.some((p) => p.test(arn));
    expect(readable(secretArn('clawdinator/discord-token/clawdinator-1'))).toBe(true);
    expect(readable(secretArn('clawdinator/host/clawdinator-1/job-key'))).toBe(true);
    expect(readable(secretArn('clawdinator/fleet/redis-auth'))).toBe(true);
    expect(readable(secretArn('clawdinator/discord-token/clawdinator-2'))).toBe(false);
    expect(readable(secretArn('clawdinator/discord-token/clawdinator-10'))).toBe(false);
    expect(readable(secretArn('clawdinator/host/clawdinator-2/job-key'))).toBe(false);
    expect(readable(secretArn('clawdinator/host/clawdinator-10/job-key'))).toBe(false);
    expect(own).toContain(
      '"Resource":"${data.terraform_remote_state.base.outputs.bucket_arn}/bootstrap/clawdinator-1/*"',
    );
    expect(own).not.toContain('bootstrap/clawdinator-2');

    const role = instances['clawdinator-1'].resource.aws_iam_role.role;
    expect(role.permissions_boundary).toBe('${data.terraform_remote_state.base.outputs.instance_boundary_arn}');
    expect(role.path).toBe('/clawdinator/instance/');
    expect(instances['clawdinator-1'].resource.aws_iam_role_policy_attachment.ssm_core.policy_arn).toBe(
      'arn:${data.terraform_remote_state.base.outputs.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore',
    );
  });

  it('admits nothing from 0.0.0.0/0 by default; NFS and Redis only from the hosts’ group', () => {
    const ingress = Object.values(base.resource.aws_vpc_security_group_ingress_rule ?? {}) as Json[];
    expect(ingress.map((r) => [r.from_port, r.referenced_security_group_id])).toEqual([
      [2049, '${aws_security_group.instance_sg.id}'],
      [6379, '${aws_security_group.instance_sg.id}'],
    ]);
    expect(JSON.stringify(base.resource.aws_security_group)).not.toContain('ingress');
    expect(ingress.every((r) => r.cidr_ipv4 === undefined && r.cidr_ipv6 === undefined)).toBe(true);
  });

  it('opens SSH only from configured CIDRs', () => {
    const ssh = stacks({ sshCidrs: ['203.0.113.7/32', '2001:db8::/64'] }).base.resource
      .aws_vpc_security_group_ingress_rule;
    const rules = (Object.values(ssh) as Json[]).filter((r) => r.from_port === 22);
    expect(rules.map((r) => [r.cidr_ipv4 ?? r.cidr_ipv6, r.to_port, r.security_group_id]).sort()).toEqual([
      ['2001:db8::/64', 22, '${aws_security_group.instance_sg.id}'],
      ['203.0.113.7/32', 22, '${aws_security_group.instance_sg.id}'],
    ]);
  });

  it('keeps the bucket private, versioned, encrypted, TLS-only and protected from destroy', () => {
    const r = base.resource;
    expect(r.aws_s3_bucket.bucket.lifecycle).toEqual({ prevent_destroy: true });
    expect(r.aws_s3_bucket_public_access_block.bucket_public_access).toMatchObject({
      block_public_acls: true,
      block_public_policy: true,
      ignore_public_acls: true,
      restrict_public_buckets: true,
    });
    expect(r.aws_s3_bucket_versioning.bucket_versioning.versioning_configuration).toEqual({ status: 'Enabled' });
    expect(r.aws_s3_bucket_server_side_encryption_configuration.bucket_encryption.rule[0]).toEqual({
      apply_server_side_encryption_by_default: { sse_algorithm: 'AES256' },
      bucket_key_enabled: true,
    });
    expect(r.aws_s3_bucket_ownership_controls.bucket_ownership.rule).toEqual({
      object_ownership: 'BucketOwnerEnforced',
    });
    const policy = JSON.parse(r.aws_s3_bucket_policy.bucket_policy.policy);
    expect(policy.Statement).toEqual([
      {
        Sid: 'TlsOnly',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 's3:*',
        Resource: ['${aws_s3_bucket.bucket.arn}', '${aws_s3_bucket.bucket.arn}/*'],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ]);
  });

  it('encrypts EFS, mounts it in every subnet, and keeps it on destroy', () => {
    const efs = base.resource.aws_efs_file_system.memory;
    expect(efs.encrypted).toBe(true);
    expect(efs.lifecycle).toEqual({ prevent_destroy: true });
    const mount = base.resource.aws_efs_mount_target.memory_mount;
    expect(mount.for_each).toBe('${toset(data.aws_subnets.default_subnets.ids)}');
    expect(mount.security_groups).toEqual(['${aws_security_group.efs_sg.id}']);
  });

  it('runs Redis as provisioned Valkey with noeviction, TLS, encryption at rest and the token from Secrets Manager', () => {
    const r = base.resource;
    expect(r.aws_elasticache_serverless_cache).toBeUndefined();
    const redis = r.aws_elasticache_replication_group.redis;
    expect(redis).toMatchObject({
      engine: 'valkey',
      transit_encryption_enabled: true,
      transit_encryption_mode: 'required',
      at_rest_encryption_enabled: 'true',
      node_type: 'cache.t4g.small',
      parameter_group_name: '${aws_elasticache_parameter_group.redis_params.name}',
      security_group_ids: ['${aws_security_group.redis_sg.id}'],
      auth_token: '${data.aws_secretsmanager_secret_version.redis_auth.secret_string}',
    });
    expect(r.aws_elasticache_parameter_group.redis_params.parameter).toEqual([
      { name: 'maxmemory-policy', value: 'noeviction' },
    ]);
    expect(base.data.aws_secretsmanager_secret_version.redis_auth.secret_id).toBe('clawdinator/fleet/redis-auth');
    // The token is never in the configuration or an output.
    expect(JSON.stringify(base.output)).not.toContain('secret_string');
  });

  it('lets a host write the audit trail (audit/*) and nothing else in S3, under the boundary too', () => {
    const writes = (policy: string) =>
      (JSON.parse(policy).Statement as Json[]).filter((s) =>
        [s.Action].flat().some((a: string) => a === 's3:*' || /^s3:(Put|Delete|Copy|Restore)/.test(a)),
      );
    const own = instances['clawdinator-1'].resource.aws_iam_role_policy.own.policy as string;
    expect(writes(own)).toEqual([
      {
        Sid: 'WriteAudit',
        Effect: 'Allow',
        Action: 's3:PutObject',
        Resource: '${data.terraform_remote_state.base.outputs.bucket_arn}/audit/*',
      },
    ]);
    const boundary = base.resource.aws_iam_policy.instance_boundary.policy as string;
    expect(writes(boundary)).toEqual([
      { Sid: 'WriteAudit', Effect: 'Allow', Action: 's3:PutObject', Resource: '${aws_s3_bucket.bucket.arn}/audit/*' },
    ]);
  });

  it('lets only instance roles assume the deployer, which creates roles only under the boundary', () => {
    const deployer = base.resource.aws_iam_role.deployer;
    const trust = JSON.parse(deployer.assume_role_policy);
    expect(trust.Statement[0].Condition).toEqual({
      ArnLike: {
        'aws:PrincipalArn':
          'arn:${data.aws_partition.partition.partition}:iam::${data.aws_caller_identity.account.account_id}:role/clawdinator/instance/*',
      },
    });
    const policy = JSON.parse(base.resource.aws_iam_role_policy.deployer_policy.policy);
    const create = policy.Statement.find((s: Json) => s.Sid === 'CreateBoundedInstanceRoles');
    expect(create.Condition).toEqual({
      StringEquals: { 'iam:PermissionsBoundary': '${aws_iam_policy.instance_boundary.arn}' },
    });
    const states = policy.Statement.find((s: Json) => s.Sid === 'InstanceStacksState');
    expect(states.Resource).toBe(
      'arn:${data.aws_partition.partition.partition}:s3:::${var.state_bucket}/clawdinator/clawdinator-*.tfstate*',
    );
    expect(base.resource.aws_iam_role.vmimport.name).toBe('vmimport');
  });

  it('runs commands on hosts only through our document, whose parameters SSM checks', () => {
    const doc = base.resource.aws_ssm_document.host_document;
    expect(doc).toMatchObject({ name: 'clawdinator-host', document_type: 'Command', document_format: 'JSON' });
    const content = JSON.parse(doc.content);
    expect(content.parameters.sha).toMatchObject({ allowedPattern: '^([0-9a-f]{40})?$', interpolationType: 'ENV_VAR' });
    expect(content.parameters.unit.allowedValues).toContain('clawdinator-worker');
    expect(content.parameters.lines.allowedPattern).toBe('^[1-9][0-9]{0,2}$');
    // The values reach the script as variables, never as text of the command.
    const run: string[] = content.mainSteps[0].inputs.runCommand;
    expect(run.at(-1)).toBe(
      'exec /run/current-system/sw/bin/clawdinator-host "$SSM_action" "$SSM_sha" "$SSM_run" "$SSM_unit" "$SSM_lines"',
    );
    const policy = JSON.parse(base.resource.aws_iam_role_policy.deployer_policy.policy);
    const sends = policy.Statement.filter((s: Json) => [s.Action].flat().includes('ssm:SendCommand'));
    expect(sends.map((s: Json) => s.Resource)).toEqual([
      'arn:${data.aws_partition.partition.partition}:ssm:${data.aws_region.region.region}:${data.aws_caller_identity.account.account_id}:document/clawdinator-host',
      'arn:${data.aws_partition.partition.partition}:ec2:${data.aws_region.region.region}:${data.aws_caller_identity.account.account_id}:instance/*',
    ]);
    expect(JSON.stringify(policy)).not.toContain('AWS-RunShellScript');
  });

  it('lets the deployer tag an imported snapshot as ours only with our tag keys, so prune can delete it', () => {
    const policy = JSON.parse(base.resource.aws_iam_role_policy.deployer_policy.policy);
    const tag = policy.Statement.find((s: Json) => s.Sid === 'TagImportedSnapshots');
    expect(tag).toMatchObject({
      Effect: 'Allow',
      Action: 'ec2:CreateTags',
      Resource: expect.stringMatching(/:ec2:.*::snapshot\/\*$/),
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
    });
    // Exactly the keys the rebuild sets on the snapshot (jobs/ami/image.ts).
    const keys = Object.keys(imageTags({ name: 'n', sha: 's', builtBy: 'b', key: 'k' }));
    expect(tag.Condition['ForAllValues:StringEquals']['aws:TagKeys']).toEqual(keys);
    // What prune does to images and snapshots that carry the tag.
    const images = policy.Statement.find((s: Json) => s.Sid === 'FleetImages');
    expect(images.Action).toEqual(expect.arrayContaining(['ec2:DeregisterImage', 'ec2:DeleteSnapshot']));
    expect(images.Condition).toEqual({ StringEquals: { 'aws:ResourceTag/clawdinator': 'true' } });
  });

  it('exports what the jobs need', () => {
    expect(Object.keys(base.output).sort()).toEqual(
      [
        'account_id',
        'bucket',
        'bucket_arn',
        'deployer_role_arn',
        'deployer_role_name',
        'efs_id',
        'instance_boundary_arn',
        'instance_security_group_id',
        'partition',
        'redis_auth_secret',
        'redis_endpoint',
        'redis_port',
        'region',
        'vmimport_role_name',
      ].sort(),
    );
    expect(base.output.redis_endpoint.value).toBe(
      '${aws_elasticache_replication_group.redis.primary_endpoint_address}',
    );
  });

  it('uses a configured VPC and subnets instead of the default VPC', () => {
    const subnetIds = ['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb'];
    const made = stacks({ vpcId: 'vpc-0123456789abcdef0', subnetIds });
    expect(made.base.data.aws_vpc).toBeUndefined();
    expect(made.base.resource.aws_security_group.instance_sg.vpc_id).toBe('vpc-0123456789abcdef0');
    expect(made.base.resource.aws_elasticache_subnet_group.redis_subnets.subnet_ids).toEqual(subnetIds);
    for (const json of Object.values(made.instances) as Json[]) {
      expect(subnetIds).toContain(json.resource.aws_instance.host.subnet_id);
    }
  });

  it('assumes the deployer role in instance stacks when one is configured, never in base', () => {
    const deployerRoleArn = 'arn:aws:iam::123456789012:role/clawdinator/clawdinator-deployer';
    const made = stacks({ deployerRoleArn });
    const instance = made.instances['clawdinator-1'];
    expect(instance.provider.aws[0].assume_role).toEqual([
      { role_arn: deployerRoleArn, session_name: 'clawdinator-clawdinator-1' },
    ]);
    expect(instance.terraform.backend.s3.assume_role).toEqual({
      role_arn: deployerRoleArn,
      session_name: 'clawdinator-state',
    });
    expect(instance.data.terraform_remote_state.base.config.assume_role).toEqual({
      role_arn: deployerRoleArn,
      session_name: 'clawdinator-state',
    });
    expect(made.base.provider.aws[0].assume_role).toBeUndefined();
    expect(made.base.terraform.backend.s3.assume_role).toBeUndefined();
  });
});

describe('fencing against a second create', () => {
  it('tags the instance with the launching job, a tag later plans ignore, and synthesizes the same without a job', () => {
    const json = stacks().instances['clawdinator-1'];
    expect(json.variable.job_id).toMatchObject({ type: 'string', default: '' });
    expect(json.resource.aws_instance.host.lifecycle).toEqual({ ignore_changes: ['tags["clawdinator:job"]'] });
    // No import block unless the deployer found something the state lacks: CI's synth is stable.
    expect(json.import).toBeUndefined();
    expect(stacks().instances['clawdinator-1']).toEqual(json);
  });

  it('imports what an earlier, killed apply made, at the addresses the state lacks', () => {
    const outdir = join(tempDir(), 'out');
    const imports = {
      'clawdinator-2': { 'aws_instance.host': 'i-0abc', 'aws_iam_role.role': 'clawdinator-2' },
    };
    const result = synthesize({ outdir, registry, settings, stacks: ['clawdinator-2'], imports });
    const json = JSON.parse(readFileSync(join(result.dirs['clawdinator-2'] as string, 'cdk.tf.json'), 'utf8'));
    expect(json.import).toEqual([
      { to: 'aws_instance.host', id: 'i-0abc' },
      { to: 'aws_iam_role.role', id: 'clawdinator-2' },
    ]);
    // The addresses are the resources' own.
    expect(json.resource.aws_instance.host).toBeDefined();
    expect(json.resource.aws_iam_role.role.name).toBe('clawdinator-2');
    expect(json.resource.aws_iam_instance_profile.profile.name).toBe('clawdinator-2');
  });
});

describe('synthesize', () => {
  it('writes only the asked stacks, each in its own directory', () => {
    const outdir = join(tempDir(), 'out');
    const result = synthesize({ outdir, registry, settings, stacks: ['clawdinator-2'] });
    expect(Object.keys(result.dirs)).toEqual(['clawdinator-2']);
    const dir = result.dirs['clawdinator-2'] as string;
    expect(dir).toBe(join(outdir, 'stacks', 'clawdinator-2'));
    const json = JSON.parse(readFileSync(join(dir, 'cdk.tf.json'), 'utf8'));
    expect(json.resource.aws_instance.host.ami).toBe('ami-0223456789abcdef0');
    expect(existsSync(join(outdir, 'stacks', 'base'))).toBe(false);
  });

  it('refuses a stack that does not exist or has no AMI, in one line', () => {
    const outdir = tempDir();
    expect(() => synthesize({ outdir, registry, settings, stacks: ['clawdinator-9'] })).toThrow(
      'no stack "clawdinator-9": expected base or a name in the fleet registry',
    );
    expect(() => synthesize({ outdir, registry, settings, stacks: ['clawdinator-3'] })).toThrow(
      'clawdinator-3 has no ami in the fleet registry (spawn records it)',
    );
  });
});
