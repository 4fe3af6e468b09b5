// `clawdinator fleet …`: the fleet from a terminal. `fleet status [name] [--json]` prints
// the same view as /status — a source that does not answer is marked, the others shown;
// `--json` prints FleetStatus (jobs/status.ts), a stable shape with a per-source `sources`.
// `fleet spawn|retire|replace` queue the same jobs as the slash commands, signed with this
// operator's key (CLAWDINATOR_JOB_KEY_ID=operator:<name>), and wait for their outcome;
// `fleet cleanup` queues the stray-cleanup job the health sweep's stray alerts name.
// `fleet bundle <name>` (re)uploads a member's bootstrap bundle (the original's
// upload-bootstrap.sh): only what changed goes up. `fleet update` queues a deploy (as /deploy);
// `fleet doctor` and `fleet logs` ask a member's host over SSM (as /doctor and /logs).
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_LOG_UNIT, LOG_LINES_DEFAULT, LOG_LINES_MAX, LOG_UNITS } from '../infra/host-document.js';
import { createAwsCloud } from '../jobs/cloud/aws.js';
import { FLEET_QUEUE } from '../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../jobs/engine/queues.js';
import { connectionFrom, registryReader, signerFrom, workersPublicKey } from '../jobs/engine/setup.js';
import { checkRev } from '../jobs/github/revision.js';
import { checkTarget } from '../jobs/host/ops.js';
import { createRedis } from '../jobs/redis.js';
import { fleetStatus, formatMember, formatStatus } from '../jobs/status.js';
import { jobTypes } from '../jobs/types/index.js';
import { loadConfig } from '../lib/config.js';
import { ConfigError, OperationError, UsageError } from '../lib/errors.js';

export function command(): Command {
  const fleet = new Command('fleet').description(
    'the fleet: status, spawn, retire, replace, cleanup, update, doctor, logs',
  );
  fleet
    .command('status')
    .description('each member from the registry, EC2, SSM and its heartbeat; queue counts; next scheduled runs')
    .argument('[name]', 'one member in detail')
    .option('--json', 'print the FleetStatus JSON (see jobs/status.ts)')
    .action(async (name: string | undefined, opts: { json?: boolean }) => {
      const config = loadConfig([
        'redisUrl',
        'redisPasswordFile',
        'fleetRegistryPath',
        'fleetRegistryBackend',
        'awsRegion',
        'deployerRoleArn',
        'jobPublicKeys',
        'modelPrices',
      ]);
      // Before connecting: a heartbeat is believed only if it verifies with the workers' key.
      const workersKey = workersPublicKey(config.jobPublicKeys);
      const connection = connectionFrom(config);
      const redis = createRedis(connection);
      const queue = new Queue(FLEET_QUEUE, { connection });
      try {
        const status = await fleetStatus({
          registry: registryReader(config),
          cloud: createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn }),
          redis,
          workersKey,
          queues: [queue],
          prices: config.modelPrices,
          detail: name,
        });
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify(name ? status.members.filter((m) => m.name === name) : status, null, 2)}\n`,
          );
          return;
        }
        const text = name ? formatMember(status, name) : formatStatus(status);
        if (text === null) throw new UsageError(`${name} is not in the fleet registry`);
        process.stdout.write(`${text.replace(/\*\*/g, '')}\n`);
      } finally {
        await queue.close();
        redis.disconnect();
      }
    });
  fleet
    .command('spawn')
    .description('create a new member and wait until it is online')
    .argument('<name>', 'clawdinator-<n>; needs its Discord token secret')
    .option('--instance-type <type>', 'EC2 instance type (default from settings)')
    .option('--ami <id>', 'AMI id (default: the latest available)')
    .option('--timeout <seconds>', 'how long to wait for the outcome', '3600')
    .option('--local', 'day 0, no worker yet: run the job in this process on a temporary local redis-server')
    .action(async (name: string, opts: { instanceType?: string; ami?: string; timeout: string; local?: boolean }) => {
      if (opts.local) {
        const { spawnLocal } = await import('./spawn-local.js');
        return spawnLocal(name, opts);
      }
      await runAsOperator('spawn', { name, instanceType: opts.instanceType, ami: opts.ami }, opts.timeout);
    });
  fleet
    .command('retire')
    .description('destroy a member and remove it from the registry (needs --yes)')
    .argument('<name>', 'the member to retire')
    .option('--yes', 'confirm: the host is destroyed')
    .option('--timeout <seconds>', 'how long to wait for the outcome', '3600')
    .action(async (name: string, opts: { yes?: boolean; timeout: string }) => {
      if (!opts.yes) throw new UsageError(`retire destroys ${name}'s host: confirm with --yes`);
      await runAsOperator('retire', { name }, opts.timeout);
    });
  fleet
    .command('replace')
    .description('replace a member with a new instance, optionally from another AMI (needs --yes)')
    .argument('<name>', 'the member to replace')
    .option('--ami <id>', 'AMI id (default: the one recorded in the registry)')
    .option('--yes', 'confirm: the current instance is destroyed')
    .option('--timeout <seconds>', 'how long to wait for the outcome', '3600')
    .action(async (name: string, opts: { ami?: string; yes?: boolean; timeout: string }) => {
      if (!opts.yes) throw new UsageError(`replace destroys ${name}'s current instance: confirm with --yes`);
      await runAsOperator('replace', { name, ami: opts.ami }, opts.timeout);
    });
  fleet
    .command('cleanup')
    .description(
      'end a stray the health sweep reported: terminate an instance of ours the registry does not know, or retire a member whose instance is gone (needs --yes)',
    )
    .argument('<target>', 'an instance id (i-…) or a registry member name')
    .option('--yes', 'confirm: the instance is terminated, or the member retired')
    .option('--timeout <seconds>', 'how long to wait for the outcome', '3600')
    .action(async (target: string, opts: { yes?: boolean; timeout: string }) => {
      const what = target.startsWith('i-') ? `terminates ${target}` : `retires ${target} from the registry`;
      if (!opts.yes) throw new UsageError(`cleanup ${what}: confirm with --yes`);
      await runAsOperator('stray-cleanup', { target }, opts.timeout);
    });
  fleet
    .command('update')
    .description('deploy a revision to the fleet, canary first, rolled back on failure (as /deploy)')
    .option('--rev <rev>', 'sha, short sha, branch or tag (default: the head of CLAWDINATOR_PROJECT_BRANCH)', parseRev)
    .option('--target <target>', 'all (canary first) or one member', parseTarget, 'all')
    .option('--timeout <seconds>', 'how long to wait for the outcome', '7200')
    .action(async (opts: { rev?: string; target: string; timeout: string }) => {
      await runAsOperator(
        'deploy',
        { ...(opts.rev === undefined ? {} : { rev: opts.rev }), target: opts.target },
        opts.timeout,
      );
    });
  fleet
    .command('doctor')
    .description("the verification checklist on a member's host over SSM (as /doctor); exit 1 when a check fails")
    .argument('<name>', 'a member of the fleet registry')
    .action(async (name: string) => {
      const { doctorMember } = await import('../jobs/host/ops.js');
      const report = await doctorMember(await hostDeps(), name);
      process.stdout.write(`${report.text}\n`);
      if (report.checks.some((c) => c.state === 'fail')) process.exitCode = 1;
    });
  fleet
    .command('logs')
    .description("the last lines of a unit's journal on a member's host over SSM, redacted on the host (as /logs)")
    .argument('<name>', 'a member of the fleet registry')
    .option('--unit <unit>', `one of ${LOG_UNITS.join(', ')}`, DEFAULT_LOG_UNIT)
    .option('--lines <n>', `how many, at most ${LOG_LINES_MAX}`, String(LOG_LINES_DEFAULT))
    .action(async (name: string, opts: { unit: string; lines: string }) => {
      const { memberLogs, checkLines, checkMember, checkUnit } = await import('../jobs/host/ops.js');
      // Every value checked before any setting is read or any call made.
      const request = { name: checkMember(name), unit: checkUnit(opts.unit), lines: checkLines(opts.lines) };
      const report = await memberLogs(await hostDeps(), request);
      process.stdout.write(`${report.text}\n`);
    });
  fleet
    .command('bundle')
    .description('(re)upload a member’s bootstrap bundle: config, workspace templates, repo seeds, manifest')
    .argument('<name>', 'a member of the fleet registry')
    .action(async (name: string) => {
      await uploadMemberBundle(name);
    });
  return fleet;
}

function parseRev(value: string): string {
  try {
    return checkRev(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function parseTarget(value: string): string {
  try {
    return checkTarget(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** What `fleet doctor|logs` ask through: AWS with this machine's settings, the registry. */
async function hostDeps() {
  const config = loadConfig(['fleetRegistryPath', 'fleetRegistryBackend', 'awsRegion', 'deployerRoleArn']);
  return {
    cloud: createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn }),
    registry: registryReader(config),
  };
}

/** `fleet bundle`: the member's bundle from the registry entry, as spawn uploads it. */
async function uploadMemberBundle(name: string): Promise<void> {
  const config = loadConfig([
    'fleetRegistryBackend',
    'fleetRegistryPath',
    'bootstrapBucket',
    'awsRegion',
    'deployerRoleArn',
    'efsId',
    'agentDirectKeys',
  ]);
  const entry = (await registryReader(config)())[name];
  if (entry === undefined) throw new UsageError(`${name} is not in the fleet registry`);
  const [{ uploadBundle }, { agentKeySecret }, { fleetRedisUrl }] = await Promise.all([
    import('../jobs/bootstrap/bundle.js'),
    import('../jobs/types/spawn.js'),
    import('./fleet-deps.js'),
  ]);
  const result = await uploadBundle(
    createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn }),
    {
      name,
      host: entry.host,
      bootstrapPrefix: entry.bootstrapPrefix,
      bucket: config.bootstrapBucket,
      region: config.awsRegion ?? null,
      efsId: config.efsId ?? null,
      redisUrl: fleetRedisUrl(),
      secrets: { discordToken: entry.discordTokenSecret, agentKey: agentKeySecret(name) },
      agentKeys: config.agentDirectKeys,
    },
  );
  const where = `s3://${config.bootstrapBucket}/${result.prefix}/`;
  for (const path of result.uploaded) process.stdout.write(`uploaded  ${path}\n`);
  for (const path of result.removed) process.stdout.write(`removed   ${path}\n`);
  process.stdout.write(
    `${where}: ${result.uploaded.length} uploaded, ${result.unchanged.length} unchanged, ${result.removed.length} removed (manifest ${result.manifestSha256.slice(0, 12)})\n`,
  );
}

/** Queues a lifecycle job as this operator and waits for it to end, printing its progress. */
export async function runAsOperator(type: string, data: Record<string, unknown>, timeout: string): Promise<void> {
  const seconds = Number(timeout);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400)
    throw new UsageError('--timeout: whole seconds from 1 to 86400');
  const config = loadConfig([
    'redisUrl',
    'redisPasswordFile',
    'jobSigningKeyFile',
    'jobKeyId',
    'fleetRegistryPath',
    'fleetRegistryBackend',
    'instanceTypes',
  ]);
  if (!config.jobKeyId.startsWith('operator:')) {
    throw new ConfigError('config: CLAWDINATOR_JOB_KEY_ID must be operator:<name> for fleet changes from the CLI');
  }
  const connection = connectionFrom(config);
  const redis = createRedis(connection);
  // Only enqueues: the registry is read by the worker that runs the job.
  const registry = registryReader(config, { lazyKey: true });
  const enqueuer = new Enqueuer(
    connection,
    redis,
    new JobTypes(jobTypes({ redis, registry, instanceTypes: config.instanceTypes })),
    signerFrom(config),
  );
  try {
    const { jobId, queue: name } = await enqueuer.enqueue({
      type,
      data,
      principal: { kind: 'cli', operator: config.jobKeyId.slice('operator:'.length) },
      requestId: `cli-${randomBytes(9).toString('base64url')}`,
    });
    process.stdout.write(`queued ${jobId}\n`);
    const queue = enqueuer.queue(name);
    const deadline = Date.now() + seconds * 1000;
    let said = '';
    for (;;) {
      const job = await queue.getJob(jobId);
      const state = job ? await job.getState() : 'unknown';
      const step = (job?.progress as { message?: string } | undefined)?.message;
      if (step && step !== said) {
        said = step;
        process.stdout.write(`  ${step}\n`);
      }
      if (state === 'completed') {
        process.stdout.write(`${(job?.returnvalue as { summary?: string } | undefined)?.summary ?? 'done'}\n`);
        return;
      }
      if (state === 'failed' || state === 'unknown') {
        throw new OperationError(job?.failedReason ?? `${jobId} is gone`);
      }
      if (Date.now() > deadline)
        throw new OperationError(`${jobId} is still ${state} after ${seconds} s (see clawdinator jobs show ${jobId})`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await enqueuer.close();
    redis.disconnect();
  }
}
