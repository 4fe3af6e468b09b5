// A plan's summary: counts and, per resource, its address and action. Built from
// `terraform show -json` by reading only those fields: the plan's values (some of them
// sensitive) are never kept, logged or saved.
import { z } from 'zod';

/**
 * What a plan does to one resource. `import`: adopted into the state from an import block
 * (what an earlier, killed apply made), maybe with an update in place.
 */
export type Action = 'create' | 'update' | 'delete' | 'replace' | 'forget' | 'import';

export interface PlanSummary {
  add: number;
  change: number;
  destroy: number;
  /** Resources imported (present only when some are). */
  import?: number;
  /** Resources with an action, sorted by address; no-ops and data reads are left out. */
  resources: { address: string; action: Action }[];
}

const showSchema = z.object({
  resource_changes: z
    .array(
      z.object({
        address: z.string(),
        mode: z.string(),
        // `importing` is there when an import block adopts the resource (its id only is read).
        change: z.object({ actions: z.array(z.string()), importing: z.object({}).passthrough().optional() }),
      }),
    )
    .default([]),
});

export function summarize(showJson: unknown): PlanSummary {
  const plan = showSchema.parse(showJson);
  const summary: PlanSummary = { add: 0, change: 0, destroy: 0, resources: [] };
  for (const rc of plan.resource_changes) {
    if (rc.mode !== 'managed') continue;
    const action = rc.change.importing !== undefined ? 'import' : actionOf(rc.change.actions);
    if (action === undefined) continue;
    count(summary, action);
    summary.resources.push({ address: rc.address, action });
  }
  summary.resources.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return summary;
}

/** Counts one resource's action in the summary's totals, as terraform's "Plan:" line does. */
export function count(summary: PlanSummary, action: Action): void {
  if (action === 'create' || action === 'replace') summary.add++;
  if (action === 'delete' || action === 'replace') summary.destroy++;
  if (action === 'update') summary.change++;
  if (action === 'import') summary.import = (summary.import ?? 0) + 1;
}

function actionOf(actions: string[]): Action | undefined {
  if (actions.includes('delete') && actions.includes('create')) return 'replace';
  const [only] = actions;
  if (only === 'create' || only === 'update' || only === 'delete' || only === 'forget') return only;
  return undefined; // no-op, read
}

/** Resources the plan would destroy (or replace) that the caller did not ask for. */
export function unaskedDestroys(summary: PlanSummary, asked: { destroy?: boolean; replace?: string[] }): string[] {
  if (asked.destroy) return [];
  return summary.resources
    .filter((r) => (r.action === 'delete' || r.action === 'replace') && !asked.replace?.includes(r.address))
    .map((r) => r.address);
}

/**
 * Whether a new plan stays within a saved one: every change it makes was in the saved plan
 * with the same action, or is what remains of a saved one: the create or the delete of a
 * replace, or the import of what a create or replace made (a run killed before terraform
 * saved it).
 * A run that died half-way leaves part of its plan done; the rest may be applied, nothing new.
 */
export function withinSummary(now: PlanSummary, saved: PlanSummary): boolean {
  const savedActions = new Map(saved.resources.map((r) => [r.address, r.action]));
  return now.resources.every((r) => {
    const before = savedActions.get(r.address);
    return (
      before === r.action ||
      (before === 'replace' && (r.action === 'create' || r.action === 'delete')) ||
      ((before === 'create' || before === 'replace') && r.action === 'import')
    );
  });
}

/** One line: "1 to add, 0 to change, 1 to destroy: aws_instance.host (replace)" (imports first, as terraform says them). */
export function formatSummary(summary: PlanSummary, maxResources = 20): string {
  const imports = summary.import ? `${summary.import} to import, ` : '';
  const counts = `${imports}${summary.add} to add, ${summary.change} to change, ${summary.destroy} to destroy`;
  if (summary.resources.length === 0) return counts;
  const shown = summary.resources.slice(0, maxResources).map((r) => `${r.address} (${r.action})`);
  const more = summary.resources.length - shown.length;
  return `${counts}: ${shown.join(', ')}${more > 0 ? `, and ${more} more` : ''}`;
}
