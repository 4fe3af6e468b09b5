// The Secrets Manager half of the AWS adapter, with aws-sdk-client-mock at the client's `send`.
import {
  BatchGetSecretValueCommand,
  type BatchGetSecretValueCommandInput,
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  type GetSecretValueCommandInput,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';

const client = new SecretsManagerClient({
  region: 'eu-central-1',
  credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
});
const sm = mockClient(client);
const names = Array.from({ length: 45 }, (_, n) => `clawdinator/discord-token/clawdinator-${n}`);
const secretValue = (name: string) => `value-of-${name}`;

beforeEach(() => sm.reset());

describe('getSecrets', () => {
  it('reads 45 secrets in 3 BatchGetSecretValue calls of at most 20; a missing one is absent', async () => {
    const seen: BatchGetSecretValueCommandInput[] = [];
    sm.on(BatchGetSecretValueCommand).callsFake((input: BatchGetSecretValueCommandInput) => {
      seen.push(structuredClone(input));
      const ids = input.SecretIdList ?? [];
      return {
        SecretValues: ids
          .filter((id) => !id.endsWith('-44'))
          .map((id) => ({ Name: id, SecretString: secretValue(id) })),
        Errors: ids
          .filter((id) => id.endsWith('-44'))
          .map((id) => ({ SecretId: id, ErrorCode: 'ResourceNotFoundException', Message: 'not found' })),
      };
    });
    const cloud = createAwsCloud({ clients: { secrets: client } });

    const values = await cloud.getSecrets(names);

    expect(seen.map((s) => s.SecretIdList?.length)).toEqual([20, 20, 5]);
    expect(values.size).toBe(44);
    expect(values.get(names[0] as string)).toBe(secretValue(names[0] as string));
    expect(values.has(names[44] as string)).toBe(false);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(0);
  });

  it('falls back to GetSecretValue per secret when BatchGetSecretValue is denied, and remembers it', async () => {
    // IAM's refusal: not a modelled exception of Secrets Manager, an error named by its code.
    sm.on(BatchGetSecretValueCommand).rejects({
      name: 'AccessDeniedException',
      message: 'User is not authorized to perform: secretsmanager:BatchGetSecretValue',
    });
    sm.on(GetSecretValueCommand).callsFake((input: GetSecretValueCommandInput) => {
      if (input.SecretId === 'missing') throw new ResourceNotFoundException({ message: 'nope', $metadata: {} });
      return { Name: input.SecretId, SecretString: secretValue(input.SecretId as string) };
    });
    const cloud = createAwsCloud({ clients: { secrets: client } });

    const first = await cloud.getSecrets(['a', 'b', 'missing']);
    const second = await cloud.getSecrets(['c']);

    expect([...first.entries()].sort()).toEqual([
      ['a', secretValue('a')],
      ['b', secretValue('b')],
    ]);
    expect(second.get('c')).toBe(secretValue('c'));
    expect(sm.commandCalls(BatchGetSecretValueCommand)).toHaveLength(1);
    expect(
      sm
        .commandCalls(GetSecretValueCommand)
        .map((c) => c.args[0].input.SecretId)
        .sort(),
    ).toEqual(['a', 'b', 'c', 'missing']);
  });

  it('fails on a secret it may not read, naming the secret and never a value', async () => {
    sm.on(BatchGetSecretValueCommand).resolves({
      SecretValues: [{ Name: 'ok', SecretString: 'super-secret-value' }],
      Errors: [{ SecretId: 'clawdinator/x', ErrorCode: 'AccessDeniedException', Message: 'denied' }],
    });
    const cloud = createAwsCloud({ clients: { secrets: client } });
    const err = await cloud.getSecrets(['ok', 'clawdinator/x']).catch((e: Error) => e);
    expect((err as Error).message).toBe('GetSecretValue clawdinator/x: access denied (AccessDeniedException)');
    expect((err as Error).message).not.toContain('super-secret-value');
  });
});

describe('secretExists, putSecret, deleteSecret', () => {
  const cloud = createAwsCloud({ clients: { secrets: client } });

  it('checks existence with DescribeSecret, never reading the value', async () => {
    sm.on(DescribeSecretCommand, { SecretId: 'there' })
      .resolves({ Name: 'there' })
      .on(DescribeSecretCommand, { SecretId: 'deleted' })
      .resolves({ Name: 'deleted', DeletedDate: new Date() })
      .on(DescribeSecretCommand, { SecretId: 'absent' })
      .rejects(new ResourceNotFoundException({ message: 'nope', $metadata: {} }));

    expect(await cloud.secretExists('there')).toBe(true);
    expect(await cloud.secretExists('deleted')).toBe(false);
    expect(await cloud.secretExists('absent')).toBe(false);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(0);
    expect(sm.commandCalls(BatchGetSecretValueCommand)).toHaveLength(0);
  });

  it('creates a secret with a token derived from the client token, or puts a new value when it exists', async () => {
    sm.on(CreateSecretCommand)
      .resolvesOnce({ Name: 'k' })
      .rejects(new ResourceExistsException({ message: 'exists', $metadata: {} }));
    sm.on(PutSecretValueCommand).resolves({ Name: 'k' });

    await cloud.putSecret('clawdinator/agent-key/clawdinator-3', 'PRIVATE KEY', { clientToken: 'spawn-clawdinator-3' });
    await cloud.putSecret('clawdinator/agent-key/clawdinator-3', 'PRIVATE KEY', { clientToken: 'spawn-clawdinator-3' });

    const create = sm.commandCalls(CreateSecretCommand)[0]?.args[0].input;
    expect(create).toMatchObject({
      Name: 'clawdinator/agent-key/clawdinator-3',
      SecretString: 'PRIVATE KEY',
      Tags: [{ Key: 'app', Value: 'clawdinator' }],
    });
    expect(create?.ClientRequestToken).toMatch(/^[0-9a-f]{64}$/);
    const put = sm.commandCalls(PutSecretValueCommand)[0]?.args[0].input;
    expect(put).toEqual({
      SecretId: 'clawdinator/agent-key/clawdinator-3',
      SecretString: 'PRIVATE KEY',
      ClientRequestToken: create?.ClientRequestToken,
    });
  });

  it('deletes without a recovery window; a missing secret is no error', async () => {
    sm.on(DeleteSecretCommand)
      .resolvesOnce({})
      .rejects(new ResourceNotFoundException({ message: 'nope', $metadata: {} }));
    await cloud.deleteSecret('clawdinator/agent-key/clawdinator-3');
    await cloud.deleteSecret('clawdinator/agent-key/clawdinator-3');
    expect(sm.commandCalls(DeleteSecretCommand)[0]?.args[0].input).toEqual({
      SecretId: 'clawdinator/agent-key/clawdinator-3',
      ForceDeleteWithoutRecovery: true,
    });
  });
});
