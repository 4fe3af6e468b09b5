// The AWS adapter's own S3 client (not a test client) against s3rver on a `localhost`
// endpoint, given the way production gives it (AWS_ENDPOINT_URL, read by the SDK's chain)
// and as an option: `<bucket>.localhost` does not resolve here, so the adapter must address
// the bucket in the path, as the SDK already does by itself for an IP endpoint.
import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { pathStyleFor } from '../../../jobs/cloud/aws-s3.js';
import { tempDir } from '../../support/cli.js';
import { startS3rver, type TestS3 } from '../../support/s3.js';

let dir: string;
let server: TestS3;
let localhost: string;

beforeAll(async () => {
  dir = tempDir('clawdinator-s3-localhost-');
  server = await startS3rver(dir, ['bundles']);
  localhost = server.url.replace('127.0.0.1', 'localhost');
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  vi.unstubAllEnvs();
});

function credentials(): void {
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'S3RVER');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'S3RVER');
  vi.stubEnv('AWS_REGION', 'us-east-1');
}

describe('S3 on a localhost endpoint', () => {
  it('AWS_ENDPOINT_URL=http://localhost:<port>: objects round-trip, addressed by path', async () => {
    credentials();
    vi.stubEnv('AWS_ENDPOINT_URL', localhost);
    const cloud = createAwsCloud();
    await cloud.putJson('bundles', 'bootstrap/clawdinator-3/config.json', { name: 'clawdinator-3' });
    expect(await cloud.getJson('bundles', 'bootstrap/clawdinator-3/config.json')).toEqual({ name: 'clawdinator-3' });
    expect(await cloud.listKeys('bundles', 'bootstrap/')).toEqual(['bootstrap/clawdinator-3/config.json']);
  });

  it('an endpoint option naming localhost works the same', async () => {
    credentials();
    const cloud = createAwsCloud({ endpoint: localhost });
    await cloud.putJson('bundles', 'x.json', [1]);
    expect(await cloud.getJson('bundles', 'x.json')).toEqual([1]);
  });

  it('path style for IPs, localhost and *.localhost; virtual hosts for AWS and other names', () => {
    expect(pathStyleFor('localhost')).toBe(true);
    expect(pathStyleFor('minio.localhost')).toBe(true);
    expect(pathStyleFor('LOCALHOST')).toBe(true);
    expect(pathStyleFor('127.0.0.1')).toBe(true);
    expect(pathStyleFor('[::1]')).toBe(true);
    expect(pathStyleFor('::1')).toBe(true);
    expect(pathStyleFor('s3.eu-central-1.amazonaws.com')).toBe(false);
    expect(pathStyleFor('notlocalhost')).toBe(false);
    expect(pathStyleFor('localhost.example.com')).toBe(false);
  });
});
