// EC2 half of the AWS adapter: fleet instances, images and VM import. Loaded on first use by
// aws.ts, so a process that never touches EC2 never loads its SDK. Each method is one call (a
// paginator or waiter counts as one; a second call only on a failure path, to say why), and
// maps errors at this boundary.
import {
  CreateTagsCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandOutput,
  EC2Client,
  type Filter,
  type Image,
  ImportSnapshotCommand,
  type Instance,
  paginateDescribeImages,
  paginateDescribeInstances,
  RegisterImageCommand,
  type Tag,
  TerminateInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
} from '@aws-sdk/client-ec2';
import type { AwsContext } from './aws.js';
import { CloudError, importFailed, toCloudError, waitFailed, waitTimeout } from './errors.js';
import { diskFormat } from './shared.js';
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
  type RegisterImageInput,
  ROOT_DEVICE,
  type Tags,
  VM_IMPORT_ROLE,
} from './types.js';

/** DescribeInstances' largest page: a 500-host fleet is listed in one call. */
const INSTANCE_PAGE = 1000;
const LIVE_STATES = ['pending', 'running', 'shutting-down', 'stopping', 'stopped'];
const OURS: Filter[] = [{ Name: `tag:${AMI_TAG.key}`, Values: [AMI_TAG.value] }];

export function createEc2Service(context: AwsContext, client?: EC2Client): Ec2Service {
  return new Ec2Service(client ?? new EC2Client(context.clientConfig), context);
}

export class Ec2Service {
  constructor(
    private readonly client: EC2Client,
    private readonly context: AwsContext,
  ) {}

  async listFleetInstances(): Promise<FleetInstance[]> {
    const out: FleetInstance[] = [];
    const pages = paginateDescribeInstances(
      { client: this.client, pageSize: INSTANCE_PAGE },
      {
        Filters: [
          { Name: `tag:${FLEET_TAG.key}`, Values: [FLEET_TAG.value] },
          { Name: 'instance-state-name', Values: LIVE_STATES },
        ],
      },
    );
    try {
      for await (const page of pages) out.push(...instancesOf(page));
    } catch (err) {
      throw toCloudError(err, 'DescribeInstances', `tag:${FLEET_TAG.key}=${FLEET_TAG.value}`);
    }
    return out;
  }

  async describeInstance(instanceId: string): Promise<FleetInstance> {
    let page: DescribeInstancesCommandOutput;
    try {
      page = await this.client.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
    } catch (err) {
      throw toCloudError(err, 'DescribeInstances', instanceId);
    }
    const found = instancesOf(page)[0];
    if (found === undefined) {
      throw new CloudError({
        operation: 'DescribeInstances',
        resource: instanceId,
        code: 'InvalidInstanceID.NotFound',
      });
    }
    return found;
  }

  async terminateInstance(instanceId: string): Promise<{ instanceId: string; state: InstanceState }> {
    try {
      const out = await this.client.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
      const state = (out.TerminatingInstances?.[0]?.CurrentState?.Name ?? 'shutting-down') as InstanceState;
      return { instanceId, state };
    } catch (err) {
      throw toCloudError(err, 'TerminateInstances', instanceId);
    }
  }

  async waitForInstance(
    instanceId: string,
    state: 'running' | 'terminated',
    options: { timeoutSeconds: number },
  ): Promise<FleetInstance> {
    const waiter = state === 'running' ? waitUntilInstanceRunning : waitUntilInstanceTerminated;
    try {
      const result = await waiter(this.waiterConfig(options.timeoutSeconds), { InstanceIds: [instanceId] });
      const found = instancesOf(result.reason as DescribeInstancesCommandOutput)[0];
      if (found !== undefined) return found;
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw waitTimeout('DescribeInstances', instanceId, state, options.timeoutSeconds);
      }
      if (!waiterFailed(err)) throw toCloudError(err, 'DescribeInstances', instanceId);
      // The waiter gave up (a terminated instance never becomes running): say what it is now.
      const now = await this.describeInstance(instanceId);
      throw waitFailed('DescribeInstances', instanceId, now.state, state);
    }
    return this.describeInstance(instanceId);
  }

  async findLatestAmi(): Promise<AmiInfo | null> {
    const images = await this.describeOurImages([{ Name: 'state', Values: ['available'] }]);
    return images[0] ?? null;
  }

  async describeImage(imageId: string): Promise<AmiInfo> {
    let images: Image[];
    try {
      images = (await this.client.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images ?? [];
    } catch (err) {
      throw toCloudError(err, 'DescribeImages', imageId);
    }
    const image = images[0];
    if (image === undefined) {
      throw new CloudError({ operation: 'DescribeImages', resource: imageId, code: 'InvalidAMIID.NotFound' });
    }
    return amiOf(image);
  }

  listAmis(): Promise<AmiInfo[]> {
    return this.describeOurImages([]);
  }

  async deregisterAmi(imageId: string): Promise<DeregisterResult> {
    try {
      // DeleteAssociatedSnapshots deletes the snapshots in the same call, so a worker that
      // dies halfway leaves no orphaned snapshot behind (the original made three calls).
      const out = await this.client.send(
        new DeregisterImageCommand({ ImageId: imageId, DeleteAssociatedSnapshots: true }),
      );
      const snapshots = (out.DeleteSnapshotResults ?? []).map((r) => ({
        snapshotId: r.SnapshotId ?? '',
        result: r.ReturnCode ?? 'unknown',
      }));
      return { imageId, deregistered: true, snapshots };
    } catch (err) {
      const mapped = toCloudError(err, 'DeregisterImage', imageId);
      // Already gone, as the original's prune script treats it: a resumed prune goes on.
      if (mapped.code === 'InvalidAMIID.NotFound' || mapped.code === 'InvalidAMIID.Unavailable') {
        return { imageId, deregistered: false, snapshots: [] };
      }
      throw mapped;
    }
  }

  async importSnapshot(input: ImportSnapshotInput): Promise<{ importTaskId: string }> {
    const format = diskFormat(input.key);
    try {
      const out = await this.client.send(
        new ImportSnapshotCommand({
          Description: input.description,
          RoleName: VM_IMPORT_ROLE,
          ClientToken: input.clientToken,
          DiskContainer: {
            Description: input.description,
            Format: format,
            UserBucket: { S3Bucket: input.bucket, S3Key: input.key },
          },
        }),
      );
      if (out.ImportTaskId === undefined) throw new Error('no ImportTaskId in the answer');
      return { importTaskId: out.ImportTaskId };
    } catch (err) {
      throw toCloudError(err, 'ImportSnapshot', `s3://${input.bucket}/${input.key}`);
    }
  }

  async describeImportSnapshot(importTaskId: string): Promise<ImportTask> {
    let detail: { Status?: string; Progress?: string; StatusMessage?: string; SnapshotId?: string } | undefined;
    try {
      const out = await this.client.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [importTaskId] }));
      detail = out.ImportSnapshotTasks?.[0]?.SnapshotTaskDetail;
    } catch (err) {
      throw toCloudError(err, 'DescribeImportSnapshotTasks', importTaskId);
    }
    if (detail === undefined) {
      throw new CloudError({
        operation: 'DescribeImportSnapshotTasks',
        resource: importTaskId,
        code: 'InvalidConversionTaskId',
      });
    }
    return importTaskOf(importTaskId, detail.Status ?? '', detail.Progress, detail.StatusMessage, detail.SnapshotId);
  }

  async registerImage(input: RegisterImageInput): Promise<{ imageId: string }> {
    // RegisterImage has no ClientToken. The token goes on the image as a tag instead; a retry
    // hits InvalidAMIName.Duplicate and gets the image back if the tag says it made it.
    const tags: Tags = { ...input.tags, [CLIENT_TOKEN_TAG]: input.clientToken };
    try {
      const out = await this.client.send(
        new RegisterImageCommand({
          Name: input.name,
          Description: input.description,
          Architecture: input.architecture,
          BootMode: input.bootMode,
          RootDeviceName: ROOT_DEVICE,
          VirtualizationType: 'hvm',
          EnaSupport: true,
          BlockDeviceMappings: [
            {
              DeviceName: ROOT_DEVICE,
              Ebs: { SnapshotId: input.snapshotId, VolumeType: 'gp3', DeleteOnTermination: true },
            },
          ],
          TagSpecifications: [{ ResourceType: 'image', Tags: tagList(tags) }],
        }),
      );
      if (out.ImageId === undefined) throw new Error('no ImageId in the answer');
      return { imageId: out.ImageId };
    } catch (err) {
      const mapped = toCloudError(err, 'RegisterImage', input.name);
      if (mapped.code !== 'InvalidAMIName.Duplicate') throw mapped;
      const same = await this.describeOurImagesByName(input.name);
      if (same?.tags[CLIENT_TOKEN_TAG] === input.clientToken) return { imageId: same.imageId };
      throw mapped;
    }
  }

  async tagResources(resourceIds: string[], tags: Tags): Promise<void> {
    try {
      await this.client.send(new CreateTagsCommand({ Resources: resourceIds, Tags: tagList(tags) }));
    } catch (err) {
      throw toCloudError(err, 'CreateTags', resourceIds.join(','));
    }
  }

  async waitForImageAvailable(imageId: string, options: { timeoutSeconds: number }): Promise<AmiInfo> {
    try {
      const result = await waitUntilImageAvailable(this.waiterConfig(options.timeoutSeconds), { ImageIds: [imageId] });
      const image = (result.reason as { Images?: Image[] } | undefined)?.Images?.[0];
      if (image !== undefined) return amiOf(image);
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw waitTimeout('DescribeImages', imageId, 'available', options.timeoutSeconds);
      }
      if (!waiterFailed(err)) throw toCloudError(err, 'DescribeImages', imageId);
      const now = await this.describeImage(imageId);
      throw waitFailed('DescribeImages', imageId, now.state, 'available');
    }
    return this.describeImage(imageId);
  }

  private waiterConfig(timeoutSeconds: number) {
    // The SDK refuses a wait no longer than its first delay: shrink the delays to fit it.
    const minDelay = Math.min(this.context.waiterDelay.minDelay, timeoutSeconds / 2);
    const maxDelay = Math.max(minDelay, Math.min(this.context.waiterDelay.maxDelay, timeoutSeconds));
    return { client: this.client, maxWaitTime: timeoutSeconds, minDelay, maxDelay };
  }

  private async describeOurImages(extra: Filter[]): Promise<AmiInfo[]> {
    const out: AmiInfo[] = [];
    const pages = paginateDescribeImages(
      { client: this.client, pageSize: INSTANCE_PAGE },
      { Owners: ['self'], Filters: [...OURS, ...extra] },
    );
    try {
      for await (const page of pages) out.push(...(page.Images ?? []).map(amiOf));
    } catch (err) {
      throw toCloudError(err, 'DescribeImages', `tag:${AMI_TAG.key}=${AMI_TAG.value}`);
    }
    return out.sort((a, b) => (b.creationDate ?? '').localeCompare(a.creationDate ?? ''));
  }

  private async describeOurImagesByName(name: string): Promise<AmiInfo | undefined> {
    try {
      const out = await this.client.send(
        new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'name', Values: [name] }] }),
      );
      const image = out.Images?.[0];
      return image === undefined ? undefined : amiOf(image);
    } catch (err) {
      throw toCloudError(err, 'DescribeImages', name);
    }
  }
}

/**
 * The import task as the jobs see it. A task going `deleting`/`deleted` has failed and is thrown,
 * as the original script exits 1; any status but `completed` otherwise counts as still active.
 */
function importTaskOf(
  importTaskId: string,
  status: string,
  progress: string | undefined,
  statusMessage: string | undefined,
  snapshotId: string | undefined,
): ImportTask {
  if (status === 'deleting' || status === 'deleted') throw importFailed(importTaskId, status, statusMessage ?? '');
  const completed = status === 'completed';
  return {
    importTaskId,
    status: completed ? 'completed' : 'active',
    progress: completed ? 100 : Number(progress ?? 0) || 0,
    statusMessage: statusMessage ?? '',
    snapshotId: snapshotId ?? null,
  };
}

/** A waiter that met a failure state throws a plain Error carrying its result as JSON. */
function waiterFailed(err: unknown): boolean {
  return err instanceof Error && err.message.includes('"state":"FAILURE"');
}

function instancesOf(page: DescribeInstancesCommandOutput): FleetInstance[] {
  const out: FleetInstance[] = [];
  for (const reservation of page.Reservations ?? []) {
    for (const instance of reservation.Instances ?? []) out.push(instanceOf(instance));
  }
  return out;
}

function instanceOf(i: Instance): FleetInstance {
  const tags = tagMap(i.Tags);
  return {
    instanceId: i.InstanceId ?? '',
    name: tags.Name ?? null,
    state: (i.State?.Name ?? 'pending') as InstanceState,
    instanceType: i.InstanceType ?? '',
    imageId: i.ImageId ?? '',
    launchTime: i.LaunchTime?.toISOString() ?? null,
    privateIp: i.PrivateIpAddress ?? null,
    tags,
  };
}

function amiOf(image: Image): AmiInfo {
  const root = image.RootDeviceName ?? ROOT_DEVICE;
  const snapshotIds: string[] = [];
  let rootSnapshotId: string | null = null;
  for (const m of image.BlockDeviceMappings ?? []) {
    const id = m.Ebs?.SnapshotId;
    if (id === undefined) continue;
    snapshotIds.push(id);
    if (m.DeviceName === root) rootSnapshotId = id;
  }
  return {
    imageId: image.ImageId ?? '',
    name: image.Name ?? '',
    state: image.State ?? 'unknown',
    creationDate: image.CreationDate ?? null,
    architecture: image.Architecture ?? null,
    bootMode: image.BootMode ?? null,
    rootSnapshotId,
    snapshotIds,
    tags: tagMap(image.Tags),
  };
}

function tagMap(tags: Tag[] | undefined): Tags {
  const out: Tags = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
}

function tagList(tags: Tags): Tag[] {
  return Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
}
