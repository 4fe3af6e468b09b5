// The simulated cloud: the same Cloud interface as the AWS adapter, in memory, for the sandbox
// and tests. Every state is computed from the clock (an instance launched at t is `pending`
// until t + instanceBootMs, then `running`; an import is `active` with rising progress until
// t + importMs), so nothing runs in the background and a manual clock makes an hour-long
// import a single `advance()`. The only scheduled work is the host-online and host-offline
// events, which wait on the same clock.
//
// It answers like AWS where a job could tell the difference: the same error codes and one-line
// messages (CloudError), a ClientToken that returns the same import task, RegisterImage
// refusing a duplicate name unless the same client token made it, SendCommand refusing a host
// whose SSM agent is not online, an import failing when its S3 object does not exist. It also
// counts the API calls AWS would have received, per service and per operation, for scale
// tests and the bench (DescribeInstances pages of 1000, DescribeInstanceInformation of 50,
// BatchGetSecretValue of 20).
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { OperationError } from '../../lib/errors.js';
import { type Clock, realClock } from './clock.js';
import { CloudError, importFailed, waitFailed, waitTimeout } from './errors.js';
import { checkPrefix, chunks, diskFormat, idList, tail } from './shared.js';
import {
  AMI_TAG,
  type AmiInfo,
  type BucketOptions,
  CLIENT_TOKEN_TAG,
  type Cloud,
  type CommandStatus,
  type DeregisterResult,
  type DownloadResult,
  FLEET_TAG,
  type FleetInstance,
  type ImportSnapshotInput,
  type ImportTask,
  type InstanceState,
  type InvocationResult,
  type ObjectInfo,
  type PingStatus,
  type RegisterImageInput,
  type SendCommandOptions,
  type Tags,
  type UploadProgress,
  type UploadResult,
} from './types.js';

/** Simulated durations, in milliseconds of the sim's clock. */
export interface SimTimings {
  /** `pending` → `running`. */
  instanceBootMs: number;
  /** `running` → the SSM agent `Online` (the host has booted and bootstrapped). */
  ssmOnlineMs: number;
  /** `shutting-down` → `terminated`. */
  instanceShutdownMs: number;
  /** Import task `active` → `completed` (a failing one fails halfway). */
  importMs: number;
  /** Registered image `pending` → `available`. */
  imageAvailableMs: number;
  /** SSM invocation `InProgress` → done, unless the command handler says otherwise. */
  commandMs: number;
}

/** Roughly what AWS takes; run it on a scaled clock to watch it at a human pace. */
export const defaultSimTimings: SimTimings = {
  instanceBootMs: 30_000,
  ssmOnlineMs: 60_000,
  instanceShutdownMs: 30_000,
  importMs: 20 * 60_000,
  imageAvailableMs: 3 * 60_000,
  commandMs: 10_000,
};

/** Every transition at once: for measuring orchestration overhead alone. */
export const instantSimTimings: SimTimings = {
  instanceBootMs: 0,
  ssmOnlineMs: 0,
  instanceShutdownMs: 0,
  importMs: 0,
  imageAvailableMs: 0,
  commandMs: 0,
};

export interface SimAmiSeed {
  name: string;
  imageId?: string;
  /** ISO time; default: seeded images are hours old, the last one the newest. */
  creationDate?: string;
  architecture?: string;
  tags?: Tags;
}

export interface SimInstanceSeed {
  name: string;
  instanceType?: string;
  /** Default: the newest seeded image. */
  imageId?: string;
  tags?: Tags;
}

export interface SimLaunchInput {
  name: string;
  ami: string;
  instanceType: string;
  tags?: Tags;
  userData?: string;
}

/** A simulated host, as the online/offline events report it. */
export interface SimHost {
  instanceId: string;
  name: string;
  imageId: string;
  instanceType: string;
  tags: Tags;
  userData: string;
}

export interface SimCommandRun {
  commandId: string;
  host: SimHost;
  commands: string[];
  comment: string;
}

export interface SimCommandResult {
  exitCode: number;
  stdout?: string;
  stderr?: string;
  /** How long the command runs; default `timings.commandMs`. */
  durationMs?: number;
}

/** Decides what a command list does on a host (called once per host when it is sent). */
export type SimCommandHandler = (run: SimCommandRun) => SimCommandResult | Promise<SimCommandResult>;

export interface SimCloudOptions {
  /** Default: the real clock. A ManualClock for tests, a scaledClock for the sandbox. */
  clock?: Clock;
  timings?: Partial<SimTimings>;
  /** Secrets that exist, name → value. */
  secrets?: Record<string, string>;
  /** Available images of ours. */
  amis?: SimAmiSeed[];
  /** Instances running, with their agent online, from the start. */
  fleet?: SimInstanceSeed[];
  buckets?: string[];
  /** Every import task fails halfway with this status message. */
  failImportWith?: string;
  /** Default: every command succeeds with no output. */
  commandHandler?: SimCommandHandler;
}

export interface SimCalls {
  ec2: number;
  s3: number;
  ssm: number;
  secrets: number;
  /** Per AWS operation, e.g. `DescribeInstances`, `RunInstances`. */
  byOperation: Record<string, number>;
}

type Service = 'ec2' | 's3' | 'ssm' | 'secrets';

export interface SimCloud extends Cloud {
  readonly clock: Clock;
  /** API calls AWS would have received since creation or the last resetCalls(). */
  readonly calls: SimCalls;
  resetCalls(): void;
  /** What terraform does on AWS: a new instance, `pending` now. Returns its id. */
  launchInstance(input: SimLaunchInput): Promise<string>;
  /**
   * Called for every host online now and each one that comes online later (the sandbox writes
   * its heartbeat); returns an unsubscribe. Listeners must not throw.
   */
  onHostOnline(listener: (host: SimHost) => void): () => void;
  /** Called when an online host starts shutting down; returns an unsubscribe. */
  onHostOffline(listener: (host: SimHost) => void): () => void;
  setCommandHandler(handler: SimCommandHandler): void;
  /** Forces (or with null, stops forcing) an instance's SSM ping status: a host gone silent. */
  setPingStatus(instanceId: string, status: PingStatus | null): void;
  /** The next call of `operation` (e.g. `TerminateInstances`) fails with this AWS error code. */
  failNext(operation: string, code: string): void;
  /** Cancels the scheduled host events (a sim on the real clock otherwise keeps its timers). */
  close(): void;
}

export function createSimCloud(options: SimCloudOptions = {}): SimCloud {
  return new Sim(options);
}

interface SimInstance {
  instanceId: string;
  name: string;
  instanceType: string;
  imageId: string;
  tags: Tags;
  userData: string;
  privateIp: string;
  launchedAt: number;
  terminatedAt: number | null;
  /** Announced online to the listeners (and not yet offline). */
  announced: boolean;
  ping: PingStatus | null;
}

interface SimImage {
  imageId: string;
  name: string;
  description: string;
  createdAt: number;
  availableAt: number;
  architecture: string;
  bootMode: string;
  snapshotIds: string[];
  tags: Tags;
  deregistered: boolean;
}

interface SimImportTask {
  importTaskId: string;
  clientToken: string;
  startedAt: number;
  snapshotId: string;
  failWith: string | null;
}

interface SimInvocation {
  commandId: string;
  instanceId: string;
  doneAt: number;
  result: SimCommandResult;
}

interface SimObject {
  body: Buffer;
  metadata: Record<string, string>;
  lastModified: number;
}

const HOUR = 3600_000;
const CHUNK = 8 * 1024 * 1024;
/** The EC2 waiters' shortest delay. */
const WAIT_POLL_MS = 15_000;

class Sim implements SimCloud {
  readonly clock: Clock;
  calls: SimCalls = emptyCalls();
  private readonly timings: SimTimings;
  private readonly failImportWith: string | null;
  private commandHandler: SimCommandHandler;
  private readonly instances = new Map<string, SimInstance>();
  private readonly images = new Map<string, SimImage>();
  private readonly imports = new Map<string, SimImportTask>();
  private readonly seededSnapshots = new Set<string>();
  private readonly deletedSnapshots = new Set<string>();
  private readonly invocations = new Map<string, SimInvocation>();
  private readonly secrets = new Map<string, string>();
  private readonly buckets = new Map<string, Map<string, SimObject>>();
  private readonly failures = new Map<string, string[]>();
  private readonly onlineListeners = new Set<(host: SimHost) => void>();
  private readonly offlineListeners = new Set<(host: SimHost) => void>();
  private readonly events = new AbortController();
  private serial = 0;

  constructor(options: SimCloudOptions) {
    this.clock = options.clock ?? realClock;
    this.timings = { ...defaultSimTimings, ...options.timings };
    this.failImportWith = options.failImportWith ?? null;
    this.commandHandler = options.commandHandler ?? (() => ({ exitCode: 0 }));
    const now = this.clock.now();
    for (const [name, value] of Object.entries(options.secrets ?? {})) this.secrets.set(name, value);
    for (const bucket of options.buckets ?? []) this.buckets.set(bucket, new Map());
    const amis = options.amis ?? [];
    amis.forEach((seed, index) => {
      const createdAt = seed.creationDate ? Date.parse(seed.creationDate) : now - (amis.length - index) * HOUR;
      const snapshotId = this.newId('snap-');
      this.seededSnapshots.add(snapshotId);
      const imageId = seed.imageId ?? this.newId('ami-');
      this.images.set(imageId, {
        imageId,
        name: seed.name,
        description: '',
        createdAt,
        availableAt: createdAt,
        architecture: seed.architecture ?? 'x86_64',
        bootMode: 'legacy-bios',
        snapshotIds: [snapshotId],
        tags: { [AMI_TAG.key]: AMI_TAG.value, Name: seed.name, ...seed.tags },
        deregistered: false,
      });
    });
    const newest = [...this.images.values()].sort((a, b) => b.createdAt - a.createdAt)[0];
    for (const seed of options.fleet ?? []) {
      // Long booted: running and online from the first moment.
      const instance = this.addInstance(
        {
          name: seed.name,
          ami: seed.imageId ?? newest?.imageId ?? 'ami-00000000000000000',
          instanceType: seed.instanceType ?? 't3.large',
          tags: seed.tags,
        },
        now - HOUR,
      );
      instance.announced = true;
    }
  }

  // ── sim-only controls ────────────────────────────────────────────────────────────────

  resetCalls(): void {
    this.calls = emptyCalls();
  }

  async launchInstance(input: SimLaunchInput): Promise<string> {
    this.count('ec2', 'RunInstances', input.name);
    const image = this.images.get(input.ami);
    if (image === undefined || image.deregistered) {
      throw new CloudError({ operation: 'RunInstances', resource: input.ami, code: 'InvalidAMIID.NotFound' });
    }
    if (this.imageState(image) !== 'available') {
      throw new CloudError({
        operation: 'RunInstances',
        resource: input.ami,
        code: 'InvalidAMIID.Unavailable',
        kind: 'invalid',
      });
    }
    const instance = this.addInstance(input, this.clock.now());
    const onlineAt = instance.launchedAt + this.timings.instanceBootMs + this.timings.ssmOnlineMs;
    this.clock.sleep(onlineAt - this.clock.now(), this.events.signal).then(
      () => {
        if (instance.terminatedAt !== null) return;
        instance.announced = true;
        for (const listener of this.onlineListeners) listener(hostOf(instance));
      },
      () => {}, // close(): the event is cancelled
    );
    return instance.instanceId;
  }

  onHostOnline(listener: (host: SimHost) => void): () => void {
    this.onlineListeners.add(listener);
    for (const instance of this.instances.values()) if (instance.announced) listener(hostOf(instance));
    return () => this.onlineListeners.delete(listener);
  }

  onHostOffline(listener: (host: SimHost) => void): () => void {
    this.offlineListeners.add(listener);
    return () => this.offlineListeners.delete(listener);
  }

  setCommandHandler(handler: SimCommandHandler): void {
    this.commandHandler = handler;
  }

  setPingStatus(instanceId: string, status: PingStatus | null): void {
    this.instance(instanceId, 'DescribeInstanceInformation').ping = status;
  }

  failNext(operation: string, code: string): void {
    const queue = this.failures.get(operation) ?? [];
    queue.push(code);
    this.failures.set(operation, queue);
  }

  close(): void {
    this.events.abort();
  }

  // ── EC2 instances ────────────────────────────────────────────────────────────────────

  async listFleetInstances(): Promise<FleetInstance[]> {
    const live = [...this.instances.values()].filter(
      (i) => i.tags[FLEET_TAG.key] === FLEET_TAG.value && this.instanceState(i) !== 'terminated',
    );
    // One DescribeInstances per page of 1000, and one even for an empty fleet.
    const pages = Math.max(1, Math.ceil(live.length / 1000));
    for (let p = 0; p < pages; p++) this.count('ec2', 'DescribeInstances', `tag:${FLEET_TAG.key}=${FLEET_TAG.value}`);
    return live.map((i) => this.view(i));
  }

  async describeInstance(instanceId: string): Promise<FleetInstance> {
    this.count('ec2', 'DescribeInstances', instanceId);
    return this.view(this.instance(instanceId, 'DescribeInstances'));
  }

  async terminateInstance(instanceId: string): Promise<{ instanceId: string; state: InstanceState }> {
    this.count('ec2', 'TerminateInstances', instanceId);
    const instance = this.instance(instanceId, 'TerminateInstances');
    if (instance.terminatedAt === null) {
      instance.terminatedAt = this.clock.now();
      if (instance.announced) {
        instance.announced = false;
        for (const listener of this.offlineListeners) listener(hostOf(instance));
      }
    }
    return { instanceId, state: this.instanceState(instance) };
  }

  async waitForInstance(
    instanceId: string,
    state: 'running' | 'terminated',
    options: { timeoutSeconds: number },
  ): Promise<FleetInstance> {
    const deadline = this.clock.now() + options.timeoutSeconds * 1000;
    for (;;) {
      this.count('ec2', 'DescribeInstances', instanceId);
      const instance = this.instance(instanceId, 'DescribeInstances');
      const current = this.instanceState(instance);
      if (current === state) return this.view(instance);
      // As the SDK waiters: running fails once the instance is going away, terminated fails
      // while it is still pending.
      let reachAt: number;
      if (state === 'running') {
        if (instance.terminatedAt !== null) throw waitFailed('DescribeInstances', instanceId, current, state);
        reachAt = instance.launchedAt + this.timings.instanceBootMs;
      } else {
        if (current === 'pending') throw waitFailed('DescribeInstances', instanceId, current, state);
        // Not terminating yet: look again in a while, as the SDK waiter polls.
        reachAt =
          instance.terminatedAt === null
            ? this.clock.now() + WAIT_POLL_MS
            : instance.terminatedAt + this.timings.instanceShutdownMs;
      }
      await this.sleepUntil(Math.min(reachAt, deadline), deadline, () =>
        waitTimeout('DescribeInstances', instanceId, state, options.timeoutSeconds),
      );
    }
  }

  // ── images ───────────────────────────────────────────────────────────────────────────

  async findLatestAmi(): Promise<AmiInfo | null> {
    this.count('ec2', 'DescribeImages', `tag:${AMI_TAG.key}=${AMI_TAG.value}`);
    return this.ourImages().find((image) => image.state === 'available') ?? null;
  }

  async describeImage(imageId: string): Promise<AmiInfo> {
    this.count('ec2', 'DescribeImages', imageId);
    return this.amiOf(this.image(imageId, 'DescribeImages'));
  }

  async listAmis(): Promise<AmiInfo[]> {
    this.count('ec2', 'DescribeImages', `tag:${AMI_TAG.key}=${AMI_TAG.value}`);
    return this.ourImages();
  }

  async deregisterAmi(imageId: string): Promise<DeregisterResult> {
    this.count('ec2', 'DeregisterImage', imageId);
    const image = this.images.get(imageId);
    if (image === undefined || image.deregistered) return { imageId, deregistered: false, snapshots: [] };
    image.deregistered = true;
    const snapshots = image.snapshotIds.map((snapshotId) => {
      const shared = [...this.images.values()].some((i) => !i.deregistered && i.snapshotIds.includes(snapshotId));
      if (!shared) this.deletedSnapshots.add(snapshotId);
      return { snapshotId, result: shared ? 'skipped' : 'success' };
    });
    return { imageId, deregistered: true, snapshots };
  }

  // ── VM import ────────────────────────────────────────────────────────────────────────

  async importSnapshot(input: ImportSnapshotInput): Promise<{ importTaskId: string }> {
    diskFormat(input.key);
    this.count('ec2', 'ImportSnapshot', `s3://${input.bucket}/${input.key}`);
    for (const task of this.imports.values()) {
      if (task.clientToken === input.clientToken) return { importTaskId: task.importTaskId };
    }
    // AWS accepts the task and fails it once VM Import finds no object to read.
    const exists = this.buckets.get(input.bucket)?.has(input.key) === true;
    const failWith = exists
      ? this.failImportWith
      : `ClientError: Unable to access the S3 object s3://${input.bucket}/${input.key}`;
    const importTaskId = this.newId('import-snap-');
    this.imports.set(importTaskId, {
      importTaskId,
      clientToken: input.clientToken,
      startedAt: this.clock.now(),
      snapshotId: this.newId('snap-'),
      failWith,
    });
    return { importTaskId };
  }

  async describeImportSnapshot(importTaskId: string): Promise<ImportTask> {
    this.count('ec2', 'DescribeImportSnapshotTasks', importTaskId);
    const task = this.imports.get(importTaskId);
    if (task === undefined) {
      throw new CloudError({
        operation: 'DescribeImportSnapshotTasks',
        resource: importTaskId,
        code: 'InvalidConversionTaskId',
      });
    }
    const elapsed = this.clock.now() - task.startedAt;
    const importMs = this.timings.importMs;
    if (task.failWith !== null && elapsed >= importMs / 2) throw importFailed(importTaskId, 'deleted', task.failWith);
    if (elapsed >= importMs) {
      return { importTaskId, status: 'completed', progress: 100, statusMessage: '', snapshotId: task.snapshotId };
    }
    const progress = Math.floor((elapsed / importMs) * 100);
    return { importTaskId, status: 'active', progress, statusMessage: importStage(progress), snapshotId: null };
  }

  async registerImage(input: RegisterImageInput): Promise<{ imageId: string }> {
    this.count('ec2', 'RegisterImage', input.name);
    const same = [...this.images.values()].find((i) => !i.deregistered && i.name === input.name);
    if (same !== undefined) {
      if (same.tags[CLIENT_TOKEN_TAG] === input.clientToken) return { imageId: same.imageId };
      throw new CloudError({ operation: 'RegisterImage', resource: input.name, code: 'InvalidAMIName.Duplicate' });
    }
    if (!this.snapshotExists(input.snapshotId)) {
      throw new CloudError({ operation: 'RegisterImage', resource: input.name, code: 'InvalidSnapshot.NotFound' });
    }
    const now = this.clock.now();
    const imageId = this.newId('ami-');
    this.images.set(imageId, {
      imageId,
      name: input.name,
      description: input.description ?? '',
      createdAt: now,
      availableAt: now + this.timings.imageAvailableMs,
      architecture: input.architecture,
      bootMode: input.bootMode,
      snapshotIds: [input.snapshotId],
      tags: { ...input.tags, [CLIENT_TOKEN_TAG]: input.clientToken },
      deregistered: false,
    });
    return { imageId };
  }

  async tagResources(resourceIds: string[], tags: Tags): Promise<void> {
    this.count('ec2', 'CreateTags', resourceIds.join(','));
    for (const id of resourceIds) {
      const target = this.instances.get(id) ?? this.images.get(id);
      if (target !== undefined) {
        Object.assign(target.tags, tags);
      } else if (!this.snapshotExists(id) && !this.imports.has(id)) {
        throw new CloudError({ operation: 'CreateTags', resource: id, code: 'InvalidID' });
      }
    }
  }

  async waitForImageAvailable(imageId: string, options: { timeoutSeconds: number }): Promise<AmiInfo> {
    const deadline = this.clock.now() + options.timeoutSeconds * 1000;
    for (;;) {
      this.count('ec2', 'DescribeImages', imageId);
      const image = this.image(imageId, 'DescribeImages');
      if (this.imageState(image) === 'available') return this.amiOf(image);
      await this.sleepUntil(Math.min(image.availableAt, deadline), deadline, () =>
        waitTimeout('DescribeImages', imageId, 'available', options.timeoutSeconds),
      );
    }
  }

  // ── S3 ───────────────────────────────────────────────────────────────────────────────

  async uploadFile(
    bucket: string,
    key: string,
    path: string,
    options: { onProgress?: (progress: UploadProgress) => void } = {},
  ): Promise<UploadResult> {
    let body: Buffer;
    try {
      body = await readFile(path);
    } catch (err) {
      throw new OperationError(
        `PutObject: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`,
      );
    }
    this.count('s3', 'PutObject', `s3://${bucket}/${key}`);
    const objects = this.bucket(bucket, 'PutObject', key);
    const sha256 = createHash('sha256').update(body).digest('hex');
    for (let sent = Math.min(CHUNK, body.length); ; sent = Math.min(sent + CHUNK, body.length)) {
      options.onProgress?.({ loadedBytes: sent, totalBytes: body.length });
      if (sent >= body.length) break;
    }
    objects.set(key, { body, metadata: { sha256 }, lastModified: this.clock.now() });
    this.count('s3', 'HeadObject', `s3://${bucket}/${key}`);
    return { bucket, key, size: body.length, sha256 };
  }

  async downloadFile(bucket: string, key: string, path: string): Promise<DownloadResult> {
    this.count('s3', 'GetObject', `s3://${bucket}/${key}`);
    const object = this.object(bucket, key, 'GetObject');
    if (object === undefined) {
      throw new CloudError({ operation: 'GetObject', resource: `s3://${bucket}/${key}`, code: 'NoSuchKey' });
    }
    await writeFile(path, object.body);
    return { size: object.body.length, sha256: createHash('sha256').update(object.body).digest('hex') };
  }

  async putJson(bucket: string, key: string, value: unknown): Promise<void> {
    this.count('s3', 'PutObject', `s3://${bucket}/${key}`);
    const objects = this.bucket(bucket, 'PutObject', key);
    objects.set(key, { body: Buffer.from(JSON.stringify(value)), metadata: {}, lastModified: this.clock.now() });
  }

  async getJson(bucket: string, key: string): Promise<unknown> {
    this.count('s3', 'GetObject', `s3://${bucket}/${key}`);
    const object = this.object(bucket, key, 'GetObject');
    if (object === undefined) return null;
    try {
      return JSON.parse(object.body.toString('utf8'));
    } catch {
      throw new CloudError({
        operation: 'GetObject',
        resource: `s3://${bucket}/${key}`,
        code: 'InvalidJson',
        kind: 'invalid',
        detail: 'not valid JSON',
      });
    }
  }

  async putBytes(
    bucket: string,
    key: string,
    body: Buffer,
    options: { contentType?: string } = {},
  ): Promise<UploadResult> {
    this.count('s3', 'PutObject', `s3://${bucket}/${key}`);
    const objects = this.bucket(bucket, 'PutObject', key);
    const sha256 = createHash('sha256').update(body).digest('hex');
    const metadata: Record<string, string> = { sha256 };
    if (options.contentType !== undefined) metadata['content-type'] = options.contentType;
    objects.set(key, { body: Buffer.from(body), metadata, lastModified: this.clock.now() });
    return { bucket, key, size: body.length, sha256 };
  }

  async getBytes(bucket: string, key: string): Promise<Buffer | null> {
    this.count('s3', 'GetObject', `s3://${bucket}/${key}`);
    const object = this.object(bucket, key, 'GetObject');
    if (object === undefined) return null;
    const sha256 = createHash('sha256').update(object.body).digest('hex');
    const expected = object.metadata.sha256;
    if (expected !== undefined && expected !== sha256) {
      throw new CloudError({
        operation: 'GetObject',
        resource: `s3://${bucket}/${key}`,
        code: 'ChecksumMismatch',
        kind: 'failed',
        detail: `downloaded sha256 ${sha256} differs from the stored ${expected}`,
      });
    }
    return Buffer.from(object.body);
  }

  async copyObject(bucket: string, sourceKey: string, key: string): Promise<ObjectInfo> {
    this.count('s3', 'CopyObject', `s3://${bucket}/${sourceKey}`);
    const source = this.object(bucket, sourceKey, 'CopyObject');
    if (source === undefined) {
      throw new CloudError({ operation: 'CopyObject', resource: `s3://${bucket}/${sourceKey}`, code: 'NoSuchKey' });
    }
    this.bucket(bucket, 'CopyObject', key).set(key, {
      body: source.body,
      metadata: { ...source.metadata },
      lastModified: this.clock.now(),
    });
    return (await this.headObject(bucket, key)) as ObjectInfo;
  }

  async deleteKeys(bucket: string, keys: string[]): Promise<number> {
    const objects = this.bucket(bucket, 'DeleteObjects', keys[0] ?? '');
    for (const batch of chunks(keys, 1000)) {
      this.count('s3', 'DeleteObjects', `s3://${bucket}/${batch[0]}`);
      for (const key of batch) objects.delete(key);
    }
    return keys.length;
  }

  async listKeys(bucket: string, prefix: string): Promise<string[]> {
    const keys = [...this.bucket(bucket, 'ListObjectsV2', prefix).keys()].filter((k) => k.startsWith(prefix)).sort();
    const pages = Math.max(1, Math.ceil(keys.length / 1000));
    for (let p = 0; p < pages; p++) this.count('s3', 'ListObjectsV2', `s3://${bucket}/${prefix}`);
    return keys;
  }

  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    checkPrefix(prefix);
    const keys = await this.listKeys(bucket, prefix);
    const objects = this.bucket(bucket, 'DeleteObjects', prefix);
    for (const batch of chunks(keys, 1000)) {
      this.count('s3', 'DeleteObjects', `s3://${bucket}/${prefix}`);
      for (const key of batch) objects.delete(key);
    }
    return keys.length;
  }

  async headObject(bucket: string, key: string): Promise<ObjectInfo | null> {
    this.count('s3', 'HeadObject', `s3://${bucket}/${key}`);
    const object = this.object(bucket, key, 'HeadObject');
    if (object === undefined) return null;
    return {
      size: object.body.length,
      etag: `"${createHash('md5').update(object.body).digest('hex')}"`,
      sha256: object.metadata.sha256 ?? null,
      lastModified: new Date(object.lastModified).toISOString(),
      metadata: { ...object.metadata },
    };
  }

  async createBucketIfMissing(bucket: string, options: BucketOptions): Promise<boolean> {
    this.count('s3', 'HeadBucket', bucket);
    if (this.buckets.has(bucket)) return false;
    this.count('s3', 'CreateBucket', bucket);
    if (options.encrypted) this.count('s3', 'PutBucketEncryption', bucket);
    if (options.versioned) this.count('s3', 'PutBucketVersioning', bucket);
    this.buckets.set(bucket, new Map());
    return true;
  }

  // ── SSM ──────────────────────────────────────────────────────────────────────────────

  async sendCommand(instanceIds: string[], commands: string[], options: SendCommandOptions): Promise<string> {
    this.count('ssm', 'SendCommand', idList(instanceIds));
    const targets = instanceIds.map((id) => {
      const instance = this.instances.get(id);
      if (instance === undefined || this.pingOf(instance) !== 'Online') {
        throw new CloudError({
          operation: 'SendCommand',
          resource: id,
          code: 'InvalidInstanceId',
          detail: 'instance not managed by SSM or not online',
        });
      }
      return instance;
    });
    const commandId = this.newCommandId();
    for (const instance of targets) {
      const result = await this.commandHandler({
        commandId,
        host: hostOf(instance),
        commands: [...commands],
        comment: options.comment.slice(0, 100),
      });
      const doneAt = this.clock.now() + (result.durationMs ?? this.timings.commandMs);
      this.invocations.set(`${commandId}/${instance.instanceId}`, {
        commandId,
        instanceId: instance.instanceId,
        doneAt,
        result,
      });
    }
    return commandId;
  }

  async waitForInvocation(
    commandId: string,
    instanceId: string,
    options: { timeoutSeconds: number },
  ): Promise<InvocationResult> {
    const resource = `${commandId} on ${instanceId}`;
    const deadline = this.clock.now() + options.timeoutSeconds * 1000;
    for (;;) {
      this.count('ssm', 'GetCommandInvocation', resource);
      const invocation = this.invocations.get(`${commandId}/${instanceId}`);
      if (invocation === undefined) {
        throw new CloudError({ operation: 'GetCommandInvocation', resource, code: 'InvocationDoesNotExist' });
      }
      if (this.clock.now() >= invocation.doneAt) {
        const { exitCode, stdout, stderr } = invocation.result;
        const status: CommandStatus = exitCode === 0 ? 'Success' : 'Failed';
        return {
          commandId,
          instanceId,
          status,
          exitCode,
          stdoutTail: tail(stdout ?? ''),
          stderrTail: tail(stderr ?? ''),
        };
      }
      await this.sleepUntil(Math.min(invocation.doneAt, deadline), deadline, () =>
        waitTimeout('GetCommandInvocation', resource, 'finished', options.timeoutSeconds),
      );
    }
  }

  async pingStatus(instanceIds: string[]): Promise<Map<string, PingStatus>> {
    const status = new Map<string, PingStatus>();
    for (const batch of chunks(instanceIds, 50)) {
      this.count('ssm', 'DescribeInstanceInformation', idList(batch));
      for (const id of batch) {
        const instance = this.instances.get(id);
        status.set(id, instance === undefined ? 'Unknown' : this.pingOf(instance));
      }
    }
    return status;
  }

  // ── Secrets Manager ──────────────────────────────────────────────────────────────────

  async getSecrets(names: string[]): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    for (const batch of chunks([...new Set(names)], 20)) {
      this.count('secrets', 'BatchGetSecretValue', `${batch.length} secrets`);
      for (const name of batch) {
        const value = this.secrets.get(name);
        if (value !== undefined) values.set(name, value);
      }
    }
    return values;
  }

  async secretExists(name: string): Promise<boolean> {
    this.count('secrets', 'DescribeSecret', name);
    return this.secrets.has(name);
  }

  async putSecret(name: string, value: string): Promise<void> {
    this.count('secrets', 'CreateSecret', name);
    if (this.secrets.has(name)) this.count('secrets', 'PutSecretValue', name);
    this.secrets.set(name, value);
  }

  async deleteSecret(name: string): Promise<void> {
    this.count('secrets', 'DeleteSecret', name);
    this.secrets.delete(name);
  }

  // ── internals ────────────────────────────────────────────────────────────────────────

  /** Counts one API call, or fails it when failNext() asked for that. */
  private count(service: Service, operation: string, resource: string): void {
    this.calls[service]++;
    this.calls.byOperation[operation] = (this.calls.byOperation[operation] ?? 0) + 1;
    const code = this.failures.get(operation)?.shift();
    if (code !== undefined) throw new CloudError({ operation, resource, code });
  }

  /** Sleeps until `at`; throws the timeout error when there is no time left before `deadline`. */
  private async sleepUntil(at: number, deadline: number, timeout: () => CloudError): Promise<void> {
    const now = this.clock.now();
    if (now >= deadline) throw timeout();
    await this.clock.sleep(Math.max(0, at - now));
  }

  private addInstance(input: SimLaunchInput, launchedAt: number): SimInstance {
    const n = this.instances.size + 1;
    const instance: SimInstance = {
      instanceId: this.newId('i-'),
      name: input.name,
      instanceType: input.instanceType,
      imageId: input.ami,
      tags: { [FLEET_TAG.key]: FLEET_TAG.value, Name: input.name, ...input.tags },
      userData: input.userData ?? '',
      privateIp: `10.0.${Math.floor(n / 250)}.${(n % 250) + 4}`,
      launchedAt,
      terminatedAt: null,
      announced: false,
      ping: null,
    };
    this.instances.set(instance.instanceId, instance);
    return instance;
  }

  private instance(instanceId: string, operation: string): SimInstance {
    const instance = this.instances.get(instanceId);
    if (instance === undefined) {
      throw new CloudError({ operation, resource: instanceId, code: 'InvalidInstanceID.NotFound' });
    }
    return instance;
  }

  private instanceState(i: SimInstance): InstanceState {
    const now = this.clock.now();
    if (i.terminatedAt !== null) {
      return now < i.terminatedAt + this.timings.instanceShutdownMs ? 'shutting-down' : 'terminated';
    }
    return now < i.launchedAt + this.timings.instanceBootMs ? 'pending' : 'running';
  }

  private pingOf(i: SimInstance): PingStatus {
    if (i.ping !== null) return i.ping;
    if (i.terminatedAt !== null) return 'ConnectionLost';
    const onlineAt = i.launchedAt + this.timings.instanceBootMs + this.timings.ssmOnlineMs;
    // Not yet registered with SSM: DescribeInstanceInformation does not list it.
    return this.clock.now() >= onlineAt ? 'Online' : 'Unknown';
  }

  private view(i: SimInstance): FleetInstance {
    return {
      instanceId: i.instanceId,
      name: i.name,
      state: this.instanceState(i),
      instanceType: i.instanceType,
      imageId: i.imageId,
      launchTime: new Date(i.launchedAt).toISOString(),
      privateIp: i.privateIp,
      tags: { ...i.tags },
    };
  }

  private image(imageId: string, operation: string): SimImage {
    const image = this.images.get(imageId);
    if (image === undefined || image.deregistered) {
      throw new CloudError({ operation, resource: imageId, code: 'InvalidAMIID.NotFound' });
    }
    return image;
  }

  private imageState(image: SimImage): string {
    return this.clock.now() >= image.availableAt ? 'available' : 'pending';
  }

  private ourImages(): AmiInfo[] {
    return [...this.images.values()]
      .filter((i) => !i.deregistered && i.tags[AMI_TAG.key] === AMI_TAG.value)
      .sort((a, b) => b.createdAt - a.createdAt)
      .map((i) => this.amiOf(i));
  }

  private amiOf(image: SimImage): AmiInfo {
    return {
      imageId: image.imageId,
      name: image.name,
      state: this.imageState(image),
      creationDate: new Date(image.createdAt).toISOString(),
      architecture: image.architecture,
      bootMode: image.bootMode,
      rootSnapshotId: image.snapshotIds[0] ?? null,
      snapshotIds: [...image.snapshotIds],
      tags: { ...image.tags },
    };
  }

  private snapshotExists(snapshotId: string): boolean {
    if (this.deletedSnapshots.has(snapshotId)) return false;
    if (this.seededSnapshots.has(snapshotId)) return true;
    const now = this.clock.now();
    for (const task of this.imports.values()) {
      if (task.snapshotId === snapshotId) {
        return task.failWith === null && now - task.startedAt >= this.timings.importMs;
      }
    }
    return false;
  }

  private bucket(bucket: string, operation: string, key: string): Map<string, SimObject> {
    const objects = this.buckets.get(bucket);
    if (objects === undefined) {
      throw new CloudError({ operation, resource: `s3://${bucket}/${key}`, code: 'NoSuchBucket' });
    }
    return objects;
  }

  private object(bucket: string, key: string, operation: string): SimObject | undefined {
    return this.bucket(bucket, operation, key).get(key);
  }

  /** AWS-shaped ids (prefix + 17 hex digits), deterministic so tests can name them. */
  private newId(prefix: string): string {
    this.serial++;
    return `${prefix}${this.serial.toString(16).padStart(17, '0')}`;
  }

  private newCommandId(): string {
    this.serial++;
    return `00000000-0000-4000-8000-${this.serial.toString(16).padStart(12, '0')}`;
  }
}

function emptyCalls(): SimCalls {
  return { ec2: 0, s3: 0, ssm: 0, secrets: 0, byOperation: {} };
}

function hostOf(i: SimInstance): SimHost {
  return {
    instanceId: i.instanceId,
    name: i.name,
    imageId: i.imageId,
    instanceType: i.instanceType,
    tags: { ...i.tags },
    userData: i.userData,
  };
}

/** What the status message of a real import says along the way. */
function importStage(progress: number): string {
  if (progress < 20) return 'pending';
  if (progress < 60) return 'converting';
  return 'validating';
}
