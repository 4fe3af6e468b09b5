// The one interface the jobs use for everything they ask of AWS. Two implementations: the
// AWS SDK v3 adapter (`aws.ts`) and the simulated cloud (`sim.ts`) for the sandbox and tests.
// Every result is plain JSON-able data (ISO strings, no Dates or SDK objects), so a job can
// save it as a step result and resume from it on another worker. Every failure is a
// CloudError (`errors.ts`) whose message is one line.
/** Tag every fleet instance carries (`app=clawdinator`); the base stack sets it. */
export const FLEET_TAG = { key: 'app', value: 'clawdinator' } as const;
/** Tag every image of ours carries (`clawdinator=true`), as in the original's import script. */
export const AMI_TAG = { key: 'clawdinator', value: 'true' } as const;
/**
 * Tag an instance carries from its launch: the id of the job that made it (infra/names.ts).
 * A resumed job finds what an earlier attempt launched by it (fencing against a second
 * create), and a failed spawn's undo terminates what it made.
 */
export { JOB_TAG } from '../../infra/names.js';
/** Tag that remembers the client token of a RegisterImage, which has no ClientToken. */
export const CLIENT_TOKEN_TAG = 'clawdinator-client-token';
/** The VM Import service role the base stack creates, as in the original. */
export const VM_IMPORT_ROLE = 'vmimport';
export const ROOT_DEVICE = '/dev/xvda';

export type Tags = Record<string, string>;

export type InstanceState = 'pending' | 'running' | 'shutting-down' | 'terminated' | 'stopping' | 'stopped';

export interface FleetInstance {
  instanceId: string;
  /** The `Name` tag (the fleet member's name), null when untagged. */
  name: string | null;
  state: InstanceState;
  instanceType: string;
  imageId: string;
  launchTime: string | null;
  privateIp: string | null;
  tags: Tags;
}

export type Architecture = 'x86_64' | 'arm64';
export type BootMode = 'legacy-bios' | 'uefi';

export interface AmiInfo {
  imageId: string;
  name: string;
  /** `pending`, `available`, `failed`, … */
  state: string;
  creationDate: string | null;
  architecture: string | null;
  bootMode: string | null;
  rootSnapshotId: string | null;
  snapshotIds: string[];
  tags: Tags;
}

export interface DeregisterResult {
  imageId: string;
  /** False when the image was already gone (a resumed prune). */
  deregistered: boolean;
  /** Each snapshot of the image and what became of it (`success`, `skipped` when shared, …). */
  snapshots: { snapshotId: string; result: string }[];
}

export interface ImportSnapshotInput {
  bucket: string;
  /** `.raw`/`.img` (RAW), `.vhd` or `.vmdk`; the format is taken from the extension. */
  key: string;
  description: string;
  /** Same token, same task: a retried step never starts a second import. */
  clientToken: string;
}

export interface ImportTask {
  importTaskId: string;
  /** A failed task (`deleting`/`deleted`) is thrown as a CloudError instead. */
  status: 'active' | 'completed';
  /** Percent, 0–100. */
  progress: number;
  statusMessage: string;
  snapshotId: string | null;
}

export interface RegisterImageInput {
  name: string;
  snapshotId: string;
  architecture: Architecture;
  bootMode: BootMode;
  /** Same token, same image: a retried step gets the image the first attempt registered. */
  clientToken: string;
  description?: string;
  /** Tags set at creation (e.g. `clawdinator=true` and the source revision). */
  tags?: Tags;
}

export interface UploadProgress {
  loadedBytes: number;
  totalBytes: number;
}

export interface UploadResult {
  bucket: string;
  key: string;
  size: number;
  /** Hex SHA-256 of the file, stored as the object's `sha256` metadata. */
  sha256: string;
}

export interface DownloadResult {
  size: number;
  sha256: string;
}

export interface ObjectInfo {
  size: number;
  etag: string | null;
  /** The `sha256` metadata uploadFile stores, null for objects written otherwise. */
  sha256: string | null;
  lastModified: string | null;
  metadata: Record<string, string>;
}

export interface BucketOptions {
  versioned: boolean;
  encrypted: boolean;
}

/** A command on hosts: an SSM Command document and its parameters (each a list, as SSM takes them). */
export interface CommandRequest {
  document: string;
  parameters: Record<string, string[]>;
}

export interface SendCommandOptions {
  /** Shown in the SSM console; cut to 100 characters. */
  comment: string;
}

export type CommandStatus = 'Success' | 'Failed' | 'Cancelled' | 'TimedOut';

export interface InvocationResult {
  commandId: string;
  instanceId: string;
  status: CommandStatus;
  /** The script's exit code; null when it never ran. */
  exitCode: number | null;
  /** What SSM kept of the output (its first 24 000 characters of stdout, 8 000 of stderr). */
  stdout: string;
  stderr: string;
}

export type PingStatus = 'Online' | 'ConnectionLost' | 'Inactive' | 'Unknown';

export interface Cloud {
  // EC2 instances
  /** Every instance tagged `app=clawdinator` that is not terminated; ⌈N/1000⌉ calls. */
  listFleetInstances(): Promise<FleetInstance[]>;
  describeInstance(instanceId: string): Promise<FleetInstance>;
  terminateInstance(instanceId: string): Promise<{ instanceId: string; state: InstanceState }>;
  waitForInstance(
    instanceId: string,
    state: 'running' | 'terminated',
    options: { timeoutSeconds: number },
  ): Promise<FleetInstance>;

  // Images
  /** Newest available image of ours, null when there is none. */
  findLatestAmi(): Promise<AmiInfo | null>;
  describeImage(imageId: string): Promise<AmiInfo>;
  /** Every image of ours in any state, newest first. */
  listAmis(): Promise<AmiInfo[]>;
  /** Deregisters the image and deletes its snapshots; an image already gone is not an error. */
  deregisterAmi(imageId: string): Promise<DeregisterResult>;

  // VM import
  importSnapshot(input: ImportSnapshotInput): Promise<{ importTaskId: string }>;
  describeImportSnapshot(importTaskId: string): Promise<ImportTask>;
  registerImage(input: RegisterImageInput): Promise<{ imageId: string }>;
  tagResources(resourceIds: string[], tags: Tags): Promise<void>;
  waitForImageAvailable(imageId: string, options: { timeoutSeconds: number }): Promise<AmiInfo>;

  // S3
  uploadFile(
    bucket: string,
    key: string,
    path: string,
    options?: { onProgress?: (progress: UploadProgress) => void },
  ): Promise<UploadResult>;
  /** Writes the object to `path`; checks it against the `sha256` metadata when present. */
  downloadFile(bucket: string, key: string, path: string): Promise<DownloadResult>;
  putJson(bucket: string, key: string, value: unknown): Promise<void>;
  /**
   * Writes a small object in one PutObject: its SHA-256 goes along as S3's ChecksumSHA256
   * (S3 refuses a body that does not match) and is stored as the `sha256` metadata.
   */
  putBytes(bucket: string, key: string, body: Buffer, options?: { contentType?: string }): Promise<UploadResult>;
  /** A small object's bytes, null when there is no such key; checked against its `sha256` metadata. */
  getBytes(bucket: string, key: string): Promise<Buffer | null>;
  /** Server-side copy within the bucket, metadata kept (objects up to 5 GiB, CopyObject's limit). */
  copyObject(bucket: string, sourceKey: string, key: string): Promise<ObjectInfo>;
  /** Deletes these keys (missing ones are no error); returns how many were asked. */
  deleteKeys(bucket: string, keys: string[]): Promise<number>;
  /** The parsed object, null when there is no such key. */
  getJson(bucket: string, key: string): Promise<unknown>;
  listKeys(bucket: string, prefix: string): Promise<string[]>;
  /** Deletes every key under a non-empty prefix; returns how many. */
  deletePrefix(bucket: string, prefix: string): Promise<number>;
  /** Null when there is no such key. */
  headObject(bucket: string, key: string): Promise<ObjectInfo | null>;
  /** Creates the bucket unless this account already has it; returns whether it created it. */
  createBucketIfMissing(bucket: string, options: BucketOptions): Promise<boolean>;

  // SSM
  /** Runs an SSM Command document (ours: infra/host-document.ts) on the instances; returns the command id. */
  sendCommand(instanceIds: string[], command: CommandRequest, options: SendCommandOptions): Promise<string>;
  waitForInvocation(
    commandId: string,
    instanceId: string,
    options: { timeoutSeconds: number },
  ): Promise<InvocationResult>;
  /** SSM agent status per instance; `Unknown` when SSM does not know it. ⌈N/50⌉ calls. */
  pingStatus(instanceIds: string[]): Promise<Map<string, PingStatus>>;

  // Secrets Manager
  /** Values of the secrets that exist; a missing name is absent from the map. ⌈N/20⌉ calls. */
  getSecrets(names: string[]): Promise<Map<string, string>>;
  /** True when the secret exists and is not scheduled for deletion; never reads the value. */
  secretExists(name: string): Promise<boolean>;
  putSecret(name: string, value: string, options: { clientToken: string }): Promise<void>;
  /** Deletes at once, without a recovery window; a missing secret is not an error. */
  deleteSecret(name: string): Promise<void>;

  // IAM (global): what a resumed apply looks up before it creates a member's role and profile
  /** True when an IAM role of that name exists (GetRole). */
  roleExists(name: string): Promise<boolean>;
  /** True when an instance profile of that name exists (GetInstanceProfile). */
  instanceProfileExists(name: string): Promise<boolean>;
}
