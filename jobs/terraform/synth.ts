// Synthesizes the stacks a job needs, in-process. The CDKTF app (cdktf and the provider
// classes, ≈ 90 MiB) loads on the first call only: workers that never deploy never load it.
import type { SynthOptions, SynthResult } from '../../infra/app.js';

export async function synthStacks(options: SynthOptions): Promise<SynthResult> {
  const { synthesize } = await import('../../infra/app.js');
  return synthesize(options);
}
