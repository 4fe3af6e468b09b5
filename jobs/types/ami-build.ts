// The builder's half of a rebuild: on one member's own host queue, its worker builds the image
// of a commit (nix build of the flake's image, jobs/ami/builder.ts) and uploads it to the
// bucket — the image never leaves the host that built it except into S3. The orchestrating
// rebuild-ami job asks for it (signed with the workers' key, hence `scheduled`: only workers
// make it) and waits for its result; the same two stages run in-process for `--local`.
//
//   build    the raw image: path, size, sha256 saved
//   upload   s3://<bucket>/images/clawdinator-nixos-<ts>-<shortsha>.raw, multipart; the
//            stored object's sha256 must be the build's
//
// Its end without success (a failure, or the orchestrator removing it when the builder went
// silent) is the engine's finalizer's: the member's lock released, the message naming the
// step. Nothing is undone: an object uploaded in part is the multipart upload's to abort,
// and the image key is this build's alone.
import { UnrecoverableError } from 'bullmq';
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';
import type { BuiltImage } from '../ami/builder.js';
import type { AmiDeps } from '../ami/deps.js';
import { isImageKey, throttledProgress } from '../ami/image.js';
import type { JobContext, JobType } from '../engine/job-type.js';

const BUILD_STEPS = ['build', 'upload'] as const;

export const AMI_BUILD = 'ami-build';

const dataSchema = z
  .object({
    host: instanceName,
    sha: z.string().regex(/^[0-9a-f]{40}$/),
    key: z.string().refine(isImageKey, 'images/clawdinator-nixos-<ts>-<shortsha>.raw'),
  })
  .strict();
export type AmiBuildData = z.output<typeof dataSchema>;

export interface UploadedImage {
  bucket: string;
  key: string;
  size: number;
  sha256: string;
  builtBy: string;
}

/** The job's result as the orchestrator reads it back (untrusted: it checks the object itself). */
export const uploadedSchema = z.object({
  bucket: z.string().max(63),
  key: z.string().max(200),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  builtBy: z.string().max(100),
});

const MiB = 1024 * 1024;
/** Build output lines kept in the job's log: the tail of a failing build says why. */
const BUILD_LOG_LINES = 400;
const BUILD_PROGRESS_MS = 10_000;

function size(bytes: number): string {
  return bytes >= 1024 * MiB ? `${(bytes / 1024 / MiB).toFixed(1)} GiB` : `${(bytes / MiB).toFixed(1)} MiB`;
}

/** The build stage: the builder of this process, output lines to the job's log, a line of progress now and then. */
export async function buildStage(
  ami: AmiDeps,
  ctx: JobContext<unknown>,
  sha: string,
  builtBy: string,
): Promise<BuiltImage> {
  await ctx.progress(`build: ${sha.slice(0, 12)} with ${ami.builder.kind} on ${builtBy}`, undefined, 'build');
  let lines = 0;
  let lastSaid = Date.now();
  const built = await ami.builder.build({
    sha,
    onLine: (line) => {
      if (++lines <= BUILD_LOG_LINES) ctx.log.info({ stage: 'build' }, line.slice(0, 500));
      if (Date.now() - lastSaid >= BUILD_PROGRESS_MS && line.trim() !== '') {
        lastSaid = Date.now();
        void ctx.progress(`build: ${line.trim().slice(0, 200)}`, undefined, 'build').catch(() => {});
      }
    },
  });
  await ctx.progress(`build: ${size(built.size)}, sha256 ${built.sha256.slice(0, 16)}…`, undefined, 'build');
  return built;
}

/** The upload stage: multipart with progress; the stored checksum must be the build's. */
export async function uploadStage(
  ami: AmiDeps,
  ctx: JobContext<unknown>,
  built: BuiltImage,
  key: string,
  builtBy: string,
): Promise<UploadedImage> {
  const where = `s3://${ami.bucket}/${key}`;
  const result = await ami.cloud.uploadFile(ami.bucket, key, built.path, {
    onProgress: throttledProgress((loaded, total) => {
      const percent = total === 0 ? 100 : Math.round((loaded / total) * 100);
      void ctx.progress(`upload: ${size(loaded)} of ${size(total)} to ${where}`, percent, 'upload').catch(() => {});
    }),
  });
  if (result.sha256 !== built.sha256 || result.size !== built.size) {
    throw new UnrecoverableError(
      `upload: ${built.path} changed since the build (sha256 ${result.sha256.slice(0, 16)}… is not the build's ${built.sha256.slice(0, 16)}…)`,
    );
  }
  await ctx.progress(`upload: ${where} (${size(result.size)}, checksum verified)`, 100, 'upload');
  return { bucket: ami.bucket, key, size: result.size, sha256: result.sha256, builtBy };
}

export function amiBuildJob(deps: { ami?: AmiDeps }): JobType<typeof dataSchema> {
  return {
    name: AMI_BUILD,
    version: 1,
    schema: dataSchema,
    permission: 'rebuild-ami',
    // Made only by workers (an orchestrating rebuild-ami job), signed with their key.
    scheduled: true,
    hostLocal: true,
    instanceOf: (d) => d.host,
    attempts: 2,
    steps: () => BUILD_STEPS,
    async finalize(end) {
      const what = `ami-build of ${end.data.sha.slice(0, 12)} on ${end.data.host}`;
      if (end.how === 'failed' || end.how === 'refused') return { message: `${what}: ${end.cause}` };
      return { message: `${what} ${end.how === 'stalled' ? 'failed' : 'stopped'} at ${end.step}: ${end.cause}` };
    },
    async run(ctx) {
      const { ami } = deps;
      if (ami === undefined) throw new UnrecoverableError('ami-build: this worker has no image builder configured');
      const { sha, key } = ctx.data;
      // It runs on this member's own host queue: the member is what built it.
      const builtBy = ctx.data.host;
      const built = await ctx.steps.run('build', () => buildStage(ami, ctx, sha, builtBy));
      const uploaded = await ctx.steps.run('upload', () => uploadStage(ami, ctx, built, key, builtBy));
      return { summary: `built ${sha.slice(0, 12)} on ${builtBy}: s3://${uploaded.bucket}/${key}`, ...uploaded };
    },
  };
}
