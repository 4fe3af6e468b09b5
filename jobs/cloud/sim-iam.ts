// The simulated IAM, as aws-iam.ts sees it (GetRole, GetInstanceProfile), plus what terraform
// does to a fleet member's role and instance profile on apply and destroy (the simulated
// deployer calls these). Names are fixed per member, so a second create of the same role
// fails with EntityAlreadyExists, as on AWS: the simulated deployer meets the same trap as a
// resumed real apply. IAM is global: its ARNs have no region.
import { INSTANCE_ROLE_PATH } from '../../infra/names.js';
import { CloudError } from './errors.js';
import type { SimCore } from './sim-core.js';

/** The permissions boundary the deployer may create instance roles under (base stack). */
const BOUNDARY_POLICY = 'policy/clawdinator/clawdinator-instance-boundary';
const SSM_CORE = 'arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore';

export class SimIam {
  /** Role name → its inline policy names. */
  readonly roles = new Map<string, Set<string>>();
  /** Instance profile name → its role. */
  readonly profiles = new Map<string, string | null>();

  /** `members`: the fleet seeded running from the start, each with its role and profile. */
  constructor(
    private readonly core: SimCore,
    members: string[] = [],
  ) {
    for (const name of members) {
      this.roles.set(name, new Set(['own-bootstrap-and-secrets']));
      this.profiles.set(name, name);
    }
  }

  private roleArn(name: string): string {
    return `arn:aws:iam::${this.core.arns.account}:role${INSTANCE_ROLE_PATH}${name}`;
  }

  private profileArn(name: string): string {
    return `arn:aws:iam::${this.core.arns.account}:instance-profile${INSTANCE_ROLE_PATH}${name}`;
  }

  async roleExists(principal: string, name: string): Promise<boolean> {
    await this.core.call(principal, 'iam', 'GetRole', name, [
      { action: 'iam:GetRole', resource: this.roleArn(name), context: {} },
    ]);
    return this.roles.has(name);
  }

  async instanceProfileExists(principal: string, name: string): Promise<boolean> {
    await this.core.call(principal, 'iam', 'GetInstanceProfile', name, [
      { action: 'iam:GetInstanceProfile', resource: this.profileArn(name), context: {} },
    ]);
    return this.profiles.has(name);
  }

  /** CreateRole under the boundary, its inline policy and the SSM core attachment. */
  async createRole(principal: string, name: string, policyName: string): Promise<void> {
    const boundary = `arn:aws:iam::${this.core.arns.account}:${BOUNDARY_POLICY}`;
    await this.core.call(principal, 'iam', 'CreateRole', name, [
      { action: 'iam:CreateRole', resource: this.roleArn(name), context: { 'iam:PermissionsBoundary': boundary } },
    ]);
    if (this.roles.has(name)) {
      throw new CloudError({
        operation: 'CreateRole',
        resource: name,
        code: 'EntityAlreadyExists',
        detail: `Role with name ${name} already exists.`,
      });
    }
    this.roles.set(name, new Set());
    await this.core.call(principal, 'iam', 'PutRolePolicy', name, [
      { action: 'iam:PutRolePolicy', resource: this.roleArn(name), context: {} },
    ]);
    this.roles.get(name)?.add(policyName);
    await this.core.call(principal, 'iam', 'AttachRolePolicy', name, [
      { action: 'iam:AttachRolePolicy', resource: this.roleArn(name), context: { 'iam:PolicyARN': SSM_CORE } },
    ]);
  }

  /** CreateInstanceProfile and AddRoleToInstanceProfile. */
  async createInstanceProfile(principal: string, name: string, role: string): Promise<void> {
    await this.core.call(principal, 'iam', 'CreateInstanceProfile', name, [
      { action: 'iam:CreateInstanceProfile', resource: this.profileArn(name), context: {} },
    ]);
    if (this.profiles.has(name)) {
      throw new CloudError({
        operation: 'CreateInstanceProfile',
        resource: name,
        code: 'EntityAlreadyExists',
        detail: `Instance Profile ${name} already exists.`,
      });
    }
    this.profiles.set(name, null);
    await this.core.call(principal, 'iam', 'AddRoleToInstanceProfile', name, [
      { action: 'iam:AddRoleToInstanceProfile', resource: this.profileArn(name), context: {} },
      { action: 'iam:PassRole', resource: this.roleArn(role), context: {} },
    ]);
    this.profiles.set(name, role);
  }

  /** What a destroy does to the role: detach, delete its inline policy, delete it. */
  async deleteRole(principal: string, name: string): Promise<void> {
    const arn = this.roleArn(name);
    await this.core.call(principal, 'iam', 'DetachRolePolicy', name, [
      { action: 'iam:DetachRolePolicy', resource: arn, context: { 'iam:PolicyARN': SSM_CORE } },
    ]);
    await this.core.call(principal, 'iam', 'DeleteRolePolicy', name, [
      { action: 'iam:DeleteRolePolicy', resource: arn, context: {} },
    ]);
    await this.core.call(principal, 'iam', 'DeleteRole', name, [
      { action: 'iam:DeleteRole', resource: arn, context: {} },
    ]);
    this.roles.delete(name);
  }

  /** What a destroy does to the profile: remove its role, delete it. */
  async deleteInstanceProfile(principal: string, name: string): Promise<void> {
    const arn = this.profileArn(name);
    await this.core.call(principal, 'iam', 'RemoveRoleFromInstanceProfile', name, [
      { action: 'iam:RemoveRoleFromInstanceProfile', resource: arn, context: {} },
    ]);
    await this.core.call(principal, 'iam', 'DeleteInstanceProfile', name, [
      { action: 'iam:DeleteInstanceProfile', resource: arn, context: {} },
    ]);
    this.profiles.delete(name);
  }
}
