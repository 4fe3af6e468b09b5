// `clawdinator fleet bundle <name>` as the real CLI process against s3rver, with the
// production S3 client (the SDK's own checksum settings): the member's bundle goes up, a
// second run sends nothing, and an unknown member or a missing bucket setting is one line
// with exit 2 and nothing written.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsCloud } from '../../jobs/cloud/aws.js';
import type { Cloud } from '../../jobs/cloud/types.js';
import { runCli, tempDir } from '../support/cli.js';
import { startS3rver, type TestS3 } from '../support/s3.js';

const BUCKET = 'fleet-bucket';
let dir: string;
let s3: TestS3;
let env: Record<string, string>;
let cloud: Cloud;

beforeAll(async () => {
  dir = tempDir('clawdinator-fleet-bundle-');
  s3 = await startS3rver(dir, [BUCKET]);
  const { url } = s3;
  const registry = join(dir, 'fleet.json');
  writeFileSync(
    registry,
    JSON.stringify({
      'clawdinator-1': {
        host: 'clawdinator-1',
        instanceType: 't3.large',
        bootstrapPrefix: 'bootstrap/clawdinator-1',
        discordTokenSecret: 'clawdinator/discord-token/clawdinator-1',
      },
    }),
  );
  env = {
    AWS_ENDPOINT_URL_S3: url,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    CLAWDINATOR_AWS_REGION: 'us-east-1',
    CLAWDINATOR_FLEET_REGISTRY: registry,
    CLAWDINATOR_BOOTSTRAP_BUCKET: BUCKET,
    CLAWDINATOR_EFS_ID: 'fs-0123456789abcdef0',
    CLAWDINATOR_FLEET_REDIS_URL: 'rediss://redis.example:6379',
  };
  cloud = createAwsCloud({
    clients: {
      s3: new S3Client({
        region: 'us-east-1',
        endpoint: url,
        forcePathStyle: true,
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      }),
    },
  });
});

afterAll(async () => {
  await s3.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('clawdinator fleet bundle', () => {
  it('uploads the member’s bundle, then nothing', async () => {
    const first = await runCli(['fleet', 'bundle', 'clawdinator-1'], { env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('uploaded  config.json\n');
    expect(first.stdout).toContain('uploaded  workspace/SOUL.md\n');
    expect(first.stdout).toMatch(
      /^s3:\/\/fleet-bucket\/bootstrap\/clawdinator-1\/: \d+ uploaded, 0 unchanged, 0 removed/m,
    );
    const config = JSON.parse(
      ((await cloud.getBytes(BUCKET, 'bootstrap/clawdinator-1/config.json')) as Buffer).toString(),
    );
    expect(config).toMatchObject({
      instance: 'clawdinator-1',
      region: 'us-east-1',
      efsId: 'fs-0123456789abcdef0',
      redisUrl: 'rediss://redis.example:6379',
    });
    expect(await cloud.headObject(BUCKET, 'bootstrap/clawdinator-1/manifest.json')).not.toBeNull();

    const second = await runCli(['fleet', 'bundle', 'clawdinator-1'], { env });
    expect(second.code).toBe(0);
    expect(second.stdout).not.toContain('uploaded  ');
    expect(second.stdout).toMatch(/: 0 uploaded, \d+ unchanged, 0 removed/);
  });

  it('an unknown member or a missing bucket setting: one line, exit 2, nothing written', async () => {
    const unknown = await runCli(['fleet', 'bundle', 'clawdinator-9'], { env });
    expect(unknown).toMatchObject({ code: 2, stderr: 'clawdinator: clawdinator-9 is not in the fleet registry\n' });
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-9/')).toEqual([]);

    const { CLAWDINATOR_BOOTSTRAP_BUCKET: _, ...noBucket } = env;
    const missing = await runCli(['fleet', 'bundle', 'clawdinator-1'], { env: noBucket });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^clawdinator: config: CLAWDINATOR_BOOTSTRAP_BUCKET .*is not set.*\n$/);
  });
});
