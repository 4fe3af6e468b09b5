// IAM half of the AWS adapter: the lookups a resumed apply makes before it creates a member's
// role and instance profile again (fixed names: a second CreateRole dies on
// EntityAlreadyExists), so the stack imports what an earlier, killed apply made. Loaded on
// first use by aws.ts. IAM is global: the client's region only picks the endpoint.
import { GetInstanceProfileCommand, GetRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import type { AwsContext } from './aws.js';
import { toCloudError } from './errors.js';

export function createIamService(context: AwsContext, client?: IAMClient): IamService {
  return new IamService(client ?? new IAMClient(context.clientConfig));
}

export class IamService {
  constructor(private readonly client: IAMClient) {}

  async roleExists(name: string): Promise<boolean> {
    try {
      await this.client.send(new GetRoleCommand({ RoleName: name }));
      return true;
    } catch (err) {
      const mapped = toCloudError(err, 'GetRole', name);
      if (mapped.kind === 'not-found') return false;
      throw mapped;
    }
  }

  async instanceProfileExists(name: string): Promise<boolean> {
    try {
      await this.client.send(new GetInstanceProfileCommand({ InstanceProfileName: name }));
      return true;
    } catch (err) {
      const mapped = toCloudError(err, 'GetInstanceProfile', name);
      if (mapped.kind === 'not-found') return false;
      throw mapped;
    }
  }
}
