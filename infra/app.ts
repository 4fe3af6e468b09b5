// The CDKTF app: the base stack and one stack per fleet member with a recorded AMI.
// Synthesized in-process (jobs, `clawdinator infra`, `npm run synth`), never through the
// cdktf CLI, whose start-up alone costs more than the synth. Every import of cdktf,
// constructs and @cdktf/* stays inside infra/ (see README: moving to CDK Terrain).
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { App } from 'cdktf';
import { BaseStack } from './base-stack.js';
import { InstanceStack, type MemberImports } from './instance-stack.js';
import { BASE_STACK } from './names.js';
import { type FleetRegistry, RegistryError } from './registry.js';
import type { InfraSettings } from './settings.js';

export interface Stacks {
  base?: BaseStack;
  instances: Map<string, InstanceStack>;
  /** Registry entries left out because no AMI is recorded for them yet. */
  withoutAmi: string[];
}

/**
 * Adds the stacks to `app`: all of them, or only those named in `only` (base or fleet
 * members). A named member without an AMI is refused; unnamed ones are only reported.
 */
export function createStacks(
  app: App,
  registry: FleetRegistry,
  settings: InfraSettings,
  only?: readonly string[],
  imports: Record<string, MemberImports> = {},
): Stacks {
  for (const name of only ?? []) {
    if (name === BASE_STACK) continue;
    const entry = registry[name];
    if (entry === undefined)
      throw new RegistryError(`no stack "${name}": expected base or a name in the fleet registry`);
    if (entry.ami === undefined) throw new RegistryError(`${name} has no ami in the fleet registry (spawn records it)`);
  }
  const wanted = (name: string) => only === undefined || only.includes(name);
  const stacks: Stacks = { instances: new Map(), withoutAmi: [] };
  if (wanted(BASE_STACK)) stacks.base = new BaseStack(app, settings);
  for (const [name, entry] of Object.entries(registry)) {
    if (!wanted(name)) continue;
    const { ami } = entry;
    if (ami === undefined) {
      stacks.withoutAmi.push(name);
      continue;
    }
    stacks.instances.set(name, new InstanceStack(app, name, { ...entry, ami }, settings, imports[name]));
  }
  return stacks;
}

export interface SynthOptions {
  /** Default: cdktf's (CDKTF_OUTDIR when run by the cdktf CLI, else cdktf.out). */
  outdir?: string;
  registry: FleetRegistry;
  settings: InfraSettings;
  stacks?: readonly string[];
  /** Per member stack: what an earlier, killed apply made that its state lacks (import blocks). */
  imports?: Record<string, MemberImports>;
}

export interface SynthResult {
  outdir: string;
  /** Stack name → the directory terraform runs in. */
  dirs: Record<string, string>;
  withoutAmi: string[];
}

export function synthesize(options: SynthOptions): SynthResult {
  if (options.outdir !== undefined) mkdirSync(options.outdir, { recursive: true });
  // Stack traces in construct metadata cost time at every resource and help nobody here.
  const app = new App({ outdir: options.outdir, stackTraces: false });
  const stacks = createStacks(app, options.registry, options.settings, options.stacks, options.imports);
  app.synth();
  const outdir = resolve(app.outdir);
  const names = [...(stacks.base ? [BASE_STACK] : []), ...stacks.instances.keys()];
  const dirs = Object.fromEntries(names.map((name) => [name, join(outdir, 'stacks', name)]));
  return { outdir, dirs, withoutAmi: stacks.withoutAmi };
}
