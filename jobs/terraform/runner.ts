// The Terraform runner: init, plan to a file, summarize it, apply exactly that file. Jobs
// (spawn, replace, retire) and `clawdinator infra` use it on stacks synthesized by
// jobs/terraform/synth.ts; terraform or tofu comes from PATH (CLAWDINATOR_TERRAFORM_BIN).
//
// As resumable job steps (jobs/engine/steps.ts saves each step's result in the job):
//
//   const owner = await steps.run('tf-owner', async () => lockOwner());
//   const saved = await steps.run('plan', async () => (plan = await tf.plan(request, { onLine, owner })).summary);
//   await steps.run('apply', async () =>
//     tf.apply(plan ?? (await tf.plan({ ...request, expected: saved }, { onLine, owner })), { onLine, owner }));
//
// A resumed job never applies a plan file it cannot verify: a worker that did not make the
// plan plans again, and applies only when the new plan stays within the saved summary (each
// change was in it; a run that died half-way leaves only part of it to do). A lock
// left by the job's own dead run (see lock.ts) is released; any other lock is reported
// with its holder. A plan that would destroy anything the request did not name stops
// before apply, with the summary as the error.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OperationError } from '../../lib/errors.js';
import { describeLock, type LockInfo, type LockOwner, ownsLock, parseLockError } from './lock.js';
import { execTerraform, terraformCause, terraformEnv } from './process.js';
import { formatSummary, type PlanSummary, summarize, unaskedDestroys, withinSummary } from './summary.js';

export class StateLockedError extends OperationError {
  constructor(
    stack: string,
    readonly lock: LockInfo,
  ) {
    super(`state of ${stack} is locked by ${describeLock(lock)}`);
  }
}

/** The plan was made but is not applied: it destroys what was not asked, or changed since. */
export class PlanRefusedError extends OperationError {
  constructor(
    message: string,
    readonly summary: PlanSummary,
  ) {
    super(message);
  }
}

export interface TerraformOptions {
  /** terraform or tofu: a name on PATH or a path. */
  bin: string;
  /** `-backend-config` pairs for init (the S3 backend's bucket and region). */
  backendConfig?: Record<string, string>;
  /** Between SIGINT to terraform's process group and SIGKILL, on cancel. Default 60 s. */
  killGraceMs?: number;
  /**
   * TF_CLI_CONFIG_FILE (CLAWDINATOR_TERRAFORM_CONFIG; on hosts the module's, which allows only
   * the bundled providers). Unset: an empty one the runner writes beside the stack, so a user's
   * own CLI configuration is never read either way.
   */
  cliConfigFile?: string;
}

export interface RunContext {
  /** Each line terraform prints, as it comes (the job log). Plan values are never passed. */
  onLine: (line: string) => void;
  signal?: AbortSignal;
  /** Who this job's runs are (lockOwner(), saved in the job): their stale locks are released. */
  owner?: LockOwner;
}

export interface PlanRequest {
  /** The stack's name, for messages. */
  stack: string;
  /** The synthesized stack directory: cdktf.out/stacks/<stack>. */
  dir: string;
  /** `-var` values (the state location: infra/names.ts stateVariables). */
  vars?: Record<string, string>;
  /** Addresses to replace; their destruction is asked for. */
  replace?: string[];
  /** Plan the destruction of everything in the stack (retiring one instance). */
  destroy?: boolean;
  /** The summary an earlier attempt saved: a plan with any change outside it is not applied. */
  expected?: PlanSummary;
}

export interface Plan {
  stack: string;
  dir: string;
  /** The plan file: it holds values in clear, so it stays in the stack directory. */
  file: string;
  summary: PlanSummary;
}

export class Terraform {
  private readonly graceMs: number;

  constructor(private readonly options: TerraformOptions) {
    this.graceMs = options.killGraceMs ?? 60_000;
  }

  /** `terraform init`; -reconfigure, since state is never migrated implicitly. */
  async init(stack: string, dir: string, ctx: RunContext): Promise<void> {
    const backend = Object.entries(this.options.backendConfig ?? {}).map(([k, v]) => `-backend-config=${k}=${v}`);
    await this.run(stack, dir, ['init', '-input=false', '-no-color', '-reconfigure', ...backend], ctx);
  }

  /** init, plan to a file, and its summary; refuses what was not asked or not expected. */
  async plan(request: PlanRequest, ctx: RunContext): Promise<Plan> {
    const { stack, dir } = request;
    await this.init(stack, dir, ctx);
    const file = join(dir, 'clawdinator.tfplan');
    const args = ['plan', '-json', '-input=false', '-no-color', `-out=${file}`];
    if (request.destroy) args.push('-destroy');
    for (const address of request.replace ?? []) args.push(`-replace=${address}`);
    for (const [name, value] of Object.entries(request.vars ?? {})) args.push('-var', `${name}=${value}`);
    await this.run(stack, dir, args, ctx, { json: true });

    const shown = await this.run(stack, dir, ['show', '-json', '-no-color', file], ctx, { capture: true });
    const summary = summarize(JSON.parse(shown));
    ctx.onLine(`plan for ${stack}: ${formatSummary(summary)}`);

    const unasked = unaskedDestroys(summary, request);
    if (unasked.length > 0) {
      throw new PlanRefusedError(
        `plan for ${stack} would destroy ${unasked.join(', ')}, which was not asked: not applied (${formatSummary(summary)})`,
        summary,
      );
    }
    if (request.expected !== undefined && !withinSummary(summary, request.expected)) {
      throw new PlanRefusedError(
        `plan for ${stack} goes beyond the saved plan: not applied (saved: ${formatSummary(request.expected)}; now: ${formatSummary(summary)})`,
        summary,
      );
    }
    return { stack, dir, file, summary };
  }

  /** Applies exactly this plan file (terraform refuses it if the state moved since). */
  async apply(plan: Plan, ctx: RunContext): Promise<void> {
    await this.run(plan.stack, plan.dir, ['apply', '-json', '-input=false', '-no-color', plan.file], ctx, {
      json: true,
    });
  }

  /** The stack's non-sensitive outputs (for jobs: bucket, EFS id, Redis endpoint…). */
  async outputs(stack: string, dir: string, ctx: RunContext): Promise<Record<string, unknown>> {
    await this.init(stack, dir, ctx);
    const text = await this.run(stack, dir, ['output', '-json', '-no-color'], ctx, { capture: true });
    const all = JSON.parse(text) as Record<string, { sensitive: boolean; value: unknown }>;
    return Object.fromEntries(
      Object.entries(all)
        .filter(([, o]) => !o.sensitive)
        .map(([name, o]) => [name, o.value]),
    );
  }

  /**
   * What the stack's state holds: resource address → id (managed resources). Only the ids are
   * read from `terraform show -json`; the values (some sensitive) are never kept or logged.
   */
  async stateIds(stack: string, dir: string, ctx: RunContext): Promise<Map<string, string>> {
    await this.init(stack, dir, ctx);
    const text = await this.run(stack, dir, ['show', '-json', '-no-color'], ctx, { capture: true });
    const shown = JSON.parse(text) as {
      values?: { root_module?: { resources?: { address?: unknown; mode?: unknown; values?: { id?: unknown } }[] } };
    };
    const ids = new Map<string, string>();
    for (const r of shown.values?.root_module?.resources ?? []) {
      if (r.mode === 'managed' && typeof r.address === 'string' && typeof r.values?.id === 'string') {
        ids.set(r.address, r.values.id);
      }
    }
    return ids;
  }

  /**
   * Runs one command; a state lock held by the job's own earlier run is released and the
   * command run again, once. Returns captured stdout (empty when streamed).
   */
  private async cliConfig(dir: string): Promise<string> {
    if (this.options.cliConfigFile !== undefined) return this.options.cliConfigFile;
    const file = join(dir, 'clawdinator.tfrc');
    await writeFile(file, '# Written by clawdinator: no user CLI configuration is read.\n');
    return file;
  }

  private async run(
    stack: string,
    dir: string,
    args: string[],
    ctx: RunContext,
    mode: { json?: boolean; capture?: boolean } = {},
  ): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      const exec = {
        bin: this.options.bin,
        args,
        cwd: dir,
        env: terraformEnv({ home: dir, cliConfigFile: await this.cliConfig(dir) }),
        onLine: ctx.onLine,
        signal: ctx.signal,
        graceMs: this.graceMs,
      };
      const result = await execTerraform({ ...exec, ...mode });
      if (result.code === 0) return result.stdout;
      const lock = parseLockError(result.errors.join('\n'));
      if (lock === undefined)
        throw new OperationError(`terraform ${args[0]} failed for ${stack}: ${terraformCause(result.errors)}`);
      if (attempt > 0 || ctx.owner === undefined || !ownsLock(lock, ctx.owner)) throw new StateLockedError(stack, lock);
      ctx.onLine(`releasing the lock of this job's earlier run: ${describeLock(lock)}`);
      const unlock = await execTerraform({ ...exec, args: ['force-unlock', '-force', lock.id] });
      if (unlock.code !== 0) {
        throw new OperationError(`terraform force-unlock failed for ${stack}: ${terraformCause(unlock.errors)}`);
      }
    }
  }
}
