// The simulated Secrets Manager, as aws-secrets.ts sees it: values by name, BatchGetSecretValue
// in pages of 20 (IAM checks GetSecretValue on each secret besides the batch action itself),
// CreateSecret idempotent by client token, delete without a recovery window.

import { chunks } from './shared.js';
import type { AuthRequest } from './sim-calls.js';
import { anyResource, type SimCore } from './sim-core.js';

export class SimSecrets {
  private readonly values = new Map<string, string>();

  constructor(
    private readonly core: SimCore,
    seed: Record<string, string>,
  ) {
    for (const [name, value] of Object.entries(seed)) this.values.set(name, value);
  }

  async getSecrets(principal: string, names: string[]): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    for (const batch of chunks([...new Set(names)], 20)) {
      await this.core.call(principal, 'secrets', 'BatchGetSecretValue', `${batch.length} secrets`, [
        anyResource('secretsmanager:BatchGetSecretValue'),
        ...batch.map((name) => this.secret('secretsmanager:GetSecretValue', name)),
      ]);
      for (const name of batch) {
        const value = this.values.get(name);
        if (value !== undefined) values.set(name, value);
      }
    }
    return values;
  }

  async secretExists(principal: string, name: string): Promise<boolean> {
    await this.core.call(principal, 'secrets', 'DescribeSecret', name, [
      this.secret('secretsmanager:DescribeSecret', name),
    ]);
    return this.values.has(name);
  }

  async putSecret(principal: string, name: string, value: string): Promise<void> {
    await this.core.call(principal, 'secrets', 'CreateSecret', name, [
      { ...this.secret('secretsmanager:CreateSecret', name), context: { 'secretsmanager:Name': name } },
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
