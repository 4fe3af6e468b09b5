// The stages of a rebuild, as people read them: the job reports its progress with the stage
// as the event's `step` (its saved steps are named `<stage>` or `<stage>-…`), and the bot
// draws the list with the current stage highlighted. Kept free of imports: the gateway's
// renderer loads it.
export const REBUILD_STAGES = ['resolve', 'build', 'upload', 'import', 'register', 'rollout'] as const;
export type RebuildStage = (typeof REBUILD_STAGES)[number];

/** The stage a step name belongs to (`import-wait` → `import`), undefined for others. */
export function rebuildStageOf(step: string | undefined): RebuildStage | undefined {
  if (step === undefined) return undefined;
  return REBUILD_STAGES.find((stage) => step === stage || step.startsWith(`${stage}-`));
}
