// The EC2 half of the AWS adapter, with aws-sdk-client-mock at the client's `send`: the exact
// commands and inputs it sends, and how it reads the answers.
import {
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandInput,
  EC2Client,
  ImportSnapshotCommand,
  type Instance,
  RegisterImageCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { CloudError } from '../../../jobs/cloud/errors.js';
import { UsageError } from '../../../lib/errors.js';

const client = new EC2Client({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
const ec2 = mockClient(client);
const cloud = createAwsCloud({ clients: { ec2: client }, waiterDelaySeconds: { min: 0.001, max: 0.002 } });

function instance(n: number, state = 'running'): Instance {
  return {
    InstanceId: `i-${String(n).padStart(17, '0')}`,
    InstanceType: 't3.large',
    ImageId: 'ami-1',
    State: { Name: state as never },
    LaunchTime: new Date('2026-01-01T00:00:00Z'),
    PrivateIpAddress: '10.0.0.1',
    Tags: [
      { Key: 'app', Value: 'clawdinator' },
      { Key: 'Name', Value: `clawdinator-${n}` },
    ],
  };
}

beforeEach(() => ec2.reset());

describe('fleet instances', () => {
  it('lists by tag and live states, 1000 a page, following NextToken through every page', async () => {
    const seen: DescribeInstancesCommandInput[] = [];
    const pages = [
      { Reservations: [{ Instances: [instance(1), instance(2)] }], NextToken: 't1' },
      { Reservations: [{ Instances: [instance(3)] }], NextToken: 't2' },
      { Reservations: [{ Instances: [instance(4, 'pending')] }] },
    ];
    ec2.on(DescribeInstancesCommand).callsFake((input: DescribeInstancesCommandInput) => {
      // The paginator reuses one input object: copy it as it was at this call.
      seen.push(structuredClone(input));
      return pages[seen.length - 1];
    });

    const fleet = await cloud.listFleetInstances();

    expect(fleet.map((i) => i.name)).toEqual(['clawdinator-1', 'clawdinator-2', 'clawdinator-3', 'clawdinator-4']);
    expect(fleet[3]).toMatchObject({
      state: 'pending',
      instanceType: 't3.large',
      launchTime: '2026-01-01T00:00:00.000Z',
    });
    expect(seen.map((s) => s.NextToken)).toEqual([undefined, 't1', 't2']);
    for (const input of seen) {
      expect(input.MaxResults).toBe(1000);
      expect(input.Filters).toEqual([
        { Name: 'tag:app', Values: ['clawdinator'] },
        { Name: 'instance-state-name', Values: ['pending', 'running', 'shutting-down', 'stopping', 'stopped'] },
      ]);
    }
  });

  it('terminates one instance and waits with the SDK waiter until it is terminated', async () => {
    ec2.on(TerminateInstancesCommand).resolves({
      TerminatingInstances: [{ InstanceId: 'i-1', CurrentState: { Name: 'shutting-down' } }],
    });
    ec2
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [{ Instances: [instance(1, 'shutting-down')] }] })
      .resolves({ Reservations: [{ Instances: [instance(1, 'terminated')] }] });

    expect(await cloud.terminateInstance('i-1')).toEqual({ instanceId: 'i-1', state: 'shutting-down' });
    const done = await cloud.waitForInstance('i-1', 'terminated', { timeoutSeconds: 5 });

    expect(done.state).toBe('terminated');
    expect(ec2.commandCalls(TerminateInstancesCommand)[0]?.args[0].input).toEqual({ InstanceIds: ['i-1'] });
    expect(ec2.commandCalls(DescribeInstancesCommand)).toHaveLength(2);
  });

  it('says what the instance is when waiting for running can no longer succeed', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [instance(1, 'terminated')] }] });
    await expect(cloud.waitForInstance('i-1', 'running', { timeoutSeconds: 5 })).rejects.toThrow(
      'DescribeInstances i-1: is terminated, will not become running (WaiterFailure)',
    );
  });

  it('takes a wait shorter than the default first waiter delay', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [instance(1, 'running')] }] });
    const defaults = createAwsCloud({ clients: { ec2: client } });
    expect((await defaults.waitForInstance('i-1', 'running', { timeoutSeconds: 5 })).state).toBe('running');
  });

  it('gives up waiting after the timeout with one line', async () => {
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [instance(1, 'pending')] }] });
    const slow = createAwsCloud({ clients: { ec2: client }, waiterDelaySeconds: { min: 0.2, max: 0.2 } });
    await expect(slow.waitForInstance('i-1', 'running', { timeoutSeconds: 0.5 })).rejects.toThrow(
      'DescribeInstances i-1: not running after 0.5 s (WaiterTimeout)',
    );
  });
});

describe('images', () => {
  it('finds the newest available image of ours', async () => {
    ec2.on(DescribeImagesCommand).resolves({
      Images: [
        { ImageId: 'ami-old', Name: 'old', State: 'available', CreationDate: '2026-01-01T00:00:00.000Z' },
        { ImageId: 'ami-new', Name: 'new', State: 'available', CreationDate: '2026-02-01T00:00:00.000Z' },
      ],
    });

    expect((await cloud.findLatestAmi())?.imageId).toBe('ami-new');
    expect(ec2.commandCalls(DescribeImagesCommand)[0]?.args[0].input).toEqual({
      Owners: ['self'],
      Filters: [
        { Name: 'tag:clawdinator', Values: ['true'] },
        { Name: 'state', Values: ['available'] },
      ],
      MaxResults: 1000,
    });
  });

  it('reads an image with its root snapshot', async () => {
    ec2.on(DescribeImagesCommand).resolves({
      Images: [
        {
          ImageId: 'ami-1',
          Name: 'clawdinator-nixos-1',
          State: 'available',
          RootDeviceName: '/dev/xvda',
          BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { SnapshotId: 'snap-1' } }],
          Tags: [{ Key: 'clawdinator', Value: 'true' }],
        },
      ],
    });
    expect(await cloud.describeImage('ami-1')).toMatchObject({
      imageId: 'ami-1',
      rootSnapshotId: 'snap-1',
      snapshotIds: ['snap-1'],
      tags: { clawdinator: 'true' },
    });
  });

  it('deregisters an image with its snapshots, and an image already gone is no error', async () => {
    ec2
      .on(DeregisterImageCommand)
      .resolvesOnce({ Return: true, DeleteSnapshotResults: [{ SnapshotId: 'snap-1', ReturnCode: 'success' }] })
      .rejects({ name: 'InvalidAMIID.NotFound', message: "The image id '[ami-1]' does not exist" });

    expect(await cloud.deregisterAmi('ami-1')).toEqual({
      imageId: 'ami-1',
      deregistered: true,
      snapshots: [{ snapshotId: 'snap-1', result: 'success' }],
    });
    expect(await cloud.deregisterAmi('ami-1')).toEqual({ imageId: 'ami-1', deregistered: false, snapshots: [] });
    expect(ec2.commandCalls(DeregisterImageCommand)[0]?.args[0].input).toEqual({
      ImageId: 'ami-1',
      DeleteAssociatedSnapshots: true,
    });
  });
});

describe('VM import', () => {
  it('imports with the vmimport role, the format from the extension and the client token', async () => {
    ec2.on(ImportSnapshotCommand).resolves({ ImportTaskId: 'import-snap-1' });

    const out = await cloud.importSnapshot({
      bucket: 'images',
      key: 'clawdinator-images/nixos-1.img',
      description: 'clawdinator-nixos',
      clientToken: 'rebuild-ami-42',
    });

    expect(out).toEqual({ importTaskId: 'import-snap-1' });
    expect(ec2.commandCalls(ImportSnapshotCommand)[0]?.args[0].input).toEqual({
      Description: 'clawdinator-nixos',
      RoleName: 'vmimport',
      ClientToken: 'rebuild-ami-42',
      DiskContainer: {
        Description: 'clawdinator-nixos',
        Format: 'RAW',
        UserBucket: { S3Bucket: 'images', S3Key: 'clawdinator-images/nixos-1.img' },
      },
    });
  });

  it('takes VHD and VMDK, and refuses a key whose format it cannot tell before calling AWS', async () => {
    ec2.on(ImportSnapshotCommand).resolves({ ImportTaskId: 'import-snap-1' });
    await cloud.importSnapshot({ bucket: 'b', key: 'a.vhd', description: 'd', clientToken: 't1' });
    await cloud.importSnapshot({ bucket: 'b', key: 'a.VMDK', description: 'd', clientToken: 't2' });
    const formats = ec2.commandCalls(ImportSnapshotCommand).map((c) => c.args[0].input.DiskContainer?.Format);
    expect(formats).toEqual(['VHD', 'VMDK']);

    await expect(
      cloud.importSnapshot({ bucket: 'b', key: 'a.img.zst', description: 'd', clientToken: 't' }),
    ).rejects.toThrow(UsageError);
    expect(ec2.commandCalls(ImportSnapshotCommand)).toHaveLength(2);
  });

  it('reports progress, then the snapshot id', async () => {
    ec2
      .on(DescribeImportSnapshotTasksCommand)
      .resolvesOnce({
        ImportSnapshotTasks: [
          {
            ImportTaskId: 'import-snap-1',
            SnapshotTaskDetail: { Status: 'active', Progress: '42', StatusMessage: 'converting' },
          },
        ],
      })
      .resolves({
        ImportSnapshotTasks: [
          { ImportTaskId: 'import-snap-1', SnapshotTaskDetail: { Status: 'completed', SnapshotId: 'snap-9' } },
        ],
      });

    expect(await cloud.describeImportSnapshot('import-snap-1')).toEqual({
      importTaskId: 'import-snap-1',
      status: 'active',
      progress: 42,
      statusMessage: 'converting',
      snapshotId: null,
    });
    expect(await cloud.describeImportSnapshot('import-snap-1')).toMatchObject({
      status: 'completed',
      progress: 100,
      snapshotId: 'snap-9',
    });
    expect(ec2.commandCalls(DescribeImportSnapshotTasksCommand)[0]?.args[0].input).toEqual({
      ImportTaskIds: ['import-snap-1'],
    });
  });

  it('registers a legacy-BIOS hvm image on /dev/xvda with ENA and gp3, tagged at creation', async () => {
    ec2.on(RegisterImageCommand).resolves({ ImageId: 'ami-9' });

    const out = await cloud.registerImage({
      name: 'clawdinator-nixos-20260101',
      snapshotId: 'snap-9',
      architecture: 'x86_64',
      bootMode: 'legacy-bios',
      clientToken: 'rebuild-ami-42',
      tags: { clawdinator: 'true', 'clawdinator-revision': 'abc123' },
    });

    expect(out).toEqual({ imageId: 'ami-9' });
    expect(ec2.commandCalls(RegisterImageCommand)[0]?.args[0].input).toEqual({
      Name: 'clawdinator-nixos-20260101',
      Architecture: 'x86_64',
      BootMode: 'legacy-bios',
      RootDeviceName: '/dev/xvda',
      VirtualizationType: 'hvm',
      EnaSupport: true,
      BlockDeviceMappings: [
        { DeviceName: '/dev/xvda', Ebs: { SnapshotId: 'snap-9', VolumeType: 'gp3', DeleteOnTermination: true } },
      ],
      TagSpecifications: [
        {
          ResourceType: 'image',
          Tags: [
            { Key: 'clawdinator', Value: 'true' },
            { Key: 'clawdinator-revision', Value: 'abc123' },
            { Key: 'clawdinator-client-token', Value: 'rebuild-ami-42' },
          ],
        },
      ],
    });
  });

  it('gets back the image a first attempt registered (RegisterImage has no ClientToken)', async () => {
    ec2.on(RegisterImageCommand).rejects({ name: 'InvalidAMIName.Duplicate', message: 'AMI name is already in use' });
    ec2.on(DescribeImagesCommand).resolves({
      Images: [{ ImageId: 'ami-9', Name: 'n', Tags: [{ Key: 'clawdinator-client-token', Value: 'tok' }] }],
    });
    const input = { name: 'n', snapshotId: 's', architecture: 'x86_64', bootMode: 'uefi', clientToken: 'tok' } as const;

    expect(await cloud.registerImage(input)).toEqual({ imageId: 'ami-9' });
    expect(ec2.commandCalls(DescribeImagesCommand)[0]?.args[0].input).toEqual({
      Owners: ['self'],
      Filters: [{ Name: 'name', Values: ['n'] }],
    });

    const other = cloud.registerImage({ ...input, clientToken: 'another' });
    await expect(other).rejects.toThrow('RegisterImage n: AMI name is already in use (InvalidAMIName.Duplicate)');
    await expect(other).rejects.toBeInstanceOf(CloudError);
  });
});
