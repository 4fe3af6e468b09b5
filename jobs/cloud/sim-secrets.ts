// The simulated Secrets Manager, as aws-secrets.ts sees it: values by name, BatchGetSecretValue
// in pages of 20 (IAM checks GetSecretValue on each secret besides the batch action itself;
// a role without the batch action reads one by one, as the adapter falls back), CreateSecret
// idempotent by client token, delete without a recovery window.

import { CloudError } from './errors.js';
import { chunks } from './shared.js';
import { type AuthRequest, requestTagContext } from './sim-calls.js';
import { anyResource, type SimCore } from './sim-core.js';
import { FLEET_TAG } from './types.js';

export class SimSecrets {
  private readonly values = new Map<string, string>();
  /** Principals whose BatchGetSecretValue was denied: they read one by one from then on. */
  private readonly batchDenied = new Set<string>();

  constructor(
    private readonly core: SimCore,
    seed: Record<string, string>,
  ) {
    for (const [name, value] of Object.entries(seed)) this.values.set(name, value);
  }

  async getSecrets(principal: string, names: string[]): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    for (const batch of chunks([...new Set(names)], 20)) {
      if (!this.batchDenied.has(principal) && (await this.getBatch(principal, batch, values))) continue;
      for (const name of batch) {
        await this.core.call(principal, 'secrets', 'GetSecretValue', name, [
          this.secret('secretsmanager:GetSecretValue', name),
        ]);
        const value = this.values.get(name);
        if (value !== undefined) values.set(name, value);
      }
    }
    return values;
  }

  /**
   * As the adapter (aws-secrets.ts): one BatchGetSecretValue, which IAM allows as a whole
   * (the batch action on `*`) and then per secret (GetSecretValue on each: a denied one is an
   * error entry of the answer, not a failed call). False when the batch action itself is
   * denied: the adapter then reads the secrets one by one, for good.
   */
  private async getBatch(principal: string, batch: string[], values: Map<string, string>): Promise<boolean> {
    const resource = `${batch.length} secrets`;
    try {
      const record = await this.core.call(principal, 'secrets', 'BatchGetSecretValue', resource, [
        anyResource('secretsmanager:BatchGetSecretValue'),
      ]);
      for (const name of batch) {
        const request = this.secret('secretsmanager:GetSecretValue', name);
        if (!(await this.core.authorizeWithin(record, request))) {
          const denial = this.core.denied(record, 'GetSecretValue', name, request);
          throw denial;
        }
        const value = this.values.get(name);
        if (value !== undefined) values.set(name, value);
      }
      return true;
    } catch (err) {
      if (!(err instanceof CloudError) || err.operation !== 'BatchGetSecretValue' || err.kind !== 'access-denied') {
        throw err;
      }
      this.batchDenied.add(principal);
      return false;
    }
  }

  async secretExists(principal: string, name: string): Promise<boolean> {
    await this.core.call(principal, 'secrets', 'DescribeSecret', name, [
      this.secret('secretsmanager:DescribeSecret', name),
    ]);
    return this.values.has(name);
  }

  async putSecret(principal: string, name: string, value: string): Promise<void> {
    // The adapter tags the secret as ours at creation: IAM checks TagResource too.
    const tags = requestTagContext({ [FLEET_TAG.key]: FLEET_TAG.value });
    await this.core.call(principal, 'secrets', 'CreateSecret', name, [
      { ...this.secret('secretsmanager:CreateSecret', name), context: { 'secretsmanager:Name': name, ...tags } },
      { ...this.secret('secretsmanager:TagResource', name), context: tags },
    ]);
    if (this.values.has(name)) {
      // The adapter answers ResourceExistsException with PutSecretValue under the same token.
      await this.core.call(principal, 'secrets', 'PutSecretValue', name, [
        this.secret('secretsmanager:PutSecretValue', name),
      ]);
    }
    this.values.set(name, value);
  }

  async deleteSecret(principal: string, name: string): Promise<void> {
    await this.core.call(principal, 'secrets', 'DeleteSecret', name, [
      {
        ...this.secret('secretsmanager:DeleteSecret', name),
        context: { 'secretsmanager:ForceDeleteWithoutRecovery': 'true' },
      },
    ]);
    this.values.delete(name);
  }

  private secret(action: string, name: string): AuthRequest {
    return { action, resource: this.core.arns.secret(name), context: {} };
  }
}
