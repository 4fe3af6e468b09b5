// STS for the deployer role: AssumeRole, turned into the credentials the other clients sign
// with. Loaded on first use by aws.ts, and only when a deployer role is configured.
import { AssumeRoleCommand, STSClient, type STSClientConfig } from '@aws-sdk/client-sts';
import { CloudError, toCloudError } from './errors.js';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** One hour, AssumeRole's default and the most a role chained from an instance role allows. */
const SESSION_SECONDS = 3600;
const SESSION_NAME = 'clawdinator-deployer';

export function createStsService(config: STSClientConfig, client?: STSClient): StsService {
  return new StsService(client ?? new STSClient(config));
}

export class StsService {
  constructor(private readonly client: STSClient) {}

  async assumeRole(roleArn: string): Promise<AwsCredentials> {
    let creds: { AccessKeyId?: string; SecretAccessKey?: string; SessionToken?: string; Expiration?: Date } | undefined;
    try {
      const out = await this.client.send(
        new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: SESSION_NAME, DurationSeconds: SESSION_SECONDS }),
      );
      creds = out.Credentials;
    } catch (err) {
      throw toCloudError(err, 'AssumeRole', roleArn, { quiet: true });
    }
    if (creds?.AccessKeyId === undefined || creds.SecretAccessKey === undefined) {
      throw new CloudError({ operation: 'AssumeRole', resource: roleArn, code: 'NoCredentials', kind: 'failed' });
    }
    return {
      accessKeyId: creds.AccessKeyId,
      secretAccessKey: creds.SecretAccessKey,
      sessionToken: creds.SessionToken,
      expiration: creds.Expiration,
    };
  }
}
