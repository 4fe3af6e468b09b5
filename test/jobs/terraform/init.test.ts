// Day 0 through the project's AWS adapter: the state bucket on a real S3-protocol server
// (s3rver, with the bucket settings it lacks kept by the stand-in's proxy), the Redis auth
// token on a Secrets Manager client mocked at `send`.

import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_AUTH_SECRET } from '../../../infra/names.js';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { initInfra } from '../../../jobs/terraform/init.js';
import { S3_KEY, S3_SECRET, type S3StandIn, startS3StandIn } from './s3-standin.js';

let s3: S3StandIn;
let client: S3Client;
beforeAll(async () => {
  s3 = await startS3StandIn([]);
  client = new S3Client({
    region: 'eu-central-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_SECRET },
  });
});
afterAll(async () => {
  await s3?.close();
});

describe('infra init', () => {
  it('creates the versioned, encrypted state bucket and the Redis token once, then keeps both', async () => {
    const secrets = mockClient(SecretsManagerClient);
    secrets
      .on(DescribeSecretCommand)
      .rejects(new ResourceNotFoundException({ message: 'not found', $metadata: {} }))
      .on(CreateSecretCommand)
      .resolves({});
    const stateCloud = createAwsCloud({ clients: { s3: client } });
    const fleetCloud = createAwsCloud({ region: 'eu-central-1', clients: { secrets: new SecretsManagerClient({}) } });

    expect(await initInfra(stateCloud, fleetCloud, 'clawdinator-state')).toEqual({
      bucketCreated: true,
      secretCreated: true,
    });
    const buckets = await client.send(new ListBucketsCommand({}));
    expect(buckets.Buckets?.map((b) => b.Name)).toEqual(['clawdinator-state']);
    expect(s3.settings.get('clawdinator-state?versioning')).toContain('<Status>Enabled</Status>');
    expect(s3.settings.get('clawdinator-state?encryption')).toContain('<SSEAlgorithm>AES256</SSEAlgorithm>');
    const created = secrets.commandCalls(CreateSecretCommand)[0]?.args[0].input;
    expect(created?.Name).toBe(REDIS_AUTH_SECRET);
    // A token ElastiCache takes (16–128 characters, none of / " @), never printed.
    expect(created?.SecretString).toMatch(/^[0-9a-f]{64}$/);

    secrets.reset();
    secrets.on(DescribeSecretCommand).resolves({ Name: REDIS_AUTH_SECRET });
    expect(await initInfra(stateCloud, fleetCloud, 'clawdinator-state')).toEqual({
      bucketCreated: false,
      secretCreated: false,
    });
    expect(secrets.commandCalls(CreateSecretCommand)).toHaveLength(0);
    secrets.restore();
  });
});
