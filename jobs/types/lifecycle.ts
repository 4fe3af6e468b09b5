// What the lifecycle jobs (spawn, retire, replace) share: how a run is named in registry
// commits, ops.md and the audit, and which runner refusals are final.
import { UnrecoverableError } from 'bullmq';
import type { MemoryStore } from '../../memory/store.js';
import { describePrincipal, type Principal } from '../engine/envelope.js';
import { PlanRefusedError } from '../terraform/runner.js';

export type LifecycleAction = 'spawn' | 'retire' | 'replace';

/** The runner's refusals (unasked destroys, a plan beyond the saved one) cannot be retried away. */
export async function refusedIsFinal<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof PlanRefusedError) throw new UnrecoverableError(err.message);
    throw err;
  }
}

/** How the request came in, for commit messages and ops.md. */
export function via(action: LifecycleAction, p: Principal): string {
  switch (p.kind) {
    case 'discord':
      return `/${action}`;
    case 'agent':
      return `clawdinator request ${action}`;
    case 'cli':
      return 'the CLI';
    case 'schedule':
      return `schedule ${p.scheduler}`;
  }
}

/** "2026-11-24 20:41 UTC" */
export function clock(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** One audit line for a lifecycle job, in audit/<day>.md. */
export async function auditLifecycle(
  memory: MemoryStore,
  run: { jobId: string; principal: Principal; action: LifecycleAction; name: string },
  at: Date,
  outcome: string,
): Promise<void> {
  const line = `- ${at.toISOString()} job=${run.jobId} ${describePrincipal(run.principal)} ${run.action} name:${run.name} → ${outcome}`;
  await memory.append(`audit/${at.toISOString().slice(0, 10)}.md`, line);
}
