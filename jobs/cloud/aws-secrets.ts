// Secrets Manager half of the AWS adapter. Loaded on first use by aws.ts. Values only ever go
// into the returned Map or into the request that stores them: errors are mapped quietly
// (the AWS message is left out, it can echo input) and name the secret, never its value.
import { createHash } from 'node:crypto';
import {
  type APIErrorType,
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  paginateBatchGetSecretValue,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import type { AwsContext } from './aws.js';
import { CloudError, toCloudError } from './errors.js';
import { chunks, forEachLimited } from './shared.js';
import { FLEET_TAG } from './types.js';

/** BatchGetSecretValue takes at most 20 secret ids. */
export const SECRET_BATCH = 20;
/** GetSecretValue calls in flight at once when the batch call is not allowed. */
const FALLBACK_CONCURRENCY = 5;
const quiet = { quiet: true };

export function createSecretsService(context: AwsContext, client?: SecretsManagerClient): SecretsService {
  return new SecretsService(client ?? new SecretsManagerClient(context.clientConfig));
}

export class SecretsService {
  /** Set once BatchGetSecretValue was denied: the role grants GetSecretValue only. */
  private batchDenied = false;

  constructor(private readonly client: SecretsManagerClient) {}

  async getSecrets(names: string[]): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    for (const chunk of chunks([...new Set(names)], SECRET_BATCH)) {
      if (!this.batchDenied && (await this.getBatch(chunk, values))) continue;
      await forEachLimited(chunk, FALLBACK_CONCURRENCY, async (name) => {
        const value = await this.getOne(name);
        if (value !== null) values.set(name, value);
      });
    }
    return values;
  }

  async secretExists(name: string): Promise<boolean> {
    try {
      const out = await this.client.send(new DescribeSecretCommand({ SecretId: name }));
      // A secret scheduled for deletion cannot be read: as good as missing.
      return out.DeletedDate === undefined;
    } catch (err) {
      const mapped = toCloudError(err, 'DescribeSecret', name, quiet);
      if (mapped.code === 'ResourceNotFoundException') return false;
      throw mapped;
    }
  }

  async putSecret(name: string, value: string, options: { clientToken: string }): Promise<void> {
    // Secrets Manager wants a 32–64 character token; the same job token gives the same one,
    // so a retried step stores the same version instead of a second one.
    const token = createHash('sha256').update(options.clientToken).digest('hex');
    try {
      await this.client.send(
        new CreateSecretCommand({
          Name: name,
          SecretString: value,
          ClientRequestToken: token,
          Tags: [{ Key: FLEET_TAG.key, Value: FLEET_TAG.value }],
        }),
      );
      return;
    } catch (err) {
      const mapped = toCloudError(err, 'CreateSecret', name, quiet);
      if (mapped.code !== 'ResourceExistsException') throw mapped;
    }
    try {
      await this.client.send(
        new PutSecretValueCommand({ SecretId: name, SecretString: value, ClientRequestToken: token }),
      );
    } catch (err) {
      throw toCloudError(err, 'PutSecretValue', name, quiet);
    }
  }

  async deleteSecret(name: string): Promise<void> {
    try {
      // No recovery window: the secrets this deletes (a retired host's agent key) are remade
      // by the next spawn of that name, which a pending deletion would block for a week.
      await this.client.send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }));
    } catch (err) {
      const mapped = toCloudError(err, 'DeleteSecret', name, quiet);
      if (mapped.code !== 'ResourceNotFoundException') throw mapped;
    }
  }

  /** One BatchGetSecretValue (pages followed); false when the role may not call it. */
  private async getBatch(names: string[], values: Map<string, string>): Promise<boolean> {
    const errors: APIErrorType[] = [];
    try {
      for await (const page of paginateBatchGetSecretValue({ client: this.client }, { SecretIdList: names })) {
        for (const entry of page.SecretValues ?? []) {
          const name = names.find((n) => n === entry.Name || n === entry.ARN);
          const value = entry.SecretString ?? (entry.SecretBinary && Buffer.from(entry.SecretBinary).toString('utf8'));
          if (name !== undefined && value !== undefined) values.set(name, value);
        }
        errors.push(...(page.Errors ?? []));
      }
    } catch (err) {
      const mapped = toCloudError(err, 'BatchGetSecretValue', `${names.length} secrets`, quiet);
      // The whole call refused: the role grants GetSecretValue only; read them one by one.
      if (mapped.code !== 'AccessDeniedException') throw mapped;
      this.batchDenied = true;
      return false;
    }
    // Errors of single secrets (denied, undecryptable); a missing one is just absent.
    for (const e of errors) {
      if (e.ErrorCode === 'ResourceNotFoundException') continue;
      throw new CloudError({
        operation: 'GetSecretValue',
        resource: e.SecretId ?? '',
        code: e.ErrorCode ?? 'UnknownError',
      });
    }
    return true;
  }

  private async getOne(name: string): Promise<string | null> {
    try {
      const out = await this.client.send(new GetSecretValueCommand({ SecretId: name }));
      return out.SecretString ?? (out.SecretBinary ? Buffer.from(out.SecretBinary).toString('utf8') : null);
    } catch (err) {
      const mapped = toCloudError(err, 'GetSecretValue', name, quiet);
      if (mapped.code === 'ResourceNotFoundException') return null;
      throw mapped;
    }
  }
}
