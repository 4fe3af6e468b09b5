// The simulated S3, as aws-s3.ts sees it: buckets of objects in memory, each with its bytes,
// metadata and modification time; sha256 metadata checked on reads as the adapter checks it.
// IAM sees objects as `arn:aws:s3:::bucket/key` and listings as `s3:ListBucket` on the bucket
// with the `s3:prefix` condition key.
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { OperationError } from '../../lib/errors.js';
import { CloudError } from './errors.js';
import { checkPrefix, chunks } from './shared.js';
import type { AuthRequest, SimCallRecord } from './sim-calls.js';
import type { SimCore } from './sim-core.js';
import type { BucketOptions, DownloadResult, ObjectInfo, UploadProgress, UploadResult } from './types.js';

interface SimObject {
  body: Buffer;
  metadata: Record<string, string>;
  lastModified: number;
}

const CHUNK = 8 * 1024 * 1024;

export class SimS3 {
  private readonly buckets = new Map<string, Map<string, SimObject>>();

  constructor(
    private readonly core: SimCore,
    buckets: string[],
  ) {
    for (const bucket of buckets) this.buckets.set(bucket, new Map());
  }

  /** Whether the object exists (VM Import reads it without a call of ours). */
  has(bucket: string, key: string): boolean {
    return this.buckets.get(bucket)?.has(key) === true;
  }

  async uploadFile(
    principal: string,
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
    await this.call(principal, 'PutObject', bucket, key, [this.object('s3:PutObject', bucket, key)]);
    const objects = this.bucket(bucket, 'PutObject', key);
    const sha256 = sha(body);
    for (let sent = Math.min(CHUNK, body.length); ; sent = Math.min(sent + CHUNK, body.length)) {
      options.onProgress?.({ loadedBytes: sent, totalBytes: body.length });
      if (sent >= body.length) break;
    }
    objects.set(key, { body, metadata: { sha256 }, lastModified: this.core.clock.now() });
    // The adapter reads the stored checksum back.
    await this.call(principal, 'HeadObject', bucket, key, [this.object('s3:GetObject', bucket, key)]);
    return { bucket, key, size: body.length, sha256 };
  }

  async downloadFile(principal: string, bucket: string, key: string, path: string): Promise<DownloadResult> {
    const record = await this.call(principal, 'GetObject', bucket, key, [this.object('s3:GetObject', bucket, key)]);
    const object = await this.read(record, bucket, key, 'GetObject');
    if (object === undefined) {
      throw new CloudError({ operation: 'GetObject', resource: `s3://${bucket}/${key}`, code: 'NoSuchKey' });
    }
    await writeFile(path, object.body);
    return { size: object.body.length, sha256: sha(object.body) };
  }

  async putJson(principal: string, bucket: string, key: string, value: unknown): Promise<void> {
    await this.call(principal, 'PutObject', bucket, key, [this.object('s3:PutObject', bucket, key)]);
    const objects = this.bucket(bucket, 'PutObject', key);
    objects.set(key, { body: Buffer.from(JSON.stringify(value)), metadata: {}, lastModified: this.core.clock.now() });
  }

  async getJson(principal: string, bucket: string, key: string): Promise<unknown> {
    const record = await this.call(principal, 'GetObject', bucket, key, [this.object('s3:GetObject', bucket, key)]);
    const object = await this.read(record, bucket, key, 'GetObject');
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
    principal: string,
    bucket: string,
    key: string,
    body: Buffer,
    options: { contentType?: string } = {},
  ): Promise<UploadResult> {
    await this.call(principal, 'PutObject', bucket, key, [this.object('s3:PutObject', bucket, key)]);
    const objects = this.bucket(bucket, 'PutObject', key);
    const sha256 = sha(body);
    const metadata: Record<string, string> = { sha256 };
    if (options.contentType !== undefined) metadata['content-type'] = options.contentType;
    objects.set(key, { body: Buffer.from(body), metadata, lastModified: this.core.clock.now() });
    return { bucket, key, size: body.length, sha256 };
  }

  async getBytes(principal: string, bucket: string, key: string): Promise<Buffer | null> {
    const record = await this.call(principal, 'GetObject', bucket, key, [this.object('s3:GetObject', bucket, key)]);
    const object = await this.read(record, bucket, key, 'GetObject');
    if (object === undefined) return null;
    const sha256 = sha(object.body);
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

  async copyObject(principal: string, bucket: string, sourceKey: string, key: string): Promise<ObjectInfo> {
    const record = await this.call(principal, 'CopyObject', bucket, sourceKey, [
      this.object('s3:GetObject', bucket, sourceKey),
      this.object('s3:PutObject', bucket, key),
    ]);
    const source = await this.read(record, bucket, sourceKey, 'CopyObject');
    if (source === undefined) {
      throw new CloudError({ operation: 'CopyObject', resource: `s3://${bucket}/${sourceKey}`, code: 'NoSuchKey' });
    }
    this.bucket(bucket, 'CopyObject', key).set(key, {
      body: source.body,
      metadata: { ...source.metadata },
      lastModified: this.core.clock.now(),
    });
    return (await this.headObject(principal, bucket, key)) as ObjectInfo;
  }

  async deleteKeys(principal: string, bucket: string, keys: string[]): Promise<number> {
    const objects = this.bucket(bucket, 'DeleteObjects', keys[0] ?? '');
    for (const batch of chunks(keys, 1000)) {
      await this.deleteBatch(principal, bucket, batch, batch[0] ?? '');
      for (const key of batch) objects.delete(key);
    }
    return keys.length;
  }

  async listKeys(principal: string, bucket: string, prefix: string): Promise<string[]> {
    const keys = [...this.bucket(bucket, 'ListObjectsV2', prefix).keys()].filter((k) => k.startsWith(prefix)).sort();
    const pages = Math.max(1, Math.ceil(keys.length / 1000));
    for (let p = 0; p < pages; p++) {
      await this.call(principal, 'ListObjectsV2', bucket, prefix, [
        { action: 's3:ListBucket', resource: this.core.arns.bucket(bucket), context: { 's3:prefix': prefix } },
      ]);
    }
    return keys;
  }

  async deletePrefix(principal: string, bucket: string, prefix: string): Promise<number> {
    checkPrefix(prefix);
    const keys = await this.listKeys(principal, bucket, prefix);
    const objects = this.bucket(bucket, 'DeleteObjects', prefix);
    for (const batch of chunks(keys, 1000)) {
      await this.deleteBatch(principal, bucket, batch, prefix);
      for (const key of batch) objects.delete(key);
    }
    return keys.length;
  }

  async headObject(principal: string, bucket: string, key: string): Promise<ObjectInfo | null> {
    const record = await this.call(principal, 'HeadObject', bucket, key, [this.object('s3:GetObject', bucket, key)]);
    const object = await this.read(record, bucket, key, 'HeadObject');
    if (object === undefined) return null;
    return {
      size: object.body.length,
      etag: `"${createHash('md5').update(object.body).digest('hex')}"`,
      sha256: object.metadata.sha256 ?? null,
      lastModified: new Date(object.lastModified).toISOString(),
      metadata: { ...object.metadata },
    };
  }

  async createBucketIfMissing(principal: string, bucket: string, options: BucketOptions): Promise<boolean> {
    const arn = this.core.arns.bucket(bucket);
    await this.core.call(principal, 's3', 'HeadBucket', bucket, [
      { action: 's3:ListBucket', resource: arn, context: {} },
    ]);
    if (this.buckets.has(bucket)) return false;
    await this.core.call(principal, 's3', 'CreateBucket', bucket, [
      { action: 's3:CreateBucket', resource: arn, context: {} },
    ]);
    if (options.encrypted) {
      await this.core.call(principal, 's3', 'PutBucketEncryption', bucket, [
        { action: 's3:PutEncryptionConfiguration', resource: arn, context: {} },
      ]);
    }
    if (options.versioned) {
      await this.core.call(principal, 's3', 'PutBucketVersioning', bucket, [
        { action: 's3:PutBucketVersioning', resource: arn, context: {} },
      ]);
    }
    this.buckets.set(bucket, new Map());
    return true;
  }

  // ── internals ───────────────────────────────────────────────────────────────────────

  /** DeleteObjects is authorized as DeleteObject on each key. */
  private async deleteBatch(principal: string, bucket: string, batch: string[], resource: string): Promise<void> {
    await this.call(
      principal,
      'DeleteObjects',
      bucket,
      resource,
      batch.map((key) => this.object('s3:DeleteObject', bucket, key)),
    );
  }

  private call(principal: string, operation: string, bucket: string, key: string, requests: AuthRequest[]) {
    return this.core.call(principal, 's3', operation, `s3://${bucket}/${key}`, requests);
  }

  /**
   * The object, or undefined when there is none — which S3 says only to a caller allowed
   * `s3:ListBucket` on the bucket: anyone else gets AccessDenied for a missing key, as on AWS.
   */
  private async read(record: SimCallRecord, bucket: string, key: string, operation: string) {
    const object = this.bucket(bucket, operation, key).get(key);
    if (object !== undefined) return object;
    const list: AuthRequest = { action: 's3:ListBucket', resource: this.core.arns.bucket(bucket), context: {} };
    if (!(await this.core.authorizeWithin(record, list))) {
      throw this.core.denied(record, operation, `s3://${bucket}/${key}`, list);
    }
    return undefined;
  }

  private object(action: string, bucket: string, key: string): AuthRequest {
    return { action, resource: this.core.arns.object(bucket, key), context: {} };
  }

  private bucket(bucket: string, operation: string, key: string): Map<string, SimObject> {
    const objects = this.buckets.get(bucket);
    if (objects === undefined) {
      throw new CloudError({ operation, resource: `s3://${bucket}/${key}`, code: 'NoSuchBucket' });
    }
    return objects;
  }
}

function sha(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}
