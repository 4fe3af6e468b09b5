// Stacks for the runner tests: Terraform JSON of built-in `terraform_data` resources only
// (no provider can be downloaded here), and ways to watch the real terraform processes.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Terraform interpolations, not JavaScript templates
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TERRAFORM = 'terraform';
export const HAS_TERRAFORM = spawnSync(TERRAFORM, ['version'], { stdio: 'ignore' }).status === 0;

export type Resources = Record<string, Record<string, unknown>>;

export function writeStack(dir: string, resources: Resources, backend: Record<string, unknown>): void {
  const config = {
    terraform: { backend },
    resource: { terraform_data: resources },
    output: { first: { value: '${terraform_data.one.output}' } },
  };
  writeFileSync(join(dir, 'main.tf.json'), JSON.stringify(config, null, 2));
}

export function newStack(resources: Resources, backend: Record<string, unknown> = { local: {} }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tf-runner-'));
  writeStack(dir, resources, backend);
  return dir;
}

/** A resource whose creation takes `seconds` (local-exec is built into terraform). */
export function slow(seconds: number, input = 'slow'): Record<string, unknown> {
  return { input, provisioner: [{ 'local-exec': { command: `sleep ${seconds}` } }] };
}

/** Addresses in a local state file. */
export function stateAddresses(dir: string): string[] {
  const state = JSON.parse(readFileSync(join(dir, 'terraform.tfstate'), 'utf8')) as {
    resources: { type: string; name: string }[];
  };
  return state.resources.map((r) => `${r.type}.${r.name}`).sort();
}

/** Pids of the processes whose working directory is `dir` (terraform and its children). */
export function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === dir) pids.push(Number(entry));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}

/** What systemd does to a dead worker's unit: SIGKILL to everything it started. */
export function killHard(dir: string): void {
  for (const pid of processesIn(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

export async function waitFor(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
