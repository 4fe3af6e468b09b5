// The simulated Deployer: plans and applies what the synthesized instance stack declares,
// in the simulated cloud, keeping a state of its own as terraform does. It synthesizes the
// member's stack for real (the same app as the terraform deployer) and reads the resources
// and the instance from its cdk.tf.json.
//
// Its state is what terraform's would record after a completed apply — resource address →
// id — kept where every worker reads it, as terraform keeps its state in S3: a JSON object
// in the simulated S3 (the state bucket, `stateKey(member)`), so a job resumed by a worker in
// another process plans against the same state. A plan refreshes it against the cloud (an
// instance terminated or a role deleted since is gone from it). The state is written at the
// end of an apply, and after the resources that succeeded when one fails, as terraform does;
// the `apply` fault models a worker killed after the cloud calls and before the state was
// saved: the instance (and role, profile) exist and the state does not know them. Only the
// fencing (fence.ts: import what this job launched) keeps a resumed apply from launching a
// second instance then, and the role and profile from failing with EntityAlreadyExists.
//
// Members that existed before the simulated world started (seeded, launched before jobs
// tagged their launches) have no state object: an instance with the member's Name and no
// job tag is taken as the member's, as a fleet migrated from the original's OpenTofu would
// be imported once. An instance carrying a job tag is never adopted that way.
//
// Plans are refused like the runner's: a destroy not asked for, or, on apply, anything
// beyond the summary saved by the plan. The `plan` and `apply` faults (cloud.faults) fail
// them with terraform's own error text (the fault's message, e.g. "Error: …").
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BASE_OUTPUTS, JOB_ID_VARIABLE, MEMBER_ADDRESSES, stateKey } from '../../infra/names.js';
import type { InfraSettings } from '../../infra/settings.js';
import { OperationError } from '../../lib/errors.js';
import type { SimCloud } from '../cloud/sim.js';
import { JOB_TAG } from '../cloud/types.js';
import type { RegistryStore } from '../registry/types.js';
import { diagnosticsIn, terraformCause } from '../terraform/process.js';
import { PlanRefusedError, type RunContext } from '../terraform/runner.js';
import {
  type Action,
  count,
  formatSummary,
  type PlanSummary,
  unaskedDestroys,
  withinSummary,
} from '../terraform/summary.js';
import { synthStacks } from '../terraform/synth.js';
import { fence, type Imports } from './fence.js';
import {
  type Deployer,
  INSTANCE_ADDRESS,
  type InstanceApplyOptions,
  type InstanceOutputs,
  type InstancePlanOptions,
} from './types.js';

/** The base stack's bucket output, as the instance stack's user data refers to it. */
const BUCKET_REFERENCE = `\${data.terraform_remote_state.base.outputs.${BASE_OUTPUTS.bucket}}`;
/** The job id variable, as the instance's tags refer to it. */
const JOB_REFERENCE = `\${var.${JOB_ID_VARIABLE}}`;
const ROLE = MEMBER_ADDRESSES.role;
const PROFILE = MEMBER_ADDRESSES.profile;
/** The role's inline policy and its SSM attachment: they exist with the role. */
const WITH_ROLE = ['aws_iam_role_policy.own', 'aws_iam_role_policy_attachment.ssm_core'];

export interface SimDeployerOptions {
  cloud: SimCloud;
  registry: RegistryStore;
  settings: InfraSettings;
  /** Where stacks are synthesized. */
  outdir: string;
  /** The base stack's bucket: what the user data's reference resolves to. */
  bucket: string;
  /** Where the simulated state objects live (default: `bucket`). */
  stateBucket?: string;
}

interface Declared {
  addresses: string[];
  instance: { ami: string; instanceType: string; tags: Record<string, string>; userData: string };
}

/** What the simulated terraform recorded: address → id. */
type SimState = Map<string, string>;

interface Planned {
  summary: PlanSummary;
  declared: Declared;
  state: SimState;
  imports: Imports;
}

const stackJson = (dir: string) => join(dir, 'cdk.tf.json');

export class SimDeployer implements Deployer {
  constructor(private readonly options: SimDeployerOptions) {}

  async planInstance(name: string, options: InstancePlanOptions, ctx: RunContext): Promise<PlanSummary> {
    const state = await this.readState(name);
    return (await this.plan(name, options, ctx, state, {})).summary;
  }

  async applyInstance(name: string, options: InstanceApplyOptions, ctx: RunContext): Promise<InstanceOutputs> {
    const { cloud } = this.options;
    const current = await this.readState(name);
    // Before anything is created: what an earlier, killed apply of this job made.
    const imports = await fence(cloud, name, options, current, MEMBER_ADDRESSES, ctx.onLine);
    const { summary, declared, state } = await this.plan(name, options, ctx, current, imports);
    if (!withinSummary(summary, options.expected)) {
      throw new PlanRefusedError(
        `plan for ${name} goes beyond the saved plan: not applied (saved: ${formatSummary(options.expected)}; now: ${formatSummary(summary)})`,
        summary,
      );
    }
    const after = new Map(state);
    try {
      await this.execute(name, options, summary, declared, after, imports, ctx);
    } catch (err) {
      // Terraform saves what succeeded before an error.
      await this.writeState(name, after);
      throw err;
    }
    // The `apply` fault: the worker dies after its cloud calls, before the state is saved.
    const fault = await cloud.takeFault('apply');
    if (fault !== undefined) throw this.failure(name, 'apply', fault.message, ctx);
    await this.writeState(name, after);
    if (options.destroy) return { instanceId: null, privateIp: null };
    const instanceId = after.get(INSTANCE_ADDRESS);
    if (instanceId === undefined) throw new OperationError(`apply of ${name} left no instance`);
    const instance = await cloud.describeInstance(instanceId);
    ctx.onLine(`Apply complete! ${formatSummary(summary)}`);
    return { instanceId, privateIp: instance.privateIp };
  }

  // ── plan ─────────────────────────────────────────────────────────────────────────────

  private async plan(
    name: string,
    options: InstancePlanOptions,
    ctx: RunContext,
    state: SimState,
    imports: Imports,
  ): Promise<Planned> {
    const fault = await this.options.cloud.takeFault('plan');
    if (fault !== undefined) throw this.failure(name, 'plan', fault.message, ctx);
    const declared = await this.declared(name, options.jobId);
    const imageOf = await this.instanceImage(state);
    const summary: PlanSummary = { add: 0, change: 0, destroy: 0, resources: [] };
    for (const address of declared.addresses) {
      const action = actionFor(address, options, declared, state, imports, imageOf);
      if (action === undefined) continue;
      count(summary, action);
      summary.resources.push({ address, action });
    }
    ctx.onLine(`plan for ${name}: ${formatSummary(summary)}`);
    const unasked = unaskedDestroys(summary, {
      destroy: options.destroy,
      replace: options.replace ? [INSTANCE_ADDRESS] : [],
    });
    if (unasked.length > 0) {
      throw new PlanRefusedError(
        `plan for ${name} would destroy ${unasked.join(', ')}, which was not asked: not applied (${formatSummary(summary)})`,
        summary,
      );
    }
    return { summary, declared, state, imports };
  }

  /** The image and type of the instance the state holds (for replace and update). */
  private async instanceImage(state: SimState): Promise<{ imageId: string; instanceType: string } | undefined> {
    const id = state.get(INSTANCE_ADDRESS);
    if (id === undefined) return undefined;
    const instance = await this.options.cloud.describeInstance(id);
    return { imageId: instance.imageId, instanceType: instance.instanceType };
  }

  // ── apply ────────────────────────────────────────────────────────────────────────────

  /** The cloud calls of a plan, in dependency order; `state` is updated as each succeeds. */
  private async execute(
    name: string,
    options: InstanceApplyOptions,
    summary: PlanSummary,
    declared: Declared,
    state: SimState,
    imports: Imports,
    ctx: RunContext,
  ): Promise<void> {
    const { cloud } = this.options;
    const action = new Map(summary.resources.map((r) => [r.address, r.action]));
    for (const [address, id] of Object.entries(imports)) {
      if (action.get(address) !== 'import') continue;
      state.set(address, id);
      ctx.onLine(`${address}: Import complete [id=${id}]`);
    }
    const host = action.get(INSTANCE_ADDRESS);
    if (host === 'update') throw new OperationError(`the simulated cloud cannot update ${name}'s instance in place`);
    // Destroys first: the instance, then its profile, then its role.
    if (host === 'delete' || host === 'replace') {
      const existing = state.get(INSTANCE_ADDRESS);
      if (existing !== undefined) {
        await cloud.terminateInstance(existing);
        state.delete(INSTANCE_ADDRESS);
        ctx.onLine(`${INSTANCE_ADDRESS}: Destruction complete [id=${existing}]`);
      }
    }
    if (action.get(PROFILE) === 'delete') {
      await cloud.deleteInstanceProfile(name);
      state.delete(PROFILE);
      ctx.onLine(`${PROFILE}: Destruction complete [id=${name}]`);
    }
    for (const address of WITH_ROLE) if (action.get(address) === 'delete') state.delete(address);
    if (action.get(ROLE) === 'delete') {
      await cloud.deleteRole(name);
      state.delete(ROLE);
      ctx.onLine(`${ROLE}: Destruction complete [id=${name}]`);
    }
    if (options.destroy) return;
    // Creates: the role (with its policy and attachment), the profile, the instance.
    if (action.get(ROLE) === 'create') {
      await cloud.createRole(name, 'own-bootstrap-and-secrets');
      state.set(ROLE, name);
      ctx.onLine(`${ROLE}: Creation complete [id=${name}]`);
    }
    for (const address of WITH_ROLE) if (action.get(address) === 'create') state.set(address, `${name}:${address}`);
    if (action.get(PROFILE) === 'create') {
      await cloud.createInstanceProfile(name, name);
      state.set(PROFILE, name);
      ctx.onLine(`${PROFILE}: Creation complete [id=${name}]`);
    }
    if (host === 'create' || host === 'replace') {
      const instanceId = await cloud.launchInstance({ name, ...declared.instance });
      state.set(INSTANCE_ADDRESS, instanceId);
      ctx.onLine(`${INSTANCE_ADDRESS}: Creation complete [id=${instanceId}]`);
    }
  }

  /** Terraform's failure, as the runner reports it: its lines in the log, its cause in the error. */
  private failure(name: string, command: 'plan' | 'apply', message: string | undefined, ctx: RunContext): Error {
    const text =
      message ?? `Error: simulated ${command} failure\n\nThe ${command} fault of the simulated cloud was armed.`;
    for (const line of text.split('\n')) ctx.onLine(line);
    const errors = diagnosticsIn(text);
    const cause = errors.length > 0 ? terraformCause(errors) : (text.split('\n', 1)[0] ?? '').trim();
    return new OperationError(`terraform ${command} failed for ${name}: ${cause}`);
  }

  // ── state ────────────────────────────────────────────────────────────────────────────

  private get stateBucket(): string {
    return this.options.stateBucket ?? this.options.bucket;
  }

  /** The member's state, refreshed against the cloud (what is gone is dropped). */
  private async readState(name: string): Promise<SimState> {
    const { cloud } = this.options;
    const stored = (await cloud.getJson(this.stateBucket, stateKey(name))) as {
      resources?: Record<string, string>;
    } | null;
    const state: SimState =
      stored === null ? await this.adoptSeeded(name) : new Map(Object.entries(stored.resources ?? {}));
    const instanceId = state.get(INSTANCE_ADDRESS);
    if (instanceId !== undefined) {
      const gone = await cloud.describeInstance(instanceId).then(
        (i) => i.state === 'terminated' || i.state === 'shutting-down',
        () => true,
      );
      if (gone) state.delete(INSTANCE_ADDRESS);
    }
    if (state.has(ROLE) && !(await cloud.roleExists(name))) {
      state.delete(ROLE);
      for (const address of WITH_ROLE) state.delete(address);
    }
    if (state.has(PROFILE) && !(await cloud.instanceProfileExists(name))) state.delete(PROFILE);
    return state;
  }

  /** A member from before the simulated world's jobs: its untagged instance, role and profile. */
  private async adoptSeeded(name: string): Promise<SimState> {
    const { cloud } = this.options;
    const state: SimState = new Map();
    const seeded = (await cloud.listFleetInstances()).find(
      (i) => i.name === name && i.tags[JOB_TAG] === undefined && i.state !== 'shutting-down',
    );
    if (seeded === undefined) return state;
    state.set(INSTANCE_ADDRESS, seeded.instanceId);
    if (await cloud.roleExists(name)) {
      state.set(ROLE, name);
      for (const address of WITH_ROLE) state.set(address, `${name}:${address}`);
    }
    if (await cloud.instanceProfileExists(name)) state.set(PROFILE, name);
    return state;
  }

  private async writeState(name: string, state: SimState): Promise<void> {
    await this.options.cloud.putJson(this.stateBucket, stateKey(name), { resources: Object.fromEntries(state) });
  }

  // ── the stack ────────────────────────────────────────────────────────────────────────

  private async declared(name: string, jobId: string): Promise<Declared> {
    const { registry } = await this.options.registry.read();
    const { dirs } = await synthStacks({
      outdir: this.options.outdir,
      registry,
      settings: this.options.settings,
      stacks: [name],
    });
    const dir = dirs[name];
    if (dir === undefined) throw new OperationError(`synth made no stack for ${name}`);
    const stack = JSON.parse(await readFile(stackJson(dir), 'utf8')) as {
      resource: Record<string, Record<string, Record<string, unknown>>>;
    };
    const addresses = Object.entries(stack.resource)
      .flatMap(([type, byName]) => Object.keys(byName).map((id) => `${type}.${id}`))
      .sort();
    const host = stack.resource.aws_instance?.host;
    if (host === undefined) throw new OperationError(`the stack of ${name} declares no ${INSTANCE_ADDRESS}`);
    const tags = Object.fromEntries(
      Object.entries(host.tags as Record<string, string>).map(([k, v]) => [k, v.replaceAll(JOB_REFERENCE, jobId)]),
    );
    return {
      addresses,
      instance: {
        ami: String(host.ami),
        instanceType: String(host.instance_type),
        tags,
        userData: String(host.user_data).replaceAll(BUCKET_REFERENCE, this.options.bucket),
      },
    };
  }
}

/** What terraform would do to one declared resource, given its state and the imports. */
function actionFor(
  address: string,
  options: InstancePlanOptions,
  declared: Declared,
  state: SimState,
  imports: Imports,
  current: { imageId: string; instanceType: string } | undefined,
): Action | undefined {
  const inState = state.has(address);
  if (options.destroy) return inState ? 'delete' : undefined;
  if (!inState) return imports[address] !== undefined ? 'import' : 'create';
  if (address !== INSTANCE_ADDRESS || current === undefined) return undefined;
  // The AMI forces a new instance; the instance type is changed in place.
  if (options.replace || current.imageId !== declared.instance.ami) return 'replace';
  if (current.instanceType !== declared.instance.instanceType) return 'update';
  return undefined;
}
