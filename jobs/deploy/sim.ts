// The simulated Deployer: plans and applies what the synthesized instance stack declares,
// in the simulated cloud. It synthesizes the member's stack for real (the same app as the
// terraform deployer) and reads the resources and the instance from its cdk.tf.json; the
// sim's "state" is the cloud itself: the member's resources exist while an instance with its
// Name tag does (the sim models EC2, not IAM). Plans are refused like the runner's: a
// destroy not asked for, or, on apply, anything beyond the summary saved by the plan.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BASE_OUTPUTS } from '../../infra/names.js';
import type { InfraSettings } from '../../infra/settings.js';
import { OperationError } from '../../lib/errors.js';
import { FaultRegistry, type SimCloud } from '../cloud/sim.js';
import type { FleetInstance } from '../cloud/types.js';
import type { RegistryStore } from '../registry/types.js';
import { PlanRefusedError, type RunContext } from '../terraform/runner.js';
import { type Action, formatSummary, type PlanSummary, unaskedDestroys, withinSummary } from '../terraform/summary.js';
import { synthStacks } from '../terraform/synth.js';
import {
  type Deployer,
  INSTANCE_ADDRESS,
  type InstanceApplyOptions,
  type InstanceOutputs,
  type InstancePlanOptions,
} from './types.js';

/** The base stack's bucket output, as the instance stack's user data refers to it. */
const BUCKET_REFERENCE = `\${data.terraform_remote_state.base.outputs.${BASE_OUTPUTS.bucket}}`;

export interface SimDeployerOptions {
  cloud: SimCloud;
  registry: RegistryStore;
  settings: InfraSettings;
  /** Where stacks are synthesized. */
  outdir: string;
  /** The base stack's bucket: what the user data's reference resolves to. */
  bucket: string;
}

interface Declared {
  addresses: string[];
  instance: { ami: string; instanceType: string; tags: Record<string, string>; userData: string };
}

const stackJson = (dir: string) => join(dir, 'cdk.tf.json');

export class SimDeployer implements Deployer {
  constructor(private readonly options: SimDeployerOptions) {}

  async planInstance(name: string, options: InstancePlanOptions, ctx: RunContext): Promise<PlanSummary> {
    this.fault('plan', name, ctx);
    const { summary } = await this.plan(name, options, ctx);
    return summary;
  }

  async applyInstance(name: string, options: InstanceApplyOptions, ctx: RunContext): Promise<InstanceOutputs> {
    this.fault('apply', name, ctx);
    const { summary, declared, existing } = await this.plan(name, options, ctx);
    if (!withinSummary(summary, options.expected)) {
      throw new PlanRefusedError(
        `plan for ${name} goes beyond the saved plan: not applied (saved: ${formatSummary(options.expected)}; now: ${formatSummary(summary)})`,
        summary,
      );
    }
    const { cloud } = this.options;
    const host = summary.resources.find((r) => r.address === INSTANCE_ADDRESS)?.action;
    if (host === 'update') throw new OperationError(`the simulated cloud cannot update ${name}'s instance in place`);
    if ((host === 'delete' || host === 'replace') && existing !== undefined) {
      await cloud.terminateInstance(existing.instanceId);
      ctx.onLine(`${INSTANCE_ADDRESS}: destroyed ${existing.instanceId}`);
    }
    if (options.destroy) return { instanceId: null, privateIp: null };
    let instanceId = existing?.instanceId;
    if (host === 'create' || host === 'replace') {
      instanceId = await cloud.launchInstance({ name, ...declared.instance });
      ctx.onLine(`${INSTANCE_ADDRESS}: created ${instanceId}`);
    }
    if (instanceId === undefined) throw new OperationError(`apply of ${name} left no instance`);
    const instance = await cloud.describeInstance(instanceId);
    return { instanceId, privateIp: instance.privateIp };
  }

  /**
   * A failure armed for this step in the simulated world (`/sim fail apply`), before anything
   * changes, said the way terraform says one: `Error: <summary>`.
   */
  private fault(step: 'plan' | 'apply', name: string, ctx: RunContext): void {
    // A cloud served from another process (the kill-and-resume tests' proxy) has no
    // registry of its own here: nothing is armed.
    const { faults } = this.options.cloud;
    const fault = faults instanceof FaultRegistry ? faults.take(step) : undefined;
    if (fault === undefined) return;
    const summary =
      fault.message ??
      `${step === 'plan' ? 'planning' : 'applying'} ${name}: ${fault.code ?? 'InternalError'}: simulated ${step} failure (/sim fail ${step})`;
    const line = summary.startsWith('Error:') ? summary : `Error: ${summary}`;
    ctx.onLine(line);
    throw new OperationError(line);
  }

  private async plan(
    name: string,
    options: InstancePlanOptions,
    ctx: RunContext,
  ): Promise<{ summary: PlanSummary; declared: Declared; existing: FleetInstance | undefined }> {
    const declared = await this.declared(name);
    const existing = (await this.options.cloud.listFleetInstances()).find((i) => i.name === name);
    const summary: PlanSummary = { add: 0, change: 0, destroy: 0, resources: [] };
    for (const address of declared.addresses) {
      const action = actionFor(address, options, declared, existing);
      if (action === undefined) continue;
      if (action === 'create' || action === 'replace') summary.add++;
      if (action === 'delete' || action === 'replace') summary.destroy++;
      if (action === 'update') summary.change++;
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
    return { summary, declared, existing };
  }

  private async declared(name: string): Promise<Declared> {
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
    return {
      addresses,
      instance: {
        ami: String(host.ami),
        instanceType: String(host.instance_type),
        tags: host.tags as Record<string, string>,
        userData: String(host.user_data).replaceAll(BUCKET_REFERENCE, this.options.bucket),
      },
    };
  }
}

/** What terraform would do to one declared resource, given the instance that exists. */
function actionFor(
  address: string,
  options: InstancePlanOptions,
  declared: Declared,
  existing: FleetInstance | undefined,
): Action | undefined {
  if (options.destroy) return existing === undefined ? undefined : 'delete';
  if (existing === undefined) return 'create';
  if (address !== INSTANCE_ADDRESS) return undefined;
  // The AMI forces a new instance; the instance type is changed in place.
  if (options.replace || existing.imageId !== declared.instance.ami) return 'replace';
  if (existing.instanceType !== declared.instance.instanceType) return 'update';
  return undefined;
}
