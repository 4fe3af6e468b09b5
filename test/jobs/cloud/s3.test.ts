// The S3 half of the AWS adapter against s3rver, a real S3-protocol server on loopback: a
// 64 MiB multipart upload with progress and its checksum, the download, JSON objects, listing
// and deleting by prefix. Bucket settings s3rver lacks (versioning, encryption) are checked
// with aws-sdk-client-mock instead.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  GetBucketVersioningCommand,
  HeadBucketCommand,
  PutBucketEncryptionCommand,
  PutBucketVersioningCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import type { Cloud, UploadProgress } from '../../../jobs/cloud/types.js';
import { tempDir } from '../../support/cli.js';
import { s3rverClient, startS3rver, type TestS3 } from '../../support/s3.js';

const MiB = 1024 * 1024;
let dir: string;
let server: TestS3;
let cloud: Cloud;
/** Names of the commands the S3 client sent, in order. */
const sent: string[] = [];

beforeAll(async () => {
  dir = tempDir('clawdinator-s3-');
  server = await startS3rver(dir, ['images']);
  const client = s3rverClient(server.url, sent);
  cloud = createAwsCloud({ clients: { s3: client } });
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('S3 against s3rver', () => {
  it('uploads 64 MiB in parts with progress, verifies the sha256, and downloads the same bytes', async () => {
    const image = join(dir, 'nixos.img');
    const bytes = randomBytes(64 * MiB);
    writeFileSync(image, bytes);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const progress: UploadProgress[] = [];

    const result = await cloud.uploadFile('images', 'clawdinator-images/nixos-1.img', image, {
      onProgress: (p) => progress.push(p),
    });

    expect(result).toEqual({ bucket: 'images', key: 'clawdinator-images/nixos-1.img', size: 64 * MiB, sha256 });
    // One event per 8 MiB part at least, rising to the whole file.
    expect(progress.length).toBeGreaterThanOrEqual(8);
    expect(progress.every((p) => p.totalBytes === 64 * MiB)).toBe(true);
    expect(progress.at(-1)?.loadedBytes).toBe(64 * MiB);
    const head = await cloud.headObject('images', 'clawdinator-images/nixos-1.img');
    expect(head).toMatchObject({ size: 64 * MiB, sha256 });
    expect(sent.filter((c) => c === 'UploadPartCommand')).toHaveLength(8);
    expect(sent.filter((c) => c === 'CreateMultipartUploadCommand')).toHaveLength(1);

    const copy = join(dir, 'copy.img');
    expect(await cloud.downloadFile('images', 'clawdinator-images/nixos-1.img', copy)).toEqual({
      size: 64 * MiB,
      sha256,
    });
    expect(createHash('sha256').update(readFileSync(copy)).digest('hex')).toBe(sha256);
  });

  it('uploads a small file in one PutObject', async () => {
    const file = join(dir, 'bundle.tar.zst');
    writeFileSync(file, 'small');
    const result = await cloud.uploadFile('images', 'bootstrap/clawdinator-1/bundle.tar.zst', file);
    expect(result.size).toBe(5);
    expect((await cloud.headObject('images', 'bootstrap/clawdinator-1/bundle.tar.zst'))?.sha256).toBe(result.sha256);
  });

  it('puts and gets JSON; a missing key is null', async () => {
    await cloud.putJson('images', 'state/fleet.json', { 'clawdinator-1': { host: 'clawdinator-1', n: 1 } });
    expect(await cloud.getJson('images', 'state/fleet.json')).toEqual({
      'clawdinator-1': { host: 'clawdinator-1', n: 1 },
    });
    expect(await cloud.getJson('images', 'state/none.json')).toBeNull();
    expect(await cloud.headObject('images', 'state/none.json')).toBeNull();
  });

  it('lists and deletes by prefix, leaving other keys alone, and refuses an empty prefix', async () => {
    for (let n = 0; n < 5; n++) await cloud.putJson('images', `tmp/run-1/${n}.json`, n);
    await cloud.putJson('images', 'tmp/run-2/keep.json', 'keep');

    expect(await cloud.listKeys('images', 'tmp/run-1/')).toEqual([0, 1, 2, 3, 4].map((n) => `tmp/run-1/${n}.json`));
    expect(await cloud.deletePrefix('images', 'tmp/run-1/')).toBe(5);
    expect(await cloud.listKeys('images', 'tmp/')).toEqual(['tmp/run-2/keep.json']);
    await expect(cloud.deletePrefix('images', '')).rejects.toThrow('refusing an empty prefix');
  });

  it('creates a missing bucket once', async () => {
    expect(await cloud.createBucketIfMissing('state', { versioned: false, encrypted: false })).toBe(true);
    expect(await cloud.createBucketIfMissing('state', { versioned: false, encrypted: false })).toBe(false);
    await cloud.putJson('state', 'k.json', 1);
    expect(await cloud.getJson('state', 'k.json')).toBe(1);
  });

  it('names the bucket and key when the bucket does not exist', async () => {
    await expect(cloud.putJson('nope', 'k.json', 1)).rejects.toThrow(
      'PutObject s3://nope/k.json: not found (NoSuchBucket)',
    );
  });
});

describe('createBucketIfMissing settings', () => {
  const client = new S3Client({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const s3 = mockClient(client);
  const mocked = createAwsCloud({ clients: { s3: client } });

  it('creates in the client region, encrypts and turns versioning on', async () => {
    s3.reset();
    s3.on(HeadBucketCommand).rejects({ name: 'NotFound', $metadata: { httpStatusCode: 404 } });
    s3.on(GetBucketVersioningCommand).resolves({});

    expect(await mocked.createBucketIfMissing('clawdinator-state', { versioned: true, encrypted: true })).toBe(true);

    expect(s3.commandCalls(CreateBucketCommand)[0]?.args[0].input).toEqual({
      Bucket: 'clawdinator-state',
      CreateBucketConfiguration: { LocationConstraint: 'eu-central-1' },
    });
    expect(s3.commandCalls(PutBucketEncryptionCommand)[0]?.args[0].input).toEqual({
      Bucket: 'clawdinator-state',
      ServerSideEncryptionConfiguration: {
        Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' }, BucketKeyEnabled: true }],
      },
    });
    expect(s3.commandCalls(PutBucketVersioningCommand)[0]?.args[0].input).toEqual({
      Bucket: 'clawdinator-state',
      VersioningConfiguration: { Status: 'Enabled' },
    });
  });

  it('leaves an existing versioned bucket as it is', async () => {
    s3.reset();
    s3.on(HeadBucketCommand).resolves({});
    s3.on(GetBucketVersioningCommand).resolves({ Status: 'Enabled' });

    expect(await mocked.createBucketIfMissing('clawdinator-state', { versioned: true, encrypted: true })).toBe(false);
    expect(s3.commandCalls(CreateBucketCommand)).toHaveLength(0);
    expect(s3.commandCalls(PutBucketEncryptionCommand)).toHaveLength(0);
    expect(s3.commandCalls(PutBucketVersioningCommand)).toHaveLength(0);
  });

  it('refuses a bucket name another account owns', async () => {
    s3.reset();
    s3.on(HeadBucketCommand).rejects({ name: 'Forbidden', $metadata: { httpStatusCode: 403 } });
    await expect(mocked.createBucketIfMissing('taken', { versioned: true, encrypted: true })).rejects.toThrow(
      'HeadBucket taken: access denied (Forbidden)',
    );
  });
});
