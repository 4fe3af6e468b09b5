// The rebuild job on the AWS adapter: EC2 through aws-sdk-client-mock at the client's `send`
// (the exact ImportSnapshot, DescribeImportSnapshotTasks, RegisterImage and CreateTags
// inputs), S3 on s3rver (a 64 MiB image uploaded in parts, its checksum verified), the real
// worker and job types on a real Redis. Built in-process (`build: local`), by a builder that
// writes 64 MiB of random bytes.
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateTagsCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  type DescribeImagesCommandInput,
  DescribeImportSnapshotTasksCommand,
  DescribeInstancesCommand,
  EC2Client,
  ImportSnapshotCommand,
  RegisterImageCommand,
} from '@aws-sdk/client-ec2';
import { DeleteObjectsCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ImageBuilder } from '../../../jobs/ami/builder.js';
import { clientToken } from '../../../jobs/ami/image.js';
import { pruneImages } from '../../../jobs/ami/retention.js';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { keys } from '../../../jobs/engine/keys.js';
import { MAIN_SHA, rebuild, simAmiDeps } from '../../support/ami.js';
import { tempDir } from '../../support/cli.js';
import { lifecycleSuite } from '../../support/lifecycle.js';
import { s3rverClient, startS3rver, type TestS3 } from '../../support/s3.js';

const MiB = 1024 * 1024;
const BUCKET = 'clawdinator-images';
const suite = lifecycleSuite();
const ec2Client = new EC2Client({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
const ec2 = mockClient(ec2Client);
let s3: TestS3;
let s3Sent: string[];
let dir: string;
let bytesSha: string;

/** Writes 64 MiB of random bytes: the "image". */
const bigBuilder: ImageBuilder = {
  kind: 'test: 64 MiB of random bytes',
  async build() {
    const path = join(dir, 'image.raw');
    const bytes = randomBytes(64 * MiB);
    bytesSha = createHash('sha256').update(bytes).digest('hex');
    await writeFile(path, bytes);
    return { path, size: bytes.length, sha256: bytesSha };
  },
};

beforeAll(async () => {
  dir = tempDir('clawdinator-ami-aws-');
  s3 = await startS3rver(dir, [BUCKET]);
});
afterAll(() => s3.close());
beforeEach(() => {
  ec2.reset();
  s3Sent = [];
});

function awsHarness() {
  const cloud = createAwsCloud({
    clients: { ec2: ec2Client, s3: s3rverClient(s3.url, s3Sent) },
    waiterDelaySeconds: { min: 0.001, max: 0.002 },
  });
  const ami = simAmiDeps(suite.server, suite.sim, {
    cloud,
    bucket: BUCKET,
    builder: bigBuilder,
    builtBy: 'local-ci',
    hostJobs: undefined,
  });
  return suite.harness({ types: { ami } });
}

/** Our images: none before the register, then the registered one, available. */
function imagesAnswer(input: DescribeImagesCommandInput) {
  if (input.ImageIds?.[0] === 'ami-0123456789abcdef0') {
    return { Images: [{ ImageId: 'ami-0123456789abcdef0', Name: 'n', State: 'available', BlockDeviceMappings: [] }] };
  }
  return { Images: [] };
}

describe('rebuild-ami on the AWS adapter', () => {
  it('uploads 64 MiB (checksum verified), then the exact ImportSnapshot, polls, RegisterImage and CreateTags', async () => {
    ec2.on(DescribeImagesCommand).callsFake(imagesAnswer);
    ec2.on(ImportSnapshotCommand).resolves({ ImportTaskId: 'import-snap-0abc' });
    ec2
      .on(DescribeImportSnapshotTasksCommand)
      .resolvesOnce({
        ImportSnapshotTasks: [
          {
            ImportTaskId: 'import-snap-0abc',
            SnapshotTaskDetail: { Status: 'active', Progress: '40', StatusMessage: 'converting' },
          },
        ],
      })
      .resolves({
        ImportSnapshotTasks: [
          { ImportTaskId: 'import-snap-0abc', SnapshotTaskDetail: { Status: 'completed', SnapshotId: 'snap-0def' } },
        ],
      });
    ec2.on(RegisterImageCommand).resolves({ ImageId: 'ami-0123456789abcdef0' });
    ec2.on(CreateTagsCommand).resolves({});
    const h = awsHarness();

    const job = await rebuild(h, { build: 'local' });

    expect(job.failedReason).toBeUndefined();
    const steps = job.data.steps ?? {};
    const { key } = steps.upload as { key: string; sha256: string; size: number };
    expect(key).toMatch(/^images\/clawdinator-nixos-\d{14}-5a4dbee\.raw$/);
    expect(steps.upload).toMatchObject({ bucket: BUCKET, size: 64 * MiB, sha256: bytesSha });
    // Multipart, then the adapter's own check of the stored sha256.
    expect(s3Sent.filter((c) => c === 'UploadPartCommand').length).toBeGreaterThanOrEqual(8);
    expect(s3Sent.at(-1)).toBe('HeadObjectCommand');

    expect(ec2.commandCalls(ImportSnapshotCommand).map((c) => c.args[0].input)).toEqual([
      {
        Description: `clawdinator-nixos ${MAIN_SHA.slice(0, 12)}`,
        RoleName: 'vmimport',
        ClientToken: clientToken('import', job.id as string),
        DiskContainer: {
          Description: `clawdinator-nixos ${MAIN_SHA.slice(0, 12)}`,
          Format: 'RAW',
          UserBucket: { S3Bucket: BUCKET, S3Key: key },
        },
      },
    ]);
    expect(clientToken('import', job.id as string)).toMatch(/^clawdinator-import-[0-9a-f]{40}$/);
    expect(ec2.commandCalls(DescribeImportSnapshotTasksCommand).map((c) => c.args[0].input)).toEqual([
      { ImportTaskIds: ['import-snap-0abc'] },
      { ImportTaskIds: ['import-snap-0abc'] },
    ]);
    const name = (steps.resolve as { name: string }).name;
    const tags = [
      { Key: 'Name', Value: name },
      { Key: 'clawdinator', Value: 'true' },
      { Key: 'clawdinator:revision', Value: MAIN_SHA },
      { Key: 'clawdinator:built-by', Value: 'local-ci' },
      { Key: 'clawdinator:image-object', Value: key },
    ];
    expect(ec2.commandCalls(RegisterImageCommand).map((c) => c.args[0].input)).toEqual([
      {
        Name: name,
        Description: `clawdinator-nixos ${MAIN_SHA}`,
        Architecture: 'x86_64',
        BootMode: 'legacy-bios',
        RootDeviceName: '/dev/xvda',
        VirtualizationType: 'hvm',
        EnaSupport: true,
        BlockDeviceMappings: [
          { DeviceName: '/dev/xvda', Ebs: { SnapshotId: 'snap-0def', VolumeType: 'gp3', DeleteOnTermination: true } },
        ],
        TagSpecifications: [
          {
            ResourceType: 'image',
            Tags: [...tags, { Key: 'clawdinator-client-token', Value: clientToken('register', job.id as string) }],
          },
        ],
      },
    ]);
    // The imported snapshot comes untagged: the same tags, so prune may delete it later.
    expect(ec2.commandCalls(CreateTagsCommand).map((c) => c.args[0].input)).toEqual([
      { Resources: ['snap-0def'], Tags: tags },
    ]);

    // Each wake-up of the wait reported AWS's percent and status message, as the import stage.
    const events = (await suite.redis.xrange(keys.events, '-', '+')).map(([, f]) => JSON.parse(f[1] as string).event);
    const imports = events.filter(
      (e) => e.jobId === job.id && e.step === 'import' && e.text.startsWith('import: import-snap-0abc '),
    );
    expect(imports.map((e) => [e.text, e.percent])).toEqual([
      ['import: import-snap-0abc 40% converting', 40],
      ['import: import-snap-0abc completed', 100],
    ]);
    const uploads = events.filter((e) => e.jobId === job.id && e.step === 'upload' && typeof e.percent === 'number');
    expect(uploads.at(-1)?.text).toContain('checksum verified');
  });

  it('a deleted import task ends the job with AWS’s status message; nothing is registered', async () => {
    ec2.on(DescribeImagesCommand).callsFake(imagesAnswer);
    ec2.on(ImportSnapshotCommand).resolves({ ImportTaskId: 'import-snap-0bad' });
    ec2.on(DescribeImportSnapshotTasksCommand).resolves({
      ImportSnapshotTasks: [
        {
          ImportTaskId: 'import-snap-0bad',
          SnapshotTaskDetail: { Status: 'deleted', StatusMessage: 'ClientError: Unknown OS / Missing OS files.' },
        },
      ],
    });
    const h = awsHarness();

    const job = await rebuild(h, { build: 'local' });

    expect(job.failedReason).toBe(
      'rebuild-ami: import failed: ImportSnapshot import-snap-0bad: failed: ClientError: Unknown OS / Missing OS files. (ImportTask.deleted)',
    );
    expect(job.attemptsMade).toBe(1);
    expect(ec2.commandCalls(RegisterImageCommand)).toHaveLength(0);
    expect(ec2.commandCalls(ImportSnapshotCommand)).toHaveLength(1);
  });
});

describe('prune on the AWS adapter', () => {
  it('deregisters with DeleteAssociatedSnapshots and deletes the raw object; never the newest or one in use', async () => {
    const image = (id: string, day: number, object?: string) => ({
      ImageId: id,
      Name: `clawdinator-nixos-2026010${day}000000`,
      State: 'available' as const,
      CreationDate: `2026-01-0${day}T00:00:00.000Z`,
      RootDeviceName: '/dev/xvda',
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { SnapshotId: `snap-${id.slice(4)}` } }],
      Tags: [
        { Key: 'clawdinator', Value: 'true' },
        ...(object ? [{ Key: 'clawdinator:image-object', Value: object }] : []),
      ],
    });
    const old = 'images/clawdinator-nixos-20260101000000-aaaaaaa.raw';
    ec2.on(DescribeImagesCommand).resolves({
      Images: [
        image('ami-0000000000000000a', 1, old),
        image('ami-0000000000000000b', 2),
        image('ami-0000000000000000c', 3),
      ],
    });
    ec2.on(DescribeInstancesCommand).resolves({
      Reservations: [
        { Instances: [{ InstanceId: 'i-1', ImageId: 'ami-0000000000000000b', State: { Name: 'running' } }] },
      ],
    });
    ec2.on(DeregisterImageCommand).resolves({
      DeleteSnapshotResults: [{ SnapshotId: 'snap-0000000000000000a', ReturnCode: 'success' }],
    });
    const s3Client = new S3Client({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
    const s3Mock = mockClient(s3Client);
    s3Mock.on(DeleteObjectsCommand).resolves({});
    const cloud = createAwsCloud({ clients: { ec2: ec2Client, s3: s3Client } });

    const result = await pruneImages(cloud, { registry: {}, keep: 1, bucket: BUCKET });

    // c is the newest, b runs on i-1: only a goes, with its snapshot and its object.
    expect(result.removed.map((r) => r.image.imageId)).toEqual(['ami-0000000000000000a']);
    expect(ec2.commandCalls(DeregisterImageCommand).map((c) => c.args[0].input)).toEqual([
      { ImageId: 'ami-0000000000000000a', DeleteAssociatedSnapshots: true },
    ]);
    expect(result.removed[0]?.deregister.snapshots).toEqual([
      { snapshotId: 'snap-0000000000000000a', result: 'success' },
    ]);
    expect(s3Mock.commandCalls(DeleteObjectsCommand).map((c) => c.args[0].input.Delete?.Objects)).toEqual([
      [{ Key: old }],
    ]);
    s3Mock.restore();
  });
});
