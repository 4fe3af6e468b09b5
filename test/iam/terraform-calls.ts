// What the AWS provider (hashicorp/aws 6.x) and Terraform's S3 backend ask IAM to authorize
// when a job plans, applies, replaces or destroys one member's stack with the deployer role.
// Terraform's calls never pass through the simulated cloud, so they are kept here as a table,
// per resource type of the instance stack, with the condition keys each request carries.
// Confirm it on a real account from CloudTrail (README: "Running a real fleet"): every
// `eventName` of the deployer's session during a spawn and a retire should be a row here.
import { INSTANCE_ROLE_PATH, stateKey } from '../../infra/names.js';
import { ACCOUNT, REGION, STATE_BUCKET } from './policies.js';

export interface TerraformCall {
  /** The resource type (or `backend`) and when the provider makes the call. */
  what: string;
  action: string;
  resource: string;
  context: Record<string, string | string[]>;
}

/** Tags every resource gets: the provider's default tags, plus `Name` on the instance. */
const DEFAULT_TAGS = { app: 'clawdinator' };

function requestTags(tags: Record<string, string>): Record<string, string | string[]> {
  const context: Record<string, string | string[]> = { 'aws:TagKeys': Object.keys(tags) };
  for (const [k, v] of Object.entries(tags)) context[`aws:RequestTag/${k}`] = v;
  return context;
}

function resourceTags(tags: Record<string, string>, prefix: 'aws' | 'ec2' = 'aws'): Record<string, string> {
  return Object.fromEntries(Object.entries(tags).map(([k, v]) => [`${prefix}:ResourceTag/${k}`, v]));
}

export function terraformCalls(name: string, instanceId = 'i-0123456789abcdef0'): TerraformCall[] {
  const role = `arn:aws:iam::${ACCOUNT}:role${INSTANCE_ROLE_PATH}${name}`;
  const profile = `arn:aws:iam::${ACCOUNT}:instance-profile${INSTANCE_ROLE_PATH}${name}`;
  const boundary = `arn:aws:iam::${ACCOUNT}:policy/clawdinator/clawdinator-instance-boundary`;
  const ssmCore = 'arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore';
  const instance = `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${instanceId}`;
  const state = `arn:aws:s3:::${STATE_BUCKET}`;
  const key = stateKey(name);
  const instanceTags = { ...DEFAULT_TAGS, Name: name };
  const ec2Tagged = { ...resourceTags(instanceTags), ...resourceTags(instanceTags, 'ec2') };
  return [
    // The S3 backend with `use_lockfile`: the state object and its lock object beside it.
    { what: 'backend: list', action: 's3:ListBucket', resource: state, context: { 's3:prefix': key } },
    { what: 'backend: read state', action: 's3:GetObject', resource: `${state}/${key}`, context: {} },
    { what: 'backend: write state', action: 's3:PutObject', resource: `${state}/${key}`, context: {} },
    { what: 'backend: take lock', action: 's3:PutObject', resource: `${state}/${key}.tflock`, context: {} },
    { what: 'backend: read lock', action: 's3:GetObject', resource: `${state}/${key}.tflock`, context: {} },
    { what: 'backend: release lock', action: 's3:DeleteObject', resource: `${state}/${key}.tflock`, context: {} },
    // data.terraform_remote_state.base: base's outputs, read only.
    {
      what: 'remote state: read base',
      action: 's3:GetObject',
      resource: `${state}/${stateKey('base')}`,
      context: {},
    },
    // aws_iam_role.role: created under the boundary, with the default tags.
    {
      what: 'aws_iam_role: create',
      action: 'iam:CreateRole',
      resource: role,
      context: { 'iam:PermissionsBoundary': boundary, ...requestTags(DEFAULT_TAGS) },
    },
    { what: 'aws_iam_role: tag at create', action: 'iam:TagRole', resource: role, context: requestTags(DEFAULT_TAGS) },
    { what: 'aws_iam_role: read', action: 'iam:GetRole', resource: role, context: {} },
    { what: 'aws_iam_role: read', action: 'iam:ListRolePolicies', resource: role, context: {} },
    { what: 'aws_iam_role: read', action: 'iam:ListAttachedRolePolicies', resource: role, context: {} },
    { what: 'aws_iam_role: delete', action: 'iam:ListInstanceProfilesForRole', resource: role, context: {} },
    { what: 'aws_iam_role: delete', action: 'iam:DeleteRole', resource: role, context: {} },
    // aws_iam_role_policy.own
    { what: 'aws_iam_role_policy: put', action: 'iam:PutRolePolicy', resource: role, context: {} },
    { what: 'aws_iam_role_policy: read', action: 'iam:GetRolePolicy', resource: role, context: {} },
    { what: 'aws_iam_role_policy: delete', action: 'iam:DeleteRolePolicy', resource: role, context: {} },
    // aws_iam_role_policy_attachment.ssm_core
    {
      what: 'aws_iam_role_policy_attachment: attach',
      action: 'iam:AttachRolePolicy',
      resource: role,
      context: { 'iam:PolicyARN': ssmCore },
    },
    {
      what: 'aws_iam_role_policy_attachment: detach',
      action: 'iam:DetachRolePolicy',
      resource: role,
      context: { 'iam:PolicyARN': ssmCore },
    },
    // aws_iam_instance_profile.profile
    {
      what: 'aws_iam_instance_profile: create',
      action: 'iam:CreateInstanceProfile',
      resource: profile,
      context: requestTags(DEFAULT_TAGS),
    },
    {
      what: 'aws_iam_instance_profile: tag at create',
      action: 'iam:TagInstanceProfile',
      resource: profile,
      context: requestTags(DEFAULT_TAGS),
    },
    {
      what: 'aws_iam_instance_profile: add role',
      action: 'iam:AddRoleToInstanceProfile',
      resource: profile,
      context: {},
    },
    { what: 'aws_iam_instance_profile: read', action: 'iam:GetInstanceProfile', resource: profile, context: {} },
    {
      what: 'aws_iam_instance_profile: delete',
      action: 'iam:RemoveRoleFromInstanceProfile',
      resource: profile,
      context: {},
    },
    { what: 'aws_iam_instance_profile: delete', action: 'iam:DeleteInstanceProfile', resource: profile, context: {} },
    // aws_instance.host: launched with the profile's role, tagged at launch.
    {
      what: 'aws_instance: pass the instance role',
      action: 'iam:PassRole',
      resource: role,
      context: { 'iam:PassedToService': 'ec2.amazonaws.com' },
    },
    {
      what: 'aws_instance: launch',
      action: 'ec2:RunInstances',
      resource: instance,
      context: requestTags(instanceTags),
    },
    {
      what: 'aws_instance: launch from the AMI',
      action: 'ec2:RunInstances',
      resource: `arn:aws:ec2:${REGION}::image/ami-0123456789abcdef0`,
      context: {},
    },
    {
      what: 'aws_instance: launch in the subnet',
      action: 'ec2:RunInstances',
      resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:subnet/subnet-0123456789abcdef0`,
      context: {},
    },
    {
      what: 'aws_instance: launch with the security group',
      action: 'ec2:RunInstances',
      resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:security-group/sg-0123456789abcdef0`,
      context: {},
    },
    {
      what: 'aws_instance: launch a network interface',
      action: 'ec2:RunInstances',
      resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:network-interface/*`,
      context: {},
    },
    {
      what: 'aws_instance: launch the root volume',
      action: 'ec2:RunInstances',
      resource: `arn:aws:ec2:${REGION}:${ACCOUNT}:volume/*`,
      context: requestTags(instanceTags),
    },
    {
      what: 'aws_instance: tags at launch',
      action: 'ec2:CreateTags',
      resource: instance,
      context: { 'ec2:CreateAction': 'RunInstances', ...requestTags(instanceTags) },
    },
    { what: 'aws_instance: read', action: 'ec2:DescribeInstances', resource: '*', context: {} },
    { what: 'aws_instance: read', action: 'ec2:DescribeInstanceAttribute', resource: '*', context: {} },
    { what: 'aws_instance: read', action: 'ec2:DescribeVolumes', resource: '*', context: {} },
    { what: 'aws_instance: read', action: 'ec2:DescribeInstanceTypes', resource: '*', context: {} },
    { what: 'aws_instance: read', action: 'ec2:DescribeInstanceCreditSpecifications', resource: '*', context: {} },
    { what: 'aws_instance: read', action: 'ec2:DescribeTags', resource: '*', context: {} },
    // An instance type changed in place: stop, modify, start.
    { what: 'aws_instance: resize', action: 'ec2:StopInstances', resource: instance, context: ec2Tagged },
    { what: 'aws_instance: resize', action: 'ec2:ModifyInstanceAttribute', resource: instance, context: ec2Tagged },
    { what: 'aws_instance: resize', action: 'ec2:StartInstances', resource: instance, context: ec2Tagged },
    { what: 'aws_instance: destroy', action: 'ec2:TerminateInstances', resource: instance, context: ec2Tagged },
  ];
}
