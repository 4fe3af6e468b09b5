// `clawdinator ami …`: the slow lane from a terminal.
//   ami rebuild   queue the rebuild-ami job as this operator (the same job as /rebuild-ami) and
//                 follow it; `--local` runs it in this process on a temporary Redis and builds
//                 the image on this machine (day 0: no fleet to build on yet)
//   ami build     the image of a commit, with Nix, here          (each stage alone, with the
//   ami upload    a raw image to s3://<bucket>/images/…         same code as the job: day 0,
//   ami import    import, register, tag, wait until available    CI, debugging)
//   ami list      our images with revision, age and the members that run them
//   ami prune     deregister old images with their snapshots and raw objects
// A rev is checked (shape, length) before anything else runs: a bad one is exit 2, one line.
import { Command, InvalidArgumentError } from 'commander';
import type { AmiDeps } from '../jobs/ami/deps.js';
import type { Cloud } from '../jobs/cloud/types.js';
import { checkRev, isFullSha } from '../jobs/github/revision.js';
import { loadConfig } from '../lib/config.js';
import { ConfigError, OperationError, UsageError } from '../lib/errors.js';

const ROLLOUTS = ['none', 'canary', 'all'] as const;
type Rollout = (typeof ROLLOUTS)[number];

/**
 * Checked in the action, not by commander: commander's own message would echo the value raw
 * (a newline in it would break the one-line error).
 */
function rev(value: string | undefined): string | undefined {
  return value === undefined ? undefined : checkRev(value);
}

function parseRollout(value: string): Rollout {
  if (!(ROLLOUTS as readonly string[]).includes(value)) throw new InvalidArgumentError('none, canary or all');
  return value as Rollout;
}

function parseKeep(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new InvalidArgumentError('a whole number from 1 to 100');
  return n;
}

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

export function command(): Command {
  const ami = new Command('ami').description('the base image (AMI): rebuild, build, upload, import, list, prune');
  ami
    .command('rebuild')
    .description('queue the rebuild-ami job (as /rebuild-ami) and follow it; --local: run it here, building with Nix')
    .option('--rev <rev>', 'sha, short sha, branch or tag (default: the head of CLAWDINATOR_PROJECT_BRANCH)')
    .option('--rollout <how>', 'none, canary (the first member) or all, one at a time', parseRollout, 'none')
    .option('--local', 'day 0: run the job in this process on a temporary redis-server and build the image here')
    .option('--yes', 'confirm a rollout: members are replaced')
    .option('--timeout <seconds>', 'how long to wait for the outcome', '14400')
    .action(async (opts: { rev?: string; rollout: Rollout; local?: boolean; yes?: boolean; timeout: string }) => {
      rev(opts.rev);
      if (opts.local && opts.rollout !== 'none') {
        throw new UsageError('--local builds and registers the image only: a rollout needs the fleet’s workers');
      }
      if (opts.rollout !== 'none' && !opts.yes) {
        throw new UsageError(`--rollout ${opts.rollout} replaces members with the new image: confirm with --yes`);
      }
      const data = { rev: rev(opts.rev), rollout: opts.rollout, build: opts.local ? 'local' : 'peer' };
      if (opts.local) return rebuildLocal(data, opts.timeout);
      const { runAsOperator } = await import('./fleet.js');
      await runAsOperator('rebuild-ami', data, opts.timeout);
    });
  ami
    .command('build')
    .description('build the raw image of a commit here with Nix (the flake’s packages.x86_64-linux.image)')
    .option('--rev <rev>', 'sha, short sha, branch or tag (default: the head of CLAWDINATOR_PROJECT_BRANCH)')
    .action(async (opts: { rev?: string }) => {
      rev(opts.rev);
      const { revisionResolver, machineName } = await import('./ami-deps.js');
      const { NixImageBuilder, imageFlake } = await import('../jobs/ami/builder.js');
      const config = loadConfig(['projectRepo', 'projectBranch', 'amiFlake']);
      const { sha, ref } = await (await revisionResolver()).resolve(opts.rev);
      say(`building ${ref} → ${sha} on ${machineName()}`);
      const built = await new NixImageBuilder({ flake: imageFlake(config.projectRepo, config.amiFlake) }).build({
        sha,
        onLine: say,
      });
      process.stdout.write(`${built.path}\nsize ${built.size} sha256 ${built.sha256} rev ${sha}\n`);
      process.stdout.write(`next: clawdinator ami upload ${built.path} --rev ${sha}\n`);
    });
  ami
    .command('upload')
    .description(
      'upload a raw image to s3://<bucket>/images/clawdinator-nixos-<ts>-<shortsha>.raw (multipart, checksum)',
    )
    .argument('<path>', 'the raw image (ami build prints it)')
    .requiredOption('--rev <sha>', 'the full commit sha it was built from')
    .action(async (path: string, opts: { rev: string }) => {
      rev(opts.rev);
      if (!isFullSha(opts.rev)) throw new UsageError('--rev: the full 40-hex commit sha the image was built from');
      const { cloud, config } = await stageCloud();
      const { imageNaming, throttledProgress } = await import('../jobs/ami/image.js');
      const { key } = imageNaming(opts.rev, new Date());
      const result = await cloud.uploadFile(config.bootstrapBucket, key, path, {
        onProgress: throttledProgress((loaded, total) =>
          say(`upload: ${Math.round((loaded / Math.max(total, 1)) * 100)}%`),
        ),
      });
      process.stdout.write(`s3://${result.bucket}/${result.key}\nsize ${result.size} sha256 ${result.sha256}\n`);
      process.stdout.write(`next: clawdinator ami import s3://${result.bucket}/${result.key} --rev ${opts.rev}\n`);
    });
  ami
    .command('import')
    .description('ImportSnapshot (vmimport role), RegisterImage, tag image and snapshot, wait until available')
    .argument('<object>', 's3://<bucket>/images/clawdinator-nixos-<ts>-<shortsha>.raw (ami upload prints it)')
    .requiredOption('--rev <sha>', 'the full commit sha it was built from')
    .option('--built-by <name>', 'what built it (the clawdinator:built-by tag; default this machine)')
    .action(async (object: string, opts: { rev: string; builtBy?: string }) => {
      await importStage(object, opts.rev, opts.builtBy);
    });
  ami
    .command('list')
    .description('our images (clawdinator=true), newest first, with revision, age and the members that run them')
    .option('--json', 'print the rows as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { cloud } = await stageCloud();
      const { imageRows, formatImageRows } = await import('../jobs/ami/retention.js');
      const rows = await imageRows(cloud, await registry());
      process.stdout.write(opts.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatImageRows(rows, Date.now())}\n`);
    });
  ami
    .command('prune')
    .description(
      'deregister images beyond the newest N (never one a member runs, never the newest), with snapshots and raw objects',
    )
    .option('--keep <n>', 'images to keep (default CLAWDINATOR_AMI_KEEP, 5)', parseKeep)
    .option('--dry-run', 'say what would go, change nothing')
    .action(async (opts: { keep?: number; dryRun?: boolean }) => {
      const { cloud, config } = await stageCloud();
      const { pruneImages, formatPrune } = await import('../jobs/ami/retention.js');
      const keep = opts.keep ?? loadConfig(['amiKeep']).amiKeep;
      const result = await pruneImages(cloud, {
        registry: await registry(),
        keep,
        bucket: config.bootstrapBucket,
        dryRun: opts.dryRun,
      });
      process.stdout.write(`${formatPrune(result, opts.dryRun)}\n`);
    });
  return ami;
}

/** AWS with this machine's credentials (or the deployer role when configured) and the bucket. */
async function stageCloud(): Promise<{ cloud: Cloud; config: { bootstrapBucket: string } }> {
  const config = loadConfig(['bootstrapBucket', 'awsRegion', 'deployerRoleArn']);
  const { createAwsCloud } = await import('../jobs/cloud/aws.js');
  return { cloud: createAwsCloud({ region: config.awsRegion, deployerRoleArn: config.deployerRoleArn }), config };
}

async function registry() {
  const config = loadConfig(['fleetRegistryBackend', 'fleetRegistryPath']);
  const { registryReader } = await import('../jobs/engine/setup.js');
  return registryReader(config)();
}

/** `ami import`: the job's import and register stages, waiting here (the job re-delays instead). */
async function importStage(object: string, sha: string, builtBy: string | undefined): Promise<void> {
  rev(sha);
  if (!isFullSha(sha)) throw new UsageError('--rev: the full 40-hex commit sha the image was built from');
  const match =
    /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(images\/clawdinator-nixos-(\d{14})-([0-9a-f]{7})\.raw)$/.exec(object);
  if (match === null) {
    throw new UsageError(
      `${object.slice(0, 120)} is not an uploaded image: s3://<bucket>/images/clawdinator-nixos-<ts>-<shortsha>.raw`,
    );
  }
  const [, bucket, key, stamp, short] = match as unknown as [string, string, string, string, string];
  if (!sha.startsWith(short))
    throw new UsageError(`--rev ${sha} is not the revision ${short} the object was built from`);
  const config = loadConfig(['amiBootMode', 'amiArchitecture', 'amiImportPollSeconds']);
  const { cloud } = await stageCloud();
  const [image, { machineName }] = await Promise.all([import('../jobs/ami/image.js'), import('./ami-deps.js')]);
  const head = await cloud.headObject(bucket, key);
  if (head === null)
    throw new OperationError(`s3://${bucket}/${key} does not exist: upload it first (clawdinator ami upload)`);
  // The same object imports as the same task: a rerun (CI, a Ctrl-C) adopts the first one.
  const seed = `${bucket}/${key}/${head.sha256 ?? head.etag ?? ''}`;
  const taskId = await image.startImport(cloud, { bucket, key, sha, clientToken: image.clientToken('import', seed) });
  say(`import: task ${taskId}`);
  const deadline = Date.now() + 90 * 60_000;
  let snapshotId: string | undefined;
  while (snapshotId === undefined) {
    const task = await cloud.describeImportSnapshot(taskId);
    say(`import: ${image.describeTask(task)}`);
    if (task.status === 'completed') snapshotId = image.snapshotOf(task);
    else if (Date.now() > deadline)
      throw new OperationError(`import: ${taskId} not done after 90 min (it may still finish: run ami import again)`);
    else await new Promise((r) => setTimeout(r, config.amiImportPollSeconds * 1000));
  }
  const name = `clawdinator-nixos-${stamp}`;
  const tags = image.imageTags({ name, sha, builtBy: builtBy ?? machineName(), key });
  const imageId = await image.registerImported(cloud, {
    name,
    snapshotId,
    architecture: config.amiArchitecture,
    bootMode: config.amiBootMode,
    clientToken: image.clientToken('register', seed),
    tags,
    sha,
  });
  say(`register: ${imageId} (${name}) on ${snapshotId}, ${config.amiBootMode}; waiting until available`);
  await cloud.waitForImageAvailable(imageId, { timeoutSeconds: 1800 });
  process.stdout.write(`${imageId}\n`);
}

/** `ami rebuild --local`: the rebuild-ami job in this process (the engine of `fleet spawn --local`). */
async function rebuildLocal(data: Record<string, unknown>, timeout: string): Promise<void> {
  const seconds = Number(timeout);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86_400) {
    throw new UsageError('--timeout: whole seconds from 1 to 86400');
  }
  const config = loadConfig([
    'projectRepo',
    'bootstrapBucket',
    'jobSigningKeyFile',
    'jobKeyId',
    'fleetRegistryPath',
    'memoryDir',
    'memoryMaxBytes',
    'memoryLockWaitSeconds',
    'logLevel',
  ]);
  if (!config.jobKeyId.startsWith('operator:')) {
    throw new ConfigError('config: CLAWDINATOR_JOB_KEY_ID must be operator:<name> for fleet changes from the CLI');
  }
  const [{ runLocal }, { amiDeps }, { fileRegistry, signerFrom }, { createLogger }, { stopRequested }, memoryMod, fs] =
    await Promise.all([
      import('./spawn-local.js'),
      import('./ami-deps.js'),
      import('../jobs/engine/setup.js'),
      import('../lib/log.js'),
      import('../lib/signals.js'),
      import('../memory/store.js'),
      import('node:fs/promises'),
    ]);
  const stop = stopRequested();
  const log = createLogger(config.logLevel);
  const ami: AmiDeps | undefined = await amiDeps({ log });
  if (ami === undefined)
    throw new ConfigError('config: CLAWDINATOR_PROJECT_REPO and CLAWDINATOR_BOOTSTRAP_BUCKET are needed');
  // ops.md and the audit, when this machine has the memory folder (day 0 may not yet).
  const hasMemory = (await fs.stat(config.memoryDir).catch(() => null))?.isDirectory() === true;
  const result = await runLocal({
    type: 'rebuild-ami',
    data,
    signer: signerFrom(config),
    ami,
    memory: hasMemory
      ? new memoryMod.MemoryStore({
          root: config.memoryDir,
          maxBytes: config.memoryMaxBytes,
          waitSeconds: config.memoryLockWaitSeconds,
        })
      : undefined,
    registry: fileRegistry(config.fleetRegistryPath),
    log,
    print: (line) => process.stdout.write(`${line}\n`),
    timeoutMs: seconds * 1000,
    stop,
  });
  if (!result.ok) throw new OperationError(result.text);
  process.stdout.write(`${result.text}\n`);
}
