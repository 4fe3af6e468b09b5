// The real Deployer: synthesize the member's instance stack from the registry as it is now,
// plan it with the runner, and apply exactly that plan file. Thin on purpose: the runner
// (jobs/terraform/runner.ts) already refuses unasked destroys, verifies a resumed plan
// against the saved summary and releases its own dead run's state lock.
//
// Before every apply it fences (fence.ts): the state's ids against what exists — instances
// with the member's Name or this job's tag, the role and profile by name — so what a killed
// apply made is imported (the stack is synthesized again with import blocks and planned
// within the saved summary) or terminated, never created a second time.
import { JOB_ID_VARIABLE, MEMBER_ADDRESSES, stateVariables } from '../../infra/names.js';
import type { InfraSettings } from '../../infra/settings.js';
import { OperationError } from '../../lib/errors.js';
import type { RegistryStore } from '../registry/types.js';
import type { Plan, PlanRequest, RunContext, Terraform } from '../terraform/runner.js';
import type { PlanSummary } from '../terraform/summary.js';
import { synthStacks } from '../terraform/synth.js';
import { type FenceCloud, fence, type Imports, type MemberAddresses } from './fence.js';
import {
  type Deployer,
  INSTANCE_ADDRESS,
  type InstanceApplyOptions,
  type InstanceOutputs,
  type InstancePlanOptions,
} from './types.js';

export interface TerraformDeployerOptions {
  runner: Pick<Terraform, 'plan' | 'apply' | 'outputs' | 'stateIds'>;
  /** Where the fence looks up what exists (instances, the role and profile). */
  cloud: FenceCloud;
  registry: RegistryStore;
  settings: InfraSettings;
  /** Where stacks are synthesized (the plan files stay there: they hold values in clear). */
  outdir: string;
  stateBucket: string;
  stateRegion?: string;
  /** Default: the in-process synth; tests replace it. */
  synth?: typeof synthStacks;
  /** Where the stack keeps the member's resources (default MEMBER_ADDRESSES; a stand-in stack has others). */
  addresses?: MemberAddresses;
}

export class TerraformDeployer implements Deployer {
  /** Plans made by this process, by member: applyInstance applies these files. */
  private readonly plans = new Map<string, Plan>();
  private readonly synth: typeof synthStacks;

  constructor(private readonly options: TerraformDeployerOptions) {
    this.synth = options.synth ?? synthStacks;
  }

  async planInstance(name: string, options: InstancePlanOptions, ctx: RunContext): Promise<PlanSummary> {
    const plan = await this.options.runner.plan(await this.request(name, options), ctx);
    this.plans.set(name, plan);
    return plan.summary;
  }

  async applyInstance(name: string, options: InstanceApplyOptions, ctx: RunContext): Promise<InstanceOutputs> {
    const { runner } = this.options;
    const made = this.plans.get(name);
    this.plans.delete(name);
    const request = await this.request(name, options);
    const state = await runner.stateIds(name, request.dir, ctx);
    const imports = await fence(this.options.cloud, name, options, state, this.addresses, ctx.onLine);
    const adopt = Object.keys(imports).length > 0;
    // The plan made in this process, unless something must be imported: then a new plan,
    // with the import blocks, within the saved summary (as on another worker).
    const plan =
      !adopt && made !== undefined && sameSummary(made.summary, options.expected)
        ? made
        : await runner.plan(
            { ...(adopt ? await this.request(name, options, imports) : request), expected: options.expected },
            ctx,
          );
    await this.options.runner.apply(plan, ctx);
    if (options.destroy) return { instanceId: null, privateIp: null };
    const outputs = await this.options.runner.outputs(name, plan.dir, ctx);
    if (typeof outputs.instance_id !== 'string') {
      throw new OperationError(`apply of ${name} left no instance_id output`);
    }
    return {
      instanceId: outputs.instance_id,
      privateIp: typeof outputs.private_ip === 'string' ? outputs.private_ip : null,
    };
  }

  private get addresses(): MemberAddresses {
    return this.options.addresses ?? MEMBER_ADDRESSES;
  }

  private async request(name: string, options: InstancePlanOptions, imports: Imports = {}): Promise<PlanRequest> {
    const { registry } = await this.options.registry.read();
    const { dirs } = await this.synth({
      outdir: this.options.outdir,
      registry,
      settings: this.options.settings,
      stacks: [name],
      imports: Object.keys(imports).length > 0 ? { [name]: imports } : undefined,
    });
    const dir = dirs[name];
    if (dir === undefined) throw new OperationError(`synth made no stack for ${name}`);
    return {
      stack: name,
      dir,
      // The job id tags what the apply launches (the stack ignores it afterwards).
      vars: {
        ...stateVariables(name, this.options.stateBucket, this.options.stateRegion),
        [JOB_ID_VARIABLE]: options.jobId,
      },
      replace: options.replace ? [this.addresses.instance ?? INSTANCE_ADDRESS] : undefined,
      destroy: options.destroy,
    };
  }
}

function sameSummary(a: PlanSummary, b: PlanSummary): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
