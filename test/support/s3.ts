// s3rver, a real S3-protocol server, on a free loopback port for the tests, and an SDK client
// for it. The client records the names of the commands it sends (`sent`), so a test can
// prove what was (not) uploaded.
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

export interface TestS3 {
  url: string;
  close(): Promise<void>;
}

/** Serves `buckets` from `<dir>/s3`. */
export async function startS3rver(dir: string, buckets: string[]): Promise<TestS3> {
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: join(dir, 's3'),
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const { port } = await server.run();
  return { url: `http://127.0.0.1:${port}`, close: () => server.close() };
}

/** A client for s3rver at `url`; each command's name is pushed onto `sent` when given. */
export function s3rverClient(url: string, sent?: string[]): S3Client {
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: url,
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // s3rver cannot read the aws-chunked bodies the SDK sends for a streamed PutObject.
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  if (sent !== undefined) {
    client.middlewareStack.add(
      (next, context) => (args) => {
        sent.push(context.commandName ?? '');
        return next(args);
      },
      { step: 'initialize' },
    );
  }
  return client;
}
