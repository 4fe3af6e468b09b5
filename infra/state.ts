// Remote state: S3 with Terraform's own lock object (`use_lockfile`, Terraform ≥ 1.10), one
// key per stack. The bucket and region are not synthesized: the runner gives them to
// `terraform init -backend-config` and `plan -var` from settings, so synth works offline
// with no settings and one synthesized app serves any account.
import { DataTerraformRemoteStateS3, S3Backend, type TerraformStack, TerraformVariable } from 'cdktf';
import { BASE_STACK, STATE_VARIABLES, stateKey } from './names.js';

export function useStateBackend(stack: TerraformStack, name: string, deployerRoleArn?: string): void {
  const backend = new S3Backend(stack, {
    bucket: '',
    key: stateKey(name),
    encrypt: true,
    ...(deployerRoleArn ? { assumeRole: { roleArn: deployerRoleArn, sessionName: 'clawdinator-state' } } : {}),
  });
  // Partial configuration: the bucket comes from `-backend-config` (an override of undefined
  // removes the key cdktf's types make us pass).
  backend.addOverride('bucket', undefined);
  // cdktf 0.21's S3Backend predates this property.
  backend.addOverride('use_lockfile', true);
}

export function stateBucketVariable(stack: TerraformStack): TerraformVariable {
  return new TerraformVariable(stack, STATE_VARIABLES.bucket, {
    type: 'string',
    description: 'S3 bucket of the Terraform state (set by the runner from CLAWDINATOR_STATE_BUCKET)',
  });
}

/** The base stack's outputs, read from its state (a read: it never plans a change to base). */
export function baseState(stack: TerraformStack, deployerRoleArn?: string): DataTerraformRemoteStateS3 {
  const region = new TerraformVariable(stack, STATE_VARIABLES.region, {
    type: 'string',
    nullable: true,
    description: 'region of the state bucket; null: the AWS chain (set by the runner from CLAWDINATOR_STATE_REGION)',
  });
  // cdktf cannot synthesize a null default from the props; an override can.
  region.addOverride('default', null);
  return new DataTerraformRemoteStateS3(stack, 'base', {
    bucket: stateBucketVariable(stack).stringValue,
    region: region.stringValue,
    key: stateKey(BASE_STACK),
    ...(deployerRoleArn ? { assumeRole: { roleArn: deployerRoleArn, sessionName: 'clawdinator-state' } } : {}),
  });
}
