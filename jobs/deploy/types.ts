// What the lifecycle jobs (spawn, replace, retire) ask of the infrastructure: plan one fleet
// member's stack, then apply exactly that plan. Two implementations: terraform.ts (the real
// runner over the synthesized instance stack) and sim.ts (the same plan, made real in the
// simulated cloud). Both plan from the registry entry as it is now, and both refuse, with
// the same PlanRefusedError, a plan that destroys what was not asked or (when resumed)
// goes beyond the summary an earlier attempt saved.
import type { RunContext } from '../terraform/runner.js';
import type { PlanSummary } from '../terraform/summary.js';

/** The instance stack's EC2 instance: what a replace replaces. */
export const INSTANCE_ADDRESS = 'aws_instance.host';

export interface InstancePlanOptions {
  /**
   * The job asking. Its id tags what the apply launches (JOB_TAG), so an attempt resumed
   * after a crash finds what an earlier one made before it creates anything (fencing).
   */
  jobId: string;
  /** Replace the instance (a new host from the registry's AMI). */
  replace?: boolean;
  /** Destroy everything in the member's stack (retire). */
  destroy?: boolean;
}

export interface InstanceApplyOptions extends InstancePlanOptions {
  /** The summary planInstance returned (saved in the job): nothing beyond it is applied. */
  expected: PlanSummary;
}

/** What the stack's outputs say after an apply; null after a destroy. */
export interface InstanceOutputs {
  instanceId: string | null;
  privateIp: string | null;
}

export interface Deployer {
  planInstance(name: string, options: InstancePlanOptions, ctx: RunContext): Promise<PlanSummary>;
  /**
   * Applies the plan made by planInstance in this process, or, on another worker (a resumed
   * job), a new plan of the same request that stays within `expected`.
   */
  applyInstance(name: string, options: InstanceApplyOptions, ctx: RunContext): Promise<InstanceOutputs>;
}
