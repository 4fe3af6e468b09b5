// Day 0 through the project's AWS adapter: the state bucket on a real S3-protocol server
// (s3rver, with the bucket settings it lacks kept by the stand-in's proxy), the Redis auth
// token and the two signing keys on a Secrets Manager client mocked at `send`.

import { createPrivateKey, createPublicKey } from 'node:crypto';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import {
  BatchGetSecretValueCommand,
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
  it('creates the state bucket, the Redis token and the signing keys once, then keeps them', async () => {
    const secrets = mockClient(SecretsManagerClient);
    secrets
      .on(DescribeSecretCommand)
      .rejects(new ResourceNotFoundException({ message: 'not found', $metadata: {} }))
      .on(CreateSecretCommand)
      .resolves({});
    const stateCloud = createAwsCloud({ clients: { s3: client } });
    const fleetCloud = createAwsCloud({ region: 'eu-central-1', clients: { secrets: new SecretsManagerClient({}) } });

    const first = await initInfra(stateCloud, fleetCloud, 'clawdinator-state');
    expect(first).toMatchObject({ bucketCreated: true, secretCreated: true });
    const buckets = await client.send(new ListBucketsCommand({}));
    expect(buckets.Buckets?.map((b) => b.Name)).toEqual(['clawdinator-state']);
    expect(s3.settings.get('clawdinator-state?versioning')).toContain('<Status>Enabled</Status>');
    expect(s3.settings.get('clawdinator-state?encryption')).toContain('<SSEAlgorithm>AES256</SSEAlgorithm>');
    const creates = secrets.commandCalls(CreateSecretCommand).map((c) => c.args[0].input);
    expect(creates.map((c) => c.Name)).toEqual([
      REDIS_AUTH_SECRET,
      'clawdinator/fleet/gateway-signing-key',
      'clawdinator/fleet/workers-signing-key',
    ]);
    // A token ElastiCache takes (16–128 characters, none of / " @), never printed.
    expect(creates[0]?.SecretString).toMatch(/^[0-9a-f]{64}$/);
    // Each stored private key matches the public key returned for the settings.
    const stored = new Map(creates.map((c) => [c.Name as string, c.SecretString as string]));
    expect(first.signingKeys.map((k) => [k.keyId, k.created])).toEqual([
      ['gateway', true],
      ['schedule', true],
    ]);
    for (const key of first.signingKeys) {
      const pem = stored.get(key.secret) as string;
      expect(pem).toContain('PRIVATE KEY');
      expect(key.publicKeyPem).not.toContain('PRIVATE');
      expect(createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'pem' })).toBe(key.publicKeyPem);
    }

    secrets.reset();
    secrets.on(DescribeSecretCommand).resolves({ Name: REDIS_AUTH_SECRET });
    secrets.on(BatchGetSecretValueCommand).callsFake((input: { SecretIdList: string[] }) => ({
      SecretValues: input.SecretIdList.map((id) => ({ Name: id, SecretString: stored.get(id) })),
      Errors: [],
    }));
    const again = await initInfra(stateCloud, fleetCloud, 'clawdinator-state');
    expect(again).toMatchObject({ bucketCreated: false, secretCreated: false });
    // Kept, and the same public keys reported again.
    expect(again.signingKeys.map((k) => [k.created, k.publicKeyPem])).toEqual(
      first.signingKeys.map((k) => [false, k.publicKeyPem]),
    );
    expect(secrets.commandCalls(CreateSecretCommand)).toHaveLength(0);
    secrets.restore();
  });
});
