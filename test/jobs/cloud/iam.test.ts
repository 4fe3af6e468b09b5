// The IAM half of the AWS adapter (the lookups a resumed apply makes before it creates a
// member's role and profile again), with aws-sdk-client-mock at the client's `send`; and the
// simulated IAM, which refuses a second create as IAM does.
import {
  GetInstanceProfileCommand,
  GetRoleCommand,
  IAMClient,
  NoSuchEntityException,
  ServiceFailureException,
} from '@aws-sdk/client-iam';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { CloudError } from '../../../jobs/cloud/errors.js';
import { createSimCloud } from '../../../jobs/cloud/sim.js';

const client = new IAMClient({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
const iam = mockClient(client);
beforeEach(() => iam.reset());

describe('IAM lookups (AWS adapter)', () => {
  it('a role or profile that exists is true; NoSuchEntity is false; any other error is a CloudError', async () => {
    const cloud = createAwsCloud({ clients: { iam: client }, maxAttempts: 1 });
    iam.on(GetRoleCommand, { RoleName: 'clawdinator-3' }).resolves({});
    iam
      .on(GetRoleCommand, { RoleName: 'clawdinator-4' })
      .rejects(
        new NoSuchEntityException({ message: 'The role with name clawdinator-4 cannot be found.', $metadata: {} }),
      );
    iam
      .on(GetInstanceProfileCommand)
      .rejects(new ServiceFailureException({ message: 'internal', $metadata: { httpStatusCode: 500 } }));
    expect(await cloud.roleExists('clawdinator-3')).toBe(true);
    expect(await cloud.roleExists('clawdinator-4')).toBe(false);
    const failed = cloud.instanceProfileExists('clawdinator-3');
    await expect(failed).rejects.toBeInstanceOf(CloudError);
    await expect(failed).rejects.toThrow(/^GetInstanceProfile clawdinator-3: .*\(ServiceFailure(Exception)?\)$/);
  });
});

describe('simulated IAM', () => {
  it('a second create of a member role or profile fails with EntityAlreadyExists, as IAM does; calls are recorded', async () => {
    const cloud = createSimCloud();
    expect(await cloud.roleExists('clawdinator-3')).toBe(false);
    await cloud.createRole('clawdinator-3', 'own-bootstrap-and-secrets');
    await cloud.createInstanceProfile('clawdinator-3', 'clawdinator-3');
    expect(await cloud.roleExists('clawdinator-3')).toBe(true);
    expect(await cloud.instanceProfileExists('clawdinator-3')).toBe(true);
    await expect(cloud.createRole('clawdinator-3', 'own-bootstrap-and-secrets')).rejects.toThrow(
      'CreateRole clawdinator-3: Role with name clawdinator-3 already exists. (EntityAlreadyExists)',
    );
    await expect(cloud.createInstanceProfile('clawdinator-3', 'clawdinator-3')).rejects.toThrow(/EntityAlreadyExists/);
    const create = cloud.records().find((r) => r.operation === 'CreateRole');
    expect(create?.requests).toEqual([
      {
        action: 'iam:CreateRole',
        resource: 'arn:aws:iam::123456789012:role/clawdinator/instance/clawdinator-3',
        context: {
          'iam:PermissionsBoundary': 'arn:aws:iam::123456789012:policy/clawdinator/clawdinator-instance-boundary',
        },
      },
    ]);
    await cloud.deleteInstanceProfile('clawdinator-3');
    await cloud.deleteRole('clawdinator-3');
    expect(await cloud.roleExists('clawdinator-3')).toBe(false);
    expect(cloud.calls.iam).toBeGreaterThan(0);
    cloud.close();
  });
});
