// S3 half of the AWS adapter: image uploads (multipart, progress, SHA-256), bootstrap bundles
// (small checksummed objects, server-side copies) and small JSON objects. Loaded on first use
// by aws.ts.
//
// Integrity: the SDK already checksums every part it sends (CRC32, checked by S3). On top of
// that, uploadFile stores the whole file's SHA-256 as the object's `sha256` metadata and checks
// it with HeadObject after the upload; downloadFile recomputes it. Metadata, rather than S3's
// own ChecksumSHA256, because a multipart SHA-256 checksum is a checksum of part checksums
// (it depends on the part size) and S3-protocol test servers such as s3rver do not keep it.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type BucketLocationConstraint,
  CopyObjectCommand,
  CreateBucketCommand,
  type CreateBucketCommandInput,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  PutBucketEncryptionCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { OperationError } from '../../lib/errors.js';
import type { AwsContext } from './aws.js';
import { CloudError, toCloudError } from './errors.js';
import { checkPrefix } from './shared.js';
import type { BucketOptions, DownloadResult, ObjectInfo, UploadProgress, UploadResult } from './types.js';

const MiB = 1024 * 1024;
/** Parts of at least 8 MiB; larger when the file would need more than S3's 10 000 parts. */
const MIN_PART = 8 * MiB;
const MAX_PARTS = 10_000;
/** Parts in flight at once: enough to fill a host's link without holding much memory. */
const QUEUE = 4;

export function createS3Service(context: AwsContext, client?: S3Client): S3Service {
  if (client !== undefined) return new S3Service(client);
  // Path-style addressing for a local endpoint: `<bucket>.localhost` resolves on few machines
  // (the SDK already addresses an IP endpoint by path, not a name). Decided per request from
  // the endpoint the SDK resolved — the option, or AWS_ENDPOINT_URL(_S3) from its own chain,
  // which it reads only when the first request is made.
  const pathStyle = async () => {
    const host = await endpointHost(built.config as ResolvedEndpoint);
    return host !== undefined && pathStyleFor(host);
  };
  const built: S3Client = new S3Client({
    ...context.clientConfig,
    // The endpoint parameter takes a provider (ClientInputEndpointParameters); S3InputConfig's
    // narrower `boolean` hides that in the intersected config type.
    forcePathStyle: pathStyle as unknown as boolean,
  });
  return new S3Service(built);
}

/** The parts of the S3 client's resolved configuration that say where it sends requests. */
interface ResolvedEndpoint {
  isCustomEndpoint?: boolean;
  endpoint?: () => Promise<{ hostname: string }>;
  ignoreConfiguredEndpointUrls?: boolean;
  /** AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / the profile's endpoint_url, as the SDK loads it. */
  serviceConfiguredEndpoint?: () => Promise<string | undefined>;
}

async function endpointHost(config: ResolvedEndpoint): Promise<string | undefined> {
  if (config.isCustomEndpoint) return (await config.endpoint?.())?.hostname;
  if (config.ignoreConfiguredEndpointUrls) return undefined;
  const configured = await config.serviceConfiguredEndpoint?.();
  return configured ? new URL(configured).hostname : undefined;
}

/** An IP address, `localhost` or a `*.localhost` name: no virtual-hosted bucket names there. */
export function pathStyleFor(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost');
}

export class S3Service {
  constructor(private readonly client: S3Client) {}

  async uploadFile(
    bucket: string,
    key: string,
    path: string,
    options: { onProgress?: (progress: UploadProgress) => void } = {},
  ): Promise<UploadResult> {
    const where = `s3://${bucket}/${key}`;
    const { size, sha256 } = await hashFile(path);
    const upload = new Upload({
      client: this.client,
      partSize: Math.max(MIN_PART, Math.ceil(size / MAX_PARTS)),
      queueSize: QUEUE,
      params: {
        Bucket: bucket,
        Key: key,
        Body: createReadStream(path),
        ContentLength: size,
        Metadata: { sha256 },
      },
    });
    const onProgress = options.onProgress;
    if (onProgress !== undefined) {
      upload.on('httpUploadProgress', (p) => onProgress({ loadedBytes: p.loaded ?? 0, totalBytes: p.total ?? size }));
    }
    try {
      await upload.done();
    } catch (err) {
      throw toCloudError(err, 'PutObject', where);
    }
    const head = await this.headObject(bucket, key);
    if (head === null || head.size !== size || head.sha256 !== sha256) {
      throw new CloudError({
        operation: 'HeadObject',
        resource: where,
        code: 'ChecksumMismatch',
        kind: 'failed',
        detail: `uploaded object does not match ${path} (size ${head?.size ?? 'none'} of ${size}, sha256 ${head?.sha256 ?? 'none'})`,
      });
    }
    return { bucket, key, size, sha256 };
  }

  async downloadFile(bucket: string, key: string, path: string): Promise<DownloadResult> {
    const where = `s3://${bucket}/${key}`;
    let out: GetObjectCommandOutput;
    try {
      out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    } catch (err) {
      throw toCloudError(err, 'GetObject', where);
    }
    // Written beside the target and renamed at the end: a reader never sees half a file.
    const partial = `${path}.partial`;
    const hash = createHash('sha256');
    let size = 0;
    try {
      await pipeline(
        out.Body as Readable,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        createWriteStream(partial),
      );
    } catch (err) {
      await rm(partial, { force: true });
      throw toCloudError(err, 'GetObject', where);
    }
    const sha256 = hash.digest('hex');
    const expected = out.Metadata?.sha256;
    if (expected !== undefined && expected !== sha256) {
      await rm(partial, { force: true });
      throw new CloudError({
        operation: 'GetObject',
        resource: where,
        code: 'ChecksumMismatch',
        kind: 'failed',
        detail: `downloaded sha256 ${sha256} differs from the stored ${expected}`,
      });
    }
    await rename(partial, path);
    return { size, sha256 };
  }

  async putJson(bucket: string, key: string, value: unknown): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: Buffer.from(JSON.stringify(value)),
          ContentType: 'application/json',
        }),
      );
    } catch (err) {
      throw toCloudError(err, 'PutObject', `s3://${bucket}/${key}`);
    }
  }

  async getJson(bucket: string, key: string): Promise<unknown> {
    const where = `s3://${bucket}/${key}`;
    let text: string;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      text = (await out.Body?.transformToString('utf8')) ?? '';
    } catch (err) {
      const mapped = toCloudError(err, 'GetObject', where);
      if (mapped.code === 'NoSuchKey') return null;
      throw mapped;
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new CloudError({
        operation: 'GetObject',
        resource: where,
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
    const digest = createHash('sha256').update(body).digest();
    const sha256 = digest.toString('hex');
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ContentType: options.contentType ?? 'application/octet-stream',
          // S3 checks the body against this and refuses a mismatch; the metadata outlives it.
          ChecksumSHA256: digest.toString('base64'),
          Metadata: { sha256 },
        }),
      );
    } catch (err) {
      throw toCloudError(err, 'PutObject', `s3://${bucket}/${key}`);
    }
    return { bucket, key, size: body.length, sha256 };
  }

  async getBytes(bucket: string, key: string): Promise<Buffer | null> {
    const where = `s3://${bucket}/${key}`;
    let body: Buffer;
    let expected: string | undefined;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      body = Buffer.from((await out.Body?.transformToByteArray()) ?? []);
      expected = out.Metadata?.sha256;
    } catch (err) {
      const mapped = toCloudError(err, 'GetObject', where);
      if (mapped.code === 'NoSuchKey') return null;
      throw mapped;
    }
    const sha256 = createHash('sha256').update(body).digest('hex');
    if (expected !== undefined && expected !== sha256) {
      throw new CloudError({
        operation: 'GetObject',
        resource: where,
        code: 'ChecksumMismatch',
        kind: 'failed',
        detail: `downloaded sha256 ${sha256} differs from the stored ${expected}`,
      });
    }
    return body;
  }

  async copyObject(bucket: string, sourceKey: string, key: string): Promise<ObjectInfo> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: bucket,
          Key: key,
          // The source is `bucket/key`, URL-encoded (keys may hold characters that need it).
          CopySource: `${bucket}/${sourceKey.split('/').map(encodeURIComponent).join('/')}`,
          MetadataDirective: 'COPY',
        }),
      );
    } catch (err) {
      throw toCloudError(err, 'CopyObject', `s3://${bucket}/${sourceKey} → ${key}`);
    }
    const head = await this.headObject(bucket, key);
    if (head === null) {
      throw new CloudError({ operation: 'CopyObject', resource: `s3://${bucket}/${key}`, code: 'NoSuchKey' });
    }
    return head;
  }

  async listKeys(bucket: string, prefix: string): Promise<string[]> {
    const keys: string[] = [];
    try {
      for await (const page of paginateListObjectsV2(
        { client: this.client, pageSize: 1000 },
        { Bucket: bucket, Prefix: prefix },
      )) {
        for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
      }
    } catch (err) {
      throw toCloudError(err, 'ListObjectsV2', `s3://${bucket}/${prefix}`);
    }
    return keys;
  }

  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    checkPrefix(prefix);
    return this.deleteKeys(bucket, await this.listKeys(bucket, prefix));
  }

  async deleteKeys(bucket: string, keys: string[]): Promise<number> {
    // DeleteObjects takes at most 1000 keys a call.
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const where = `s3://${bucket}/${batch[0] ?? ''}`;
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        );
        const failed = out.Errors?.[0];
        if (failed !== undefined) {
          throw new CloudError({
            operation: 'DeleteObjects',
            resource: `s3://${bucket}/${failed.Key ?? ''}`,
            code: failed.Code ?? 'UnknownError',
          });
        }
      } catch (err) {
        throw toCloudError(err, 'DeleteObjects', where);
      }
    }
    return keys.length;
  }

  async headObject(bucket: string, key: string): Promise<ObjectInfo | null> {
    let out: HeadObjectCommandOutput;
    try {
      out = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    } catch (err) {
      const mapped = toCloudError(err, 'HeadObject', `s3://${bucket}/${key}`);
      if (mapped.kind === 'not-found') return null;
      throw mapped;
    }
    return {
      size: out.ContentLength ?? 0,
      etag: out.ETag ?? null,
      sha256: out.Metadata?.sha256 ?? null,
      lastModified: out.LastModified?.toISOString() ?? null,
      metadata: out.Metadata ?? {},
    };
  }

  async createBucketIfMissing(bucket: string, options: BucketOptions): Promise<boolean> {
    const created = !(await this.bucketExists(bucket));
    if (created) {
      const region = await this.client.config.region();
      // us-east-1 is the one region that refuses an explicit LocationConstraint.
      const input: CreateBucketCommandInput = { Bucket: bucket };
      if (region !== 'us-east-1') {
        input.CreateBucketConfiguration = { LocationConstraint: region as BucketLocationConstraint };
      }
      await this.call('CreateBucket', bucket, () => this.client.send(new CreateBucketCommand(input)));
      if (options.encrypted) {
        await this.call('PutBucketEncryption', bucket, () =>
          this.client.send(
            new PutBucketEncryptionCommand({
              Bucket: bucket,
              ServerSideEncryptionConfiguration: {
                Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' }, BucketKeyEnabled: true }],
              },
            }),
          ),
        );
      }
    }
    // Checked on an existing bucket too: an earlier run may have died between create and this.
    if (options.versioned) {
      const current = await this.call('GetBucketVersioning', bucket, () =>
        this.client.send(new GetBucketVersioningCommand({ Bucket: bucket })),
      );
      if (current.Status !== 'Enabled') {
        await this.call('PutBucketVersioning', bucket, () =>
          this.client.send(
            new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }),
          ),
        );
      }
    }
    return created;
  }

  private async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (err) {
      const mapped = toCloudError(err, 'HeadBucket', bucket);
      if (mapped.kind === 'not-found') return false;
      // 403 here means the name is taken by another account (bucket names are global).
      throw mapped;
    }
  }

  private async call<T>(operation: string, bucket: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      throw toCloudError(err, operation, bucket);
    }
  }
}

async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  try {
    const { size } = await stat(path);
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk);
    return { size, sha256: hash.digest('hex') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new OperationError(`PutObject: cannot read ${path} (${code})`);
  }
}
