// The runner against the real terraform binary, on stacks of built-in `terraform_data`
// resources: a local backend for plans, applies, the destroy guard, a lock held by a
// second real terraform process and cancellation; the S3 backend with Terraform's own lock
// object (`use_lockfile`, as the fleet runs it) against a loopback S3 server for a run
// killed mid-apply, whose lock outlives it, and resumed.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Terraform interpolations, not JavaScript templates
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockOwner } from '../../../jobs/terraform/lock.js';
import { TerraformCancelledError } from '../../../jobs/terraform/process.js';
import {
  type Plan,
  PlanRefusedError,
  type RunContext,
  StateLockedError,
  Terraform,
} from '../../../jobs/terraform/runner.js';
import { OperationError } from '../../../lib/errors.js';
import { S3_KEY, S3_SECRET, type S3StandIn, startS3StandIn } from './s3-standin.js';
import {
  HAS_TERRAFORM,
  killHard,
  newStack,
  processesIn,
  slow,
  stateAddresses,
  TERRAFORM,
  waitFor,
  writeStack,
} from './tf-stack.js';

if (!HAS_TERRAFORM) {
  process.stderr.write('\n*** terraform is not on PATH: the Terraform runner tests are SKIPPED ***\n\n');
}

const dirs: string[] = [];
function stack(...args: Parameters<typeof newStack>): string {
  const dir = newStack(...args);
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) {
    killHard(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

function context(extra: Partial<RunContext> = {}): RunContext & { lines: string[] } {
  const lines: string[] = [];
  return { lines, onLine: (line) => lines.push(line), ...extra };
}

const tf = new Terraform({ bin: TERRAFORM, killGraceMs: 5_000 });

describe.skipIf(!HAS_TERRAFORM)('Terraform runner, local backend', () => {
  it('plans to a file, summarizes addresses and actions, applies exactly that plan', async () => {
    const dir = stack({ one: { input: 'a' }, two: { input: 'secret-looking-value' } });
    const ctx = context();
    const plan = await tf.plan({ stack: 'demo', dir }, ctx);
    expect(plan.summary).toEqual({
      add: 2,
      change: 0,
      destroy: 0,
      resources: [
        { address: 'terraform_data.one', action: 'create' },
        { address: 'terraform_data.two', action: 'create' },
      ],
    });
    expect(ctx.lines).toContain('terraform_data.one: Plan to create');
    expect(ctx.lines.join('\n')).not.toContain('secret-looking-value');
    await tf.apply(plan, ctx);
    expect(ctx.lines.some((l) => l.startsWith('Apply complete! Resources: 2 added'))).toBe(true);
    expect(stateAddresses(dir)).toEqual(['terraform_data.one', 'terraform_data.two']);
    expect(await tf.outputs('demo', dir, ctx)).toEqual({ first: 'a' });

    const again = await tf.plan({ stack: 'demo', dir }, context());
    expect(again.summary).toEqual({ add: 0, change: 0, destroy: 0, resources: [] });
  });

  it('replaces one address when asked, and only that one', async () => {
    const dir = stack({ one: { input: 'a' }, two: { input: 'b' } });
    await tf.apply(await tf.plan({ stack: 'demo', dir }, context()), context());
    const plan = await tf.plan({ stack: 'demo', dir, replace: ['terraform_data.two'] }, context());
    expect(plan.summary.resources).toEqual([{ address: 'terraform_data.two', action: 'replace' }]);
    expect([plan.summary.add, plan.summary.destroy]).toEqual([1, 1]);
    const ctx = context();
    await tf.apply(plan, ctx);
    expect(ctx.lines.some((l) => l.startsWith('Apply complete! Resources: 1 added, 0 changed, 1 destroyed'))).toBe(
      true,
    );
  });

  it('stops before apply when a plan destroys what was not asked, with the summary as the error', async () => {
    const dir = stack({ one: { input: 'a' }, two: { input: 'b', triggers_replace: 'v1' } });
    await tf.apply(await tf.plan({ stack: 'demo', dir }, context()), context());
    writeStack(dir, { one: { input: 'a2' }, two: { input: 'b', triggers_replace: 'v2' } }, { local: {} });

    const refused = await tf.plan({ stack: 'demo', dir }, context()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PlanRefusedError);
    const message = (refused as Error).message;
    expect(message).toBe(
      'plan for demo would destroy terraform_data.two, which was not asked: not applied ' +
        '(1 to add, 1 to change, 1 to destroy: terraform_data.one (update), terraform_data.two (replace))',
    );
    expect(message).not.toContain('\n');

    // Asked for, the same plan goes through; a destroy plan may destroy everything.
    await tf.apply(await tf.plan({ stack: 'demo', dir, replace: ['terraform_data.two'] }, context()), context());
    const destroy = await tf.plan({ stack: 'demo', dir, destroy: true }, context());
    expect(destroy.summary.destroy).toBe(2);
    await tf.apply(destroy, context());
    expect(stateAddresses(dir)).toEqual([]);
  });

  it('reports a lock held by another terraform process with its holder, and never releases it', async () => {
    const dir = stack({ one: { input: 'a' }, held: slow(60) });
    await tf.init('demo', dir, context());
    // A real second terraform: an apply holds the state lock while its provisioner sleeps.
    const other: ChildProcess = spawn(TERRAFORM, ['apply', '-auto-approve', '-input=false', '-no-color'], {
      cwd: dir,
      detached: true,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let otherOut = '';
    other.stdout?.on('data', (d: Buffer) => {
      otherOut += d.toString();
    });
    try {
      await waitFor(() => otherOut.includes("Provisioning with 'local-exec'"), 'the other apply to hold the lock');
      // Even "this job" on the same user@host: the lock predates the job, so it is not its own.
      const owner = lockOwner();
      const err = await tf.plan({ stack: 'demo', dir }, context({ owner })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StateLockedError);
      const { lock } = err as StateLockedError;
      expect(lock.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(lock.who).toBe(owner.who);
      expect(lock.operation).toBe('OperationTypeApply');
      expect(lock.created).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
      expect((err as Error).message).toBe(
        `state of demo is locked by ${lock.who} since ${lock.created} (ID ${lock.id}, OperationTypeApply)`,
      );
    } finally {
      process.kill(-(other.pid as number), 'SIGKILL');
    }
  });

  it('stops terraform cleanly when cancelled mid-apply: the group is gone and the lock released', async () => {
    const dir = stack({ one: { input: 'a' }, slow: slow(60) });
    const plan = await tf.plan({ stack: 'demo', dir }, context());
    const controller = new AbortController();
    const ctx = context({ signal: controller.signal });
    const applying = tf.apply(plan, ctx);
    await waitFor(() => ctx.lines.some((l) => l.includes("Provisioning with 'local-exec'")), 'the slow resource');
    const started = Date.now();
    controller.abort();
    const err = await applying.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TerraformCancelledError);
    expect((err as Error).message).toBe('cancelled: terraform apply was stopped');
    // Terraform stopped on SIGINT well within the grace period; nothing of it is left.
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(ctx.lines).toContain('Stopping operation...');
    await waitFor(() => processesIn(dir).length === 0, 'no process left in the stack directory', 3_000);
    // The lock was released: the next plan runs (a held lock would fail it). What it plans for
    // the half-made resource is terraform's to say: tainted, its replacement is a destroy the
    // guard refuses unless asked. Once in CI, under load, the plan was not refused (the run did
    // not show what it planned): a resource terraform stopped before recording is created
    // again, and anything else fails here with what was planned.
    const next = await tf.plan({ stack: 'demo', dir }, context()).catch((e: unknown) => e);
    if (next instanceof PlanRefusedError) {
      expect(next.summary.resources).toEqual([{ address: 'terraform_data.slow', action: 'replace' }]);
    } else {
      expect((next as Plan).summary.resources).toEqual([{ address: 'terraform_data.slow', action: 'create' }]);
    }
  });

  it('says which binary is missing in one line', async () => {
    const dir = stack({ one: { input: 'a' } });
    const missing = new Terraform({ bin: 'terraform-not-installed' });
    const err = await missing.plan({ stack: 'demo', dir }, context()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationError);
    expect((err as Error).message).toBe(
      'cannot run terraform-not-installed (ENOENT): install terraform or tofu, or set CLAWDINATOR_TERRAFORM_BIN',
    );
  });

  it('makes a failed command one line: the first error and its first detail', async () => {
    const dir = stack({ one: { input: '${var.undeclared}' } });
    const err = await tf.plan({ stack: 'demo', dir }, context()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationError);
    expect((err as Error).message).toMatch(
      /^terraform (init|plan) failed for demo: Reference to undeclared input variable: /,
    );
    expect((err as Error).message).not.toContain('\n');
  });
});

describe('Terraform runner: terraform reads no user configuration', () => {
  /** A HOME whose .terraformrc terraform would obey: a plugin cache dir that does not exist. */
  function hostileHome(): { home: string; rc: string } {
    const home = mkdtempSync(join(tmpdir(), 'clawdinator-tfhome-'));
    dirs.push(home);
    const rc = join(home, '.terraformrc');
    writeFileSync(rc, 'plugin_cache_dir = "/nonexistent-clawdinator-plugin-cache"\n');
    return { home, rc };
  }

  function withEnv<T>(vars: Record<string, string | undefined>, run: () => Promise<T>): Promise<T> {
    const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
    for (const [k, v] of Object.entries(vars)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    return run().finally(() => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    });
  }

  it.skipIf(!HAS_TERRAFORM)('a .terraformrc in HOME (or TF_CLI_CONFIG_FILE naming it) is not obeyed', async () => {
    const { home, rc } = hostileHome();
    const dir = stack({ one: { input: 'a' } });
    // The attack works on terraform run with this process's environment...
    const plain = spawnSync(TERRAFORM, ['init', '-input=false', '-no-color'], {
      cwd: dir,
      env: { ...process.env, HOME: home, TF_CLI_CONFIG_FILE: '' },
      encoding: 'utf8',
    });
    expect(`${plain.stdout}${plain.stderr}`).toContain('nonexistent-clawdinator-plugin-cache');
    // ...and not on the runner's terraform.
    for (const cliFile of [undefined, rc]) {
      const ctx = context();
      const plan = await withEnv({ HOME: home, TF_CLI_CONFIG_FILE: cliFile }, () =>
        tf.plan({ stack: 'demo', dir }, ctx),
      );
      expect(plan.summary.add).toBe(1);
      expect(ctx.lines.join('\n')).not.toContain('nonexistent-clawdinator-plugin-cache');
      expect(ctx.lines.join('\n')).not.toContain('CLI configuration');
    }
  });

  it('terraform gets a controlled environment: its own HOME, the explicit CLI config, AWS settings, none of ours', async () => {
    const { home } = hostileHome();
    const dir = stack({ one: { input: 'a' } });
    // A terraform that only says what it was given.
    const fake = join(home, 'terraform-env');
    writeFileSync(fake, `#!/bin/sh\nenv > ${join(home, 'seen.env')}\n`);
    chmodSync(fake, 0o755);
    const runner = new Terraform({ bin: fake, cliConfigFile: '/etc/clawdinator/terraform.rc' });
    await withEnv(
      {
        HOME: home,
        TF_CLI_CONFIG_FILE: join(home, '.terraformrc'),
        TF_PLUGIN_CACHE_DIR: '/tmp/elsewhere',
        CLAWDINATOR_REDIS_PASSWORD_FILE: '/run/clawdinator-ops/redis-password',
        AWS_REGION: 'eu-central-1',
        AWS_PROFILE: 'operator',
      },
      () => runner.init('demo', dir, context()),
    );
    const seen = Object.fromEntries(
      readFileSync(join(home, 'seen.env'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(seen.HOME).toBe(dir);
    expect(seen.TF_CLI_CONFIG_FILE).toBe('/etc/clawdinator/terraform.rc');
    expect(seen.TF_PLUGIN_CACHE_DIR).toBeUndefined();
    expect(Object.keys(seen).filter((k) => k.startsWith('CLAWDINATOR_'))).toEqual([]);
    // The operator's AWS profile still works: its files are named where HOME used to find them.
    expect(seen).toMatchObject({
      AWS_REGION: 'eu-central-1',
      AWS_PROFILE: 'operator',
      AWS_SHARED_CREDENTIALS_FILE: join(home, '.aws', 'credentials'),
      AWS_CONFIG_FILE: join(home, '.aws', 'config'),
    });
  });
});

describe.skipIf(!HAS_TERRAFORM)('Terraform runner, S3 backend with use_lockfile', () => {
  let s3: S3StandIn;
  beforeAll(async () => {
    s3 = await startS3StandIn(['state']);
  });
  afterAll(async () => {
    await s3?.close();
  });

  const backend = (key: string) => ({ s3: { key, use_lockfile: true } });
  const s3Runner = () =>
    new Terraform({
      bin: TERRAFORM,
      killGraceMs: 5_000,
      backendConfig: {
        bucket: 'state',
        region: 'eu-central-1',
        endpoints: `{s3="${s3.endpoint}"}`,
        use_path_style: 'true',
        access_key: S3_KEY,
        secret_key: S3_SECRET,
        skip_credentials_validation: 'true',
        skip_requesting_account_id: 'true',
        skip_metadata_api_check: 'true',
        skip_region_validation: 'true',
        skip_s3_checksum: 'true',
      },
    });

  it('resumes a run killed mid-apply: re-plans within the saved summary, releases only its own lock', async () => {
    const dir = stack({ one: { input: 'a' }, slow: slow(60) }, backend('clawdinator/demo.tfstate'));
    const request = { stack: 'demo', dir };

    // The first worker: records who its runs are, plans, saves the summary, starts applying…
    const owner = lockOwner();
    const first = s3Runner();
    const plan = await first.plan(request, context({ owner }));
    const saved = structuredClone(plan.summary);
    const ctx = context({ owner });
    const applying = first.apply(plan, ctx);
    await waitFor(() => ctx.lines.some((l) => l.includes("Provisioning with 'local-exec'")), 'the slow resource');
    // …and dies with everything it started: its lock object stays behind in the bucket.
    killHard(dir);
    await expect(applying).rejects.toBeInstanceOf(OperationError);
    const lockObject = await s3.get('state', 'clawdinator/demo.tfstate.tflock');
    expect(lockObject).toBeDefined();
    const held = JSON.parse(lockObject as string) as { ID: string; Who: string };

    // Someone else's lock (another user@host) is reported and left alone.
    const second = s3Runner();
    const stranger = { who: 'operator@laptop', since: owner.since };
    const err = await second.plan(request, context({ owner: stranger })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateLockedError);
    expect((err as StateLockedError).lock).toMatchObject({ id: held.ID, who: held.Who });
    expect(await s3.get('state', 'clawdinator/demo.tfstate.tflock')).toBeDefined();

    // The job resumed by another worker, with the saved owner and summary: its own lock goes.
    const resumed = context({ owner });
    const replan = await second.plan({ ...request, expected: saved }, resumed);
    expect(resumed.lines).toContain(
      `releasing the lock of this job's earlier run: ${held.Who} since ${(err as StateLockedError).lock.created} (ID ${held.ID}, OperationTypeApply)`,
    );
    // What remains to do (the S3 backend may or may not have saved terraform_data.one before
    // the kill) is within the saved plan.
    expect(replan.summary.resources).toContainEqual({ address: 'terraform_data.slow', action: 'create' });
    // Provisioners are not part of a plan's changes: drop the sleep so the apply is quick.
    writeStack(dir, { one: { input: 'a' }, slow: { input: 'slow' } }, backend('clawdinator/demo.tfstate'));
    const fast = await second.plan({ ...request, expected: saved }, context({ owner }));
    await second.apply(fast, context({ owner }));
    expect(await s3.get('state', 'clawdinator/demo.tfstate.tflock')).toBeUndefined();
    expect(await second.outputs('demo', dir, context())).toEqual({ first: 'a' });
  });

  it('refuses a resumed plan that goes beyond the saved summary', async () => {
    const dir = stack({ one: { input: 'a' } }, backend('clawdinator/other.tfstate'));
    const runner = s3Runner();
    const saved = (await runner.plan({ stack: 'other', dir }, context())).summary;
    writeStack(dir, { one: { input: 'a' }, extra: { input: 'x' } }, backend('clawdinator/other.tfstate'));
    const err = await runner.plan({ stack: 'other', dir, expected: saved }, context()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PlanRefusedError);
    expect((err as Error).message).toBe(
      'plan for other goes beyond the saved plan: not applied (saved: 1 to add, 0 to change, 0 to destroy: ' +
        'terraform_data.one (create); now: 2 to add, 0 to change, 0 to destroy: terraform_data.extra (create), ' +
        'terraform_data.one (create))',
    );
  });
});
