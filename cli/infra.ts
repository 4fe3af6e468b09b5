// `clawdinator infra …`: Day 0 and the operator's view of the CDKTF stacks. `init` makes
// what must exist before Terraform can run; `plan` and `apply` run a stack (base, or a fleet
// member) through the same runner the jobs use, with the operator's AWS credentials.
// Terraform's progress goes to stderr, the plan summary to stdout.
import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { backendConfig, REDIS_AUTH_SECRET, stateVariables } from '../infra/names.js';
import { readRegistry } from '../infra/registry.js';
import { loadInfraSettings, registryPath } from '../infra/settings.js';
import type { Plan, RunContext } from '../jobs/terraform/runner.js';
import { loadConfig } from '../lib/config.js';
import { UsageError } from '../lib/errors.js';

interface StackOptions {
  out: string;
  replace: string[];
}

function write(text: string): void {
  process.stdout.write(text);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function synth(stacks: string[] | undefined, out: string) {
  const { synthStacks } = await import('../jobs/terraform/synth.js');
  return synthStacks({ outdir: out, registry: readRegistry(registryPath()), settings: loadInfraSettings(), stacks });
}

/** Terraform's lines on stderr; Ctrl-C stops terraform gracefully instead of orphaning it. */
function runContext(): RunContext {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return { onLine: (line) => process.stderr.write(`${line}\n`), signal: controller.signal };
}

async function plan(
  stack: string,
  options: StackOptions,
  ctx: RunContext,
): Promise<{ plan: Plan; apply: () => Promise<void> }> {
  const config = loadConfig(['terraformBin', 'terraformConfigFile', 'stateBucket', 'stateRegion']);
  const { dirs } = await synth([stack], options.out);
  const { Terraform } = await import('../jobs/terraform/runner.js');
  const tf = new Terraform({
    bin: config.terraformBin,
    cliConfigFile: config.terraformConfigFile,
    backendConfig: backendConfig(config.stateBucket, config.stateRegion),
  });
  const made = await tf.plan(
    {
      stack,
      dir: dirs[stack] as string,
      vars: stateVariables(stack, config.stateBucket, config.stateRegion),
      replace: options.replace,
    },
    ctx,
  );
  for (const r of made.summary.resources) write(`  ${r.action.padEnd(7)} ${r.address}\n`);
  return { plan: made, apply: () => tf.apply(made, ctx) };
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

const outOption = ['--out <dir>', 'where to synthesize', 'cdktf.out'] as const;
const replaceOption = [
  '--replace <address>',
  'replace this resource (repeatable); its destroy is then expected',
] as const;

export function command(): Command {
  const infra = new Command('infra')
    .description('the CDKTF stacks: Day 0, synth, plan and apply')
    .showHelpAfterError(false);

  infra
    .command('init')
    .description(
      'create what is missing: the state bucket (versioned, encrypted, private), the Redis auth token, the gateway’s and the workers’ signing keys',
    )
    .action(async () => {
      const config = loadConfig(['stateBucket', 'stateRegion', 'awsRegion']);
      const { createAwsCloud } = await import('../jobs/cloud/aws.js');
      const { initInfra } = await import('../jobs/terraform/init.js');
      const result = await initInfra(
        createAwsCloud({ region: config.stateRegion ?? config.awsRegion }),
        createAwsCloud({ region: config.awsRegion }),
        config.stateBucket,
      );
      write(
        `${result.bucketCreated ? 'created' : 'kept   '} state bucket ${config.stateBucket} (versioned, encrypted)\n`,
      );
      write(`${result.secretCreated ? 'created' : 'kept   '} secret ${REDIS_AUTH_SECRET}\n`);
      for (const key of result.signingKeys) {
        write(`${key.created ? 'created' : 'kept   '} secret ${key.secret} (signs as ${key.keyId})\n`);
      }
      // Public keys only: what every worker needs to verify these principals.
      const publicKeys = Object.fromEntries(result.signingKeys.map((k) => [k.keyId, k.publicKeyPem]));
      write(`\nCLAWDINATOR_JOB_PUBLIC_KEYS (add your operators' keys):\n${JSON.stringify(publicKeys)}\n`);
    });

  infra
    .command('synth')
    .description('write the Terraform JSON of every stack, or of the named ones')
    .argument('[stacks...]', 'base or fleet member names (default: all)')
    .option(...outOption)
    .action(async (stacks: string[], options: { out: string }) => {
      const result = await synth(stacks.length > 0 ? stacks : undefined, options.out);
      for (const [name, dir] of Object.entries(result.dirs)) write(`synthesized ${name}: ${dir}\n`);
      for (const name of result.withoutAmi) write(`skipped ${name}: no ami recorded yet\n`);
    });

  infra
    .command('plan')
    .description('plan one stack and print its summary (addresses and actions)')
    .argument('<stack>', 'base or a fleet member name')
    .option(...outOption)
    .option(...replaceOption, collect, [])
    .action(async (stack: string, options: StackOptions) => {
      await plan(stack, options, runContext());
    });

  infra
    .command('apply')
    .description('plan one stack, show the summary, and apply exactly that plan')
    .argument('<stack>', 'base or a fleet member name')
    .option(...outOption)
    .option(...replaceOption, collect, [])
    .option('--yes', 'apply without asking')
    .action(async (stack: string, options: StackOptions & { yes?: boolean }) => {
      const ctx = runContext();
      const made = await plan(stack, options, ctx);
      // A plan without resource changes is applied without asking: it can only update outputs.
      if (!options.yes && made.plan.summary.resources.length > 0) {
        if (!process.stdin.isTTY) throw new UsageError('apply needs --yes when stdin is not a terminal');
        if (!(await confirm(`apply this plan to ${stack}? [y/N] `))) {
          write('not applied\n');
          return;
        }
      }
      await made.apply();
      write(`applied ${stack}\n`);
    });

  return infra;
}
