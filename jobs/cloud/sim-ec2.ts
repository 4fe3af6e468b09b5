// The simulated EC2: instances, our images, VM import tasks and snapshots, as aws-ec2.ts
// sees them. Every state is computed from the clock (an instance launched at t is `pending`
// until t + instanceBootMs, then `running`; an import is `active` with rising progress until
// t + importMs); the only scheduled work is the host-online and host-offline events.
//
// It answers like AWS where a job could tell the difference: a ClientToken returns the same
// import task, RegisterImage refuses a duplicate name unless the same client token made it,
// an import fails when its S3 object does not exist, the SDK waiters fail as theirs do.
import { CloudError, importFailed, waitFailed, waitTimeout } from './errors.js';
import { diskFormat } from './shared.js';
import type { AuthRequest } from './sim-calls.js';
import { requestTagContext, resourceTagContext } from './sim-calls.js';
import { anyResource, type SimCore } from './sim-core.js';
import type { SimS3 } from './sim-s3.js';
import {
  AMI_TAG,
  type AmiInfo,
  CLIENT_TOKEN_TAG,
  type DeregisterResult,
  FLEET_TAG,
  type FleetInstance,
  type ImportSnapshotInput,
  type ImportTask,
  type InstanceState,
  type PingStatus,
  type RegisterImageInput,
  type Tags,
  VM_IMPORT_ROLE,
} from './types.js';

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

export interface SimInstance {
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
  /** A forced SSM ping status (a host gone silent), null when derived from the clock. */
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

const HOUR = 3600_000;
/** The EC2 waiters' shortest delay. */
const WAIT_POLL_MS = 15_000;

export class SimEc2 {
  readonly instances = new Map<string, SimInstance>();
  private readonly images = new Map<string, SimImage>();
  private readonly imports = new Map<string, SimImportTask>();
  private readonly seededSnapshots = new Set<string>();
  private readonly deletedSnapshots = new Set<string>();
  private readonly snapshotTags = new Map<string, Tags>();
  private readonly onlineListeners = new Set<(host: SimHost) => void>();
  private readonly offlineListeners = new Set<(host: SimHost) => void>();
  private readonly events = new AbortController();

  constructor(
    private readonly core: SimCore,
    private readonly s3: SimS3,
    private readonly failImportWith: string | null,
    seed: { amis?: SimAmiSeed[]; fleet?: SimInstanceSeed[] },
  ) {
    // Beside `import` (the API calls fail), a task AWS accepts and then fails, as a bad image does.
    core.faults.define('import-task', 'the next VM import task fails halfway (deleted, with AWS’s status message)');
    const now = core.clock.now();
    const amis = seed.amis ?? [];
    amis.forEach((ami, index) => {
      const createdAt = ami.creationDate ? Date.parse(ami.creationDate) : now - (amis.length - index) * HOUR;
      const snapshotId = core.newId('snap-');
      this.seededSnapshots.add(snapshotId);
      // As this project's pipeline leaves them: the snapshot tagged like its image.
      this.snapshotTags.set(snapshotId, { [AMI_TAG.key]: AMI_TAG.value, Name: ami.name, ...ami.tags });
      const imageId = ami.imageId ?? core.newId('ami-');
      this.images.set(imageId, {
        imageId,
        name: ami.name,
        description: '',
        createdAt,
        availableAt: createdAt,
        architecture: ami.architecture ?? 'x86_64',
        bootMode: 'legacy-bios',
        snapshotIds: [snapshotId],
        tags: { [AMI_TAG.key]: AMI_TAG.value, Name: ami.name, ...ami.tags },
        deregistered: false,
      });
    });
    const newest = [...this.images.values()].sort((a, b) => b.createdAt - a.createdAt)[0];
    for (const host of seed.fleet ?? []) {
      // Long booted: running and online from the first moment.
      const instance = this.addInstance(
        {
          name: host.name,
          ami: host.imageId ?? newest?.imageId ?? 'ami-00000000000000000',
          instanceType: host.instanceType ?? 't3.large',
          tags: host.tags,
        },
        now - HOUR,
      );
      instance.announced = true;
    }
  }

  // ── what terraform and the hosts do ─────────────────────────────────────────────────

  /** What terraform does on AWS: a new instance, `pending` now. Returns its id. */
  async launchInstance(principal: string, input: SimLaunchInput): Promise<string> {
    const tags = { [FLEET_TAG.key]: FLEET_TAG.value, Name: input.name, ...input.tags };
    const instanceId = this.core.newId('i-');
    await this.core.call(principal, 'ec2', 'RunInstances', input.name, [
      { action: 'ec2:RunInstances', resource: this.core.arns.instance(instanceId), context: requestTagContext(tags) },
      { action: 'ec2:RunInstances', resource: this.core.arns.image(input.ami), context: {} },
      { action: 'ec2:CreateTags', resource: this.core.arns.instance(instanceId), context: createTagContext(tags) },
    ]);
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
    const instance = this.addInstance(input, this.core.clock.now(), instanceId);
    const { timings, clock } = this.core;
    const onlineAt = instance.launchedAt + timings.instanceBootMs + timings.ssmOnlineMs;
    clock.sleep(onlineAt - clock.now(), this.events.signal).then(
      () => {
        if (instance.terminatedAt !== null) return;
        instance.announced = true;
        for (const listener of this.onlineListeners) listener(hostOf(instance));
      },
      () => {}, // close(): the event is cancelled
    );
    return instance.instanceId;
  }

  /** An image's tags (its `clawdinator:revision`: what a host launched from it runs first). */
  imageTags(imageId: string): Tags | undefined {
    return this.images.get(imageId)?.tags;
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

  close(): void {
    this.events.abort();
  }

  // ── instances ───────────────────────────────────────────────────────────────────────

  async listFleetInstances(principal: string): Promise<FleetInstance[]> {
    const live = [...this.instances.values()].filter(
      (i) => i.tags[FLEET_TAG.key] === FLEET_TAG.value && this.instanceState(i) !== 'terminated',
    );
    // One DescribeInstances per page of 1000, and one even for an empty fleet.
    const pages = Math.max(1, Math.ceil(live.length / 1000));
    for (let p = 0; p < pages; p++) {
      await this.describe(principal, 'DescribeInstances', `tag:${FLEET_TAG.key}=${FLEET_TAG.value}`);
    }
    return live.map((i) => this.view(i));
  }

  async describeInstance(principal: string, instanceId: string): Promise<FleetInstance> {
    await this.describe(principal, 'DescribeInstances', instanceId);
    return this.view(this.instance(instanceId, 'DescribeInstances'));
  }

  async terminateInstance(
    principal: string,
    instanceId: string,
  ): Promise<{ instanceId: string; state: InstanceState }> {
    const known = this.instances.get(instanceId);
    await this.core.call(principal, 'ec2', 'TerminateInstances', instanceId, [
      {
        action: 'ec2:TerminateInstances',
        resource: this.core.arns.instance(instanceId),
        context: resourceTagContext(known?.tags ?? {}, true),
      },
    ]);
    const instance = this.instance(instanceId, 'TerminateInstances');
    if (instance.terminatedAt === null) {
      instance.terminatedAt = this.core.clock.now();
      if (instance.announced) {
        instance.announced = false;
        for (const listener of this.offlineListeners) listener(hostOf(instance));
      }
    }
    return { instanceId, state: this.instanceState(instance) };
  }

  async waitForInstance(
    principal: string,
    instanceId: string,
    state: 'running' | 'terminated',
    options: { timeoutSeconds: number },
  ): Promise<FleetInstance> {
    const { clock, timings } = this.core;
    const deadline = clock.now() + options.timeoutSeconds * 1000;
    for (;;) {
      await this.describe(principal, 'DescribeInstances', instanceId);
      const instance = this.instance(instanceId, 'DescribeInstances');
      const current = this.instanceState(instance);
      if (current === state) return this.view(instance);
      // As the SDK waiters: running fails once the instance is going away, terminated fails
      // while it is still pending.
      let reachAt: number;
      if (state === 'running') {
        if (instance.terminatedAt !== null) throw waitFailed('DescribeInstances', instanceId, current, state);
        reachAt = instance.launchedAt + timings.instanceBootMs;
      } else {
        if (current === 'pending') throw waitFailed('DescribeInstances', instanceId, current, state);
        // Not terminating yet: look again in a while, as the SDK waiter polls.
        reachAt =
          instance.terminatedAt === null
            ? clock.now() + WAIT_POLL_MS
            : instance.terminatedAt + timings.instanceShutdownMs;
      }
      await this.core.sleepUntil(Math.min(reachAt, deadline), deadline, () =>
        waitTimeout('DescribeInstances', instanceId, state, options.timeoutSeconds),
      );
    }
  }

  // ── images ──────────────────────────────────────────────────────────────────────────

  async findLatestAmi(principal: string): Promise<AmiInfo | null> {
    await this.describe(principal, 'DescribeImages', `tag:${AMI_TAG.key}=${AMI_TAG.value}`);
    return this.ourImages().find((image) => image.state === 'available') ?? null;
  }

  async describeImage(principal: string, imageId: string): Promise<AmiInfo> {
    await this.describe(principal, 'DescribeImages', imageId);
    return this.amiOf(this.image(imageId, 'DescribeImages'));
  }

  async listAmis(principal: string): Promise<AmiInfo[]> {
    await this.describe(principal, 'DescribeImages', `tag:${AMI_TAG.key}=${AMI_TAG.value}`);
    return this.ourImages();
  }

  async deregisterAmi(principal: string, imageId: string): Promise<DeregisterResult> {
    const image = this.images.get(imageId);
    const { arns } = this.core;
    const record = await this.core.call(principal, 'ec2', 'DeregisterImage', imageId, [
      {
        action: 'ec2:DeregisterImage',
        resource: arns.image(imageId),
        context: resourceTagContext(image?.tags ?? {}, true),
      },
    ]);
    if (image === undefined || image.deregistered) return { imageId, deregistered: false, snapshots: [] };
    image.deregistered = true;
    // DeleteAssociatedSnapshots, as AWS answers it: the image goes whatever happens to its
    // snapshots; each snapshot is deleted only if the caller may (IAM checks DeleteSnapshot on
    // it), and the answer says per snapshot what happened (`missing-permissions`, …).
    const snapshots: DeregisterResult['snapshots'] = [];
    for (const snapshotId of image.snapshotIds) {
      const shared = [...this.images.values()].some((i) => !i.deregistered && i.snapshotIds.includes(snapshotId));
      if (shared) {
        snapshots.push({ snapshotId, result: 'skipped' });
        continue;
      }
      const allowed = await this.core.authorizeWithin(record, {
        action: 'ec2:DeleteSnapshot',
        resource: arns.snapshot(snapshotId),
        context: resourceTagContext(this.snapshotTags.get(snapshotId) ?? {}, true),
      });
      if (allowed) this.deletedSnapshots.add(snapshotId);
      snapshots.push({ snapshotId, result: allowed ? 'success' : 'missing-permissions' });
    }
    return { imageId, deregistered: true, snapshots };
  }

  // ── VM import ───────────────────────────────────────────────────────────────────────

  async importSnapshot(principal: string, input: ImportSnapshotInput): Promise<{ importTaskId: string }> {
    diskFormat(input.key);
    const { arns } = this.core;
    await this.core.call(principal, 'ec2', 'ImportSnapshot', `s3://${input.bucket}/${input.key}`, [
      { action: 'ec2:ImportSnapshot', resource: arns.importSnapshotTask('*'), context: {} },
      { action: 'ec2:ImportSnapshot', resource: arns.snapshot('*'), context: {} },
      // VM Import acts as the vmimport role, which the caller passes to it.
      {
        action: 'iam:PassRole',
        resource: arns.role(VM_IMPORT_ROLE),
        context: { 'iam:PassedToService': 'vmie.amazonaws.com' },
      },
    ]);
    for (const task of this.imports.values()) {
      if (task.clientToken === input.clientToken) return { importTaskId: task.importTaskId };
    }
    // AWS accepts the task and fails it once VM Import finds no object to read.
    const failTask = this.core.faults.take('import-task');
    const failWith = !this.s3.has(input.bucket, input.key)
      ? `ClientError: Unable to access the S3 object s3://${input.bucket}/${input.key}`
      : failTask !== undefined
        ? (failTask.message ?? 'ClientError: Disk validation failed [Unsupported specified file format]')
        : this.failImportWith;
    const importTaskId = this.core.newId('import-snap-');
    this.imports.set(importTaskId, {
      importTaskId,
      clientToken: input.clientToken,
      startedAt: this.core.clock.now(),
      snapshotId: this.core.newId('snap-'),
      failWith,
    });
    return { importTaskId };
  }

  async describeImportSnapshot(principal: string, importTaskId: string): Promise<ImportTask> {
    await this.describe(principal, 'DescribeImportSnapshotTasks', importTaskId);
    const task = this.imports.get(importTaskId);
    if (task === undefined) {
      throw new CloudError({
        operation: 'DescribeImportSnapshotTasks',
        resource: importTaskId,
        code: 'InvalidConversionTaskId',
      });
    }
    const elapsed = this.core.clock.now() - task.startedAt;
    const importMs = this.core.timings.importMs;
    if (task.failWith !== null && elapsed >= importMs / 2) throw importFailed(importTaskId, 'deleted', task.failWith);
    if (elapsed >= importMs) {
      return { importTaskId, status: 'completed', progress: 100, statusMessage: '', snapshotId: task.snapshotId };
    }
    const progress = Math.floor((elapsed / importMs) * 100);
    return { importTaskId, status: 'active', progress, statusMessage: importStage(progress), snapshotId: null };
  }

  async registerImage(principal: string, input: RegisterImageInput): Promise<{ imageId: string }> {
    const { arns } = this.core;
    const tags = { ...input.tags, [CLIENT_TOKEN_TAG]: input.clientToken };
    await this.core.call(principal, 'ec2', 'RegisterImage', input.name, [
      { action: 'ec2:RegisterImage', resource: arns.image('*'), context: requestTagContext(tags) },
      {
        action: 'ec2:RegisterImage',
        resource: arns.snapshot(input.snapshotId),
        context: resourceTagContext(this.snapshotTags.get(input.snapshotId) ?? {}, true),
      },
      { action: 'ec2:CreateTags', resource: arns.image('*'), context: createTagContext(tags, 'RegisterImage') },
    ]);
    const same = [...this.images.values()].find((i) => !i.deregistered && i.name === input.name);
    if (same !== undefined) {
      if (same.tags[CLIENT_TOKEN_TAG] === input.clientToken) return { imageId: same.imageId };
      throw new CloudError({ operation: 'RegisterImage', resource: input.name, code: 'InvalidAMIName.Duplicate' });
    }
    if (!this.snapshotExists(input.snapshotId)) {
      throw new CloudError({ operation: 'RegisterImage', resource: input.name, code: 'InvalidSnapshot.NotFound' });
    }
    const now = this.core.clock.now();
    const imageId = this.core.newId('ami-');
    this.images.set(imageId, {
      imageId,
      name: input.name,
      description: input.description ?? '',
      createdAt: now,
      availableAt: now + this.core.timings.imageAvailableMs,
      architecture: input.architecture,
      bootMode: input.bootMode,
      snapshotIds: [input.snapshotId],
      tags,
      deregistered: false,
    });
    return { imageId };
  }

  async tagResources(principal: string, resourceIds: string[], tags: Tags): Promise<void> {
    await this.core.call(
      principal,
      'ec2',
      'CreateTags',
      resourceIds.join(','),
      resourceIds.map((id) => ({
        action: 'ec2:CreateTags',
        resource: this.arnOf(id),
        context: { ...requestTagContext(tags), ...resourceTagContext(this.tagsOf(id), true) },
      })),
    );
    for (const id of resourceIds) {
      const target = this.instances.get(id) ?? this.images.get(id);
      if (target !== undefined) {
        Object.assign(target.tags, tags);
      } else if (this.snapshotExists(id)) {
        this.snapshotTags.set(id, { ...this.snapshotTags.get(id), ...tags });
      } else if (!this.imports.has(id)) {
        throw new CloudError({ operation: 'CreateTags', resource: id, code: 'InvalidID' });
      }
    }
  }

  async waitForImageAvailable(
    principal: string,
    imageId: string,
    options: { timeoutSeconds: number },
  ): Promise<AmiInfo> {
    const deadline = this.core.clock.now() + options.timeoutSeconds * 1000;
    for (;;) {
      await this.describe(principal, 'DescribeImages', imageId);
      const image = this.image(imageId, 'DescribeImages');
      if (this.imageState(image) === 'available') return this.amiOf(image);
      await this.core.sleepUntil(Math.min(image.availableAt, deadline), deadline, () =>
        waitTimeout('DescribeImages', imageId, 'available', options.timeoutSeconds),
      );
    }
  }

  // ── what SSM and the sandbox read ───────────────────────────────────────────────────

  /** The instance, or the NotFound error `operation` answers with. */
  instance(instanceId: string, operation: string): SimInstance {
    const instance = this.instances.get(instanceId);
    if (instance === undefined) {
      throw new CloudError({ operation, resource: instanceId, code: 'InvalidInstanceID.NotFound' });
    }
    return instance;
  }

  instanceState(i: SimInstance): InstanceState {
    const { clock, timings } = this.core;
    const now = clock.now();
    if (i.terminatedAt !== null) {
      return now < i.terminatedAt + timings.instanceShutdownMs ? 'shutting-down' : 'terminated';
    }
    return now < i.launchedAt + timings.instanceBootMs ? 'pending' : 'running';
  }

  // ── internals ───────────────────────────────────────────────────────────────────────

  /** Describe* calls take no resource in IAM. */
  private async describe(principal: string, operation: string, resource: string): Promise<void> {
    await this.core.call(principal, 'ec2', operation, resource, [anyResource(`ec2:${operation}`)]);
  }

  private addInstance(input: SimLaunchInput, launchedAt: number, instanceId = this.core.newId('i-')): SimInstance {
    const n = this.instances.size + 1;
    const instance: SimInstance = {
      instanceId,
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
    return this.core.clock.now() >= image.availableAt ? 'available' : 'pending';
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
    const now = this.core.clock.now();
    for (const task of this.imports.values()) {
      if (task.snapshotId === snapshotId) {
        return task.failWith === null && now - task.startedAt >= this.core.timings.importMs;
      }
    }
    return false;
  }

  /** The ARN IAM sees for an EC2 id. */
  private arnOf(id: string): string {
    const { arns } = this.core;
    if (id.startsWith('i-')) return arns.instance(id);
    if (id.startsWith('ami-')) return arns.image(id);
    if (id.startsWith('snap-')) return arns.snapshot(id);
    if (id.startsWith('import-snap-')) return arns.importSnapshotTask(id);
    return `arn:aws:ec2:${arns.region}:${arns.account}:${id}`;
  }

  private tagsOf(id: string): Tags {
    return this.instances.get(id)?.tags ?? this.images.get(id)?.tags ?? this.snapshotTags.get(id) ?? {};
  }
}

/** Tags set as part of a create: IAM also sees the creating action (`ec2:CreateAction`). */
function createTagContext(tags: Tags, createAction = 'RunInstances'): AuthRequest['context'] {
  return { ...requestTagContext(tags), 'ec2:CreateAction': createAction };
}

export function hostOf(i: SimInstance): SimHost {
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
