// The image pipeline's parts, over the Cloud interface, shared by the rebuild job's steps and
// the CLI's stage commands (`ami upload|import`, day 0 and CI), so both make the same calls
// with the same names, tags and idempotency tokens.
//
// The tag contract (what spawn, /status, rollouts and prune rely on): every image of ours and
// its snapshot carry
//   Name                      clawdinator-nixos-<UTC yyyymmddHHMMSS>
//   clawdinator               true            (spawn picks the newest available one; prune only touches these)
//   clawdinator:revision      <full commit sha the image was built from>
//   clawdinator:built-by      <the host (or machine) that built it>
//   clawdinator:image-object  images/clawdinator-nixos-<ts>-<shortsha>.raw (the uploaded raw image, deleted with it)
// The image also carries the adapter's `clawdinator-client-token` (RegisterImage has no
// ClientToken; a retry finds its image by it).
import { createHash } from 'node:crypto';
import { CloudError } from '../cloud/errors.js';
import { AMI_TAG, type Architecture, type BootMode, type Cloud, type ImportTask, type Tags } from '../cloud/types.js';

export const IMAGE_PREFIX = 'images/';
export const REVISION_TAG = 'clawdinator:revision';
export const BUILT_BY_TAG = 'clawdinator:built-by';
export const OBJECT_TAG = 'clawdinator:image-object';
/** The uploaded image's key, as spawn's and prune's readers expect it. */
const KEY_SHAPE = /^images\/clawdinator-nixos-\d{14}-[0-9a-f]{7}\.raw$/;

/** `20260101120000`: the original's `date -u +%Y%m%d%H%M%S`. */
export function utcStamp(at: Date): string {
  return at.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

export interface ImageNaming {
  /** The image's Name (and RegisterImage name): clawdinator-nixos-<ts>. */
  name: string;
  /** The raw image's key in the bucket: images/clawdinator-nixos-<ts>-<shortsha>.raw. */
  key: string;
  shortSha: string;
}

export function imageNaming(sha: string, at: Date): ImageNaming {
  const stamp = utcStamp(at);
  const shortSha = sha.slice(0, 7);
  return {
    name: `clawdinator-nixos-${stamp}`,
    key: `${IMAGE_PREFIX}clawdinator-nixos-${stamp}-${shortSha}.raw`,
    shortSha,
  };
}

export function isImageKey(key: string): boolean {
  return KEY_SHAPE.test(key);
}

/** The tag contract above, for the image and its snapshot. */
export function imageTags(input: { name: string; sha: string; builtBy: string; key: string }): Tags {
  return {
    Name: input.name,
    [AMI_TAG.key]: AMI_TAG.value,
    [REVISION_TAG]: input.sha,
    [BUILT_BY_TAG]: tagValue(input.builtBy),
    [OBJECT_TAG]: input.key,
  };
}

/** EC2 tag values: at most 256 of letters, digits, spaces and `+ - = . _ : / @`. */
function tagValue(value: string): string {
  return value.replace(/[^A-Za-z0-9 +\-=._:/@]/g, '-').slice(0, 256);
}

/**
 * A client token for one create: the same seed, the same token, so a retried step gets the
 * same import task (ImportSnapshot's ClientToken) or image (the adapter's tag). 64 characters
 * at most, as EC2 allows; derived from a job id (which may carry `:`), never random.
 */
export function clientToken(kind: 'import' | 'register', seed: string): string {
  return `clawdinator-${kind}-${createHash('sha256').update(seed).digest('hex').slice(0, 40)}`;
}

/** "42% converting" / "completed" */
export function describeTask(task: ImportTask): string {
  if (task.status === 'completed') return 'completed';
  return `${task.progress}%${task.statusMessage === '' ? '' : ` ${task.statusMessage}`}`;
}

/** Upload progress, at most every 5 % (each report is a Redis write and a Discord edit). */
export function throttledProgress(
  report: (loaded: number, total: number) => void,
): (p: { loadedBytes: number; totalBytes: number }) => void {
  let lastPercent = -100;
  return ({ loadedBytes, totalBytes }) => {
    const percent = totalBytes === 0 ? 100 : (loadedBytes / totalBytes) * 100;
    if (percent - lastPercent < 5 && percent < 100) return;
    lastPercent = percent;
    report(loadedBytes, totalBytes);
  };
}

export interface ImportStart {
  bucket: string;
  key: string;
  sha: string;
  clientToken: string;
}

/** ImportSnapshot with the vmimport role (the adapter passes it); the format from the key. */
export async function startImport(cloud: Cloud, input: ImportStart): Promise<string> {
  const { importTaskId } = await cloud.importSnapshot({
    bucket: input.bucket,
    key: input.key,
    description: `clawdinator-nixos ${input.sha.slice(0, 12)}`,
    clientToken: input.clientToken,
  });
  return importTaskId;
}

export interface RegisterInput {
  name: string;
  snapshotId: string;
  architecture: Architecture;
  bootMode: BootMode;
  clientToken: string;
  tags: Tags;
  sha: string;
}

/**
 * RegisterImage (x86_64 or arm64, legacy-bios or uefi, hvm, ENA, root /dev/xvda on the
 * snapshot, DeleteOnTermination: the adapter builds exactly that), tagged at creation; then
 * the same tags on the snapshot, which VM Import leaves untagged — without `clawdinator=true`
 * on it, the deployer could not delete it when prune deregisters the image.
 */
export async function registerImported(cloud: Cloud, input: RegisterInput): Promise<string> {
  const { imageId } = await cloud.registerImage({
    name: input.name,
    snapshotId: input.snapshotId,
    architecture: input.architecture,
    bootMode: input.bootMode,
    clientToken: input.clientToken,
    description: `clawdinator-nixos ${input.sha}`,
    tags: input.tags,
  });
  await cloud.tagResources([input.snapshotId], input.tags);
  return imageId;
}

/** A finished import's snapshot, or why there is none. */
export function snapshotOf(task: ImportTask): string {
  if (task.snapshotId === null) {
    throw new CloudError({
      operation: 'DescribeImportSnapshotTasks',
      resource: task.importTaskId,
      code: 'ImportTask.NoSnapshot',
      kind: 'failed',
      retryable: false,
      detail: 'completed without a snapshot id',
    });
  }
  return task.snapshotId;
}
