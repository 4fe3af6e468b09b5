// Errors and retries through real SDK clients talking HTTP to a loopback stub: throttling is
// retried by the SDK's own (adaptive) retry, and what still fails becomes one line naming the
// operation and the resource, never the request id or a secret value. Also: the standard
// endpoint chain (AWS_ENDPOINT_URL) and the deployer role's AssumeRole credentials.
import { STSClient } from '@aws-sdk/client-sts';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { CloudError } from '../../../jobs/cloud/errors.js';
import {
  ec2Error,
  ec2Reply,
  instanceXml,
  jsonError,
  jsonReply,
  type Stub,
  type StubReply,
  type StubRequest,
  startStub,
} from './stub.js';

let stub: Stub;
let answer: (req: StubRequest) => StubReply;

beforeAll(async () => {
  stub = await startStub((req) => answer(req));
  // The SDK's own chains find these: the adapter never reads the environment itself.
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIDTESTONLY');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test-secret');
  vi.stubEnv('AWS_ENDPOINT_URL', stub.url);
});

afterEach(() => {
  stub.requests.length = 0;
});

afterAll(async () => {
  vi.unstubAllEnvs();
  await stub.close();
});

const image = ec2Reply(
  'DescribeImages',
  '<imagesSet><item><imageId>ami-1</imageId><name>clawdinator-nixos-1</name><imageState>available</imageState></item></imagesSet>',
);

describe('throttling is retried by the SDK', () => {
  // Adaptive retry also slows the client after a throttle (its token bucket refills at
  // 0.5/s at worst), so each throttled attempt costs about 2 s here.
  it('EC2 RequestLimitExceeded twice, then success: three attempts, one result', async () => {
    let n = 0;
    answer = () =>
      ++n <= 2 ? ec2Error(503, 'RequestLimitExceeded', 'Request limit exceeded.', 'req-throttle-1') : image;
    // No endpoint given: AWS_ENDPOINT_URL, read by the SDK, points it at the stub.
    const cloud = createAwsCloud({ region: 'eu-central-1' });

    expect((await cloud.describeImage('ami-1')).name).toBe('clawdinator-nixos-1');
    expect(stub.requests.map((r) => r.action)).toEqual(['DescribeImages', 'DescribeImages', 'DescribeImages']);
    expect(stub.requests[2]?.headers['amz-sdk-request']).toMatch(/attempt=3/);
  });

  it('Secrets Manager ThrottlingException once, then success', async () => {
    let n = 0;
    answer = () =>
      ++n === 1
        ? jsonError(400, 'ThrottlingException', 'Rate exceeded', 'req-throttle-2')
        : jsonReply({ Name: 'clawdinator/x', DeletedDate: undefined });
    const cloud = createAwsCloud({ region: 'eu-central-1' });

    expect(await cloud.secretExists('clawdinator/x')).toBe(true);
    expect(stub.requests.map((r) => r.action)).toEqual(['DescribeSecret', 'DescribeSecret']);
  });

  it('still throttled after every attempt: one retryable line with the attempt count', async () => {
    answer = () => ec2Error(503, 'RequestLimitExceeded', 'Request limit exceeded.', 'req-throttle-3');
    const cloud = createAwsCloud({ region: 'eu-central-1', maxAttempts: 2 });

    const err = (await cloud.describeImage('ami-1').catch((e: unknown) => e)) as CloudError;

    expect(err).toBeInstanceOf(CloudError);
    expect(err.message).toBe('DescribeImages ami-1: throttled by AWS after 2 attempts (RequestLimitExceeded)');
    expect(err).toMatchObject({ kind: 'throttled', retryable: true });
    expect(err.message).not.toContain('req-throttle-3');
    expect(stub.requests).toHaveLength(2);
  });
});

describe('errors become one line', () => {
  const cloud = createAwsCloud({ region: 'eu-central-1' });

  it('InvalidAMIID.NotFound', async () => {
    answer = () => ec2Error(400, 'InvalidAMIID.NotFound', "The image id '[ami-123]' does not exist", 'req-abc-123');
    const err = (await cloud.describeImage('ami-123').catch((e: unknown) => e)) as CloudError;
    expect(err.message).toBe('DescribeImages ami-123: not found (InvalidAMIID.NotFound)');
    expect(err).toMatchObject({
      kind: 'not-found',
      retryable: false,
      operation: 'DescribeImages',
      resource: 'ami-123',
    });
    expect(err.message).not.toContain('req-abc-123');
  });

  it('access denied to a secret, also after falling back from BatchGetSecretValue', async () => {
    answer = (req) =>
      jsonError(
        400,
        'AccessDeniedException',
        `User: arn:aws:sts::123456789012:assumed-role/worker/i-1 is not authorized to perform: secretsmanager:${req.action} (Request ID: req-denied-9)`,
        'req-denied-9',
      );
    const err = (await cloud.getSecrets(['clawdinator/x']).catch((e: unknown) => e)) as CloudError;
    expect(err.message).toBe('GetSecretValue clawdinator/x: access denied (AccessDeniedException)');
    expect(stub.requests.map((r) => r.action)).toEqual(['BatchGetSecretValue', 'GetSecretValue']);
    expect(err.message).not.toContain('req-denied-9');
  });

  it('the vmimport role missing', async () => {
    answer = () =>
      ec2Error(
        400,
        'InvalidParameter',
        'The service role vmimport provided does not exist or does not have sufficient permissions',
        'req-role-1',
      );
    const err = cloud.importSnapshot({ bucket: 'images', key: 'nixos.img', description: 'd', clientToken: 't' });
    await expect(err).rejects.toThrow(
      'ImportSnapshot s3://images/nixos.img: role vmimport not found or not usable by VM Import (InvalidParameter)',
    );
  });

  it('an import task deleted, with its status message', async () => {
    answer = () =>
      ec2Reply(
        'DescribeImportSnapshotTasks',
        '<importSnapshotTaskSet><item><importTaskId>import-snap-0abc</importTaskId><snapshotTaskDetail><status>deleted</status><statusMessage>ClientError: Disk validation failed [Unsupported specified file format]</statusMessage></snapshotTaskDetail></item></importSnapshotTaskSet>',
      );
    await expect(cloud.describeImportSnapshot('import-snap-0abc')).rejects.toThrow(
      'ImportSnapshot import-snap-0abc: failed: ClientError: Disk validation failed [Unsupported specified file format] (ImportTask.deleted)',
    );
  });

  it('a network failure is retryable and says AWS is unreachable', async () => {
    const dead = createAwsCloud({ region: 'eu-central-1', endpoint: 'http://127.0.0.1:9', maxAttempts: 1 });
    const err = (await dead.listFleetInstances().catch((e: unknown) => e)) as CloudError;
    expect(err.message).toBe('DescribeInstances tag:app=clawdinator: AWS is unreachable or failing (ECONNREFUSED)');
    expect(err.retryable).toBe(true);
  });
});

describe('deployer role', () => {
  it('signs with AssumeRole credentials, assumed once and reused', async () => {
    answer = (req) => {
      if (req.action === 'AssumeRole') {
        return {
          headers: { 'content-type': 'text/xml' },
          body: `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIADEPLOYER</AccessKeyId><SecretAccessKey>deployer-secret</SecretAccessKey><SessionToken>deployer-session</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/deployer/clawdinator-deployer</Arn><AssumedRoleId>AROA:clawdinator-deployer</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>`,
        };
      }
      return ec2Reply(
        'DescribeInstances',
        `<reservationSet><item><instancesSet>${instanceXml('i-1', 'clawdinator-1')}</instancesSet></item></reservationSet>`,
      );
    };
    const sts = new STSClient({ region: 'eu-central-1', endpoint: stub.url });
    const cloud = createAwsCloud({
      region: 'eu-central-1',
      deployerRoleArn: 'arn:aws:iam::123456789012:role/deployer',
      clients: { sts },
    });

    expect((await cloud.listFleetInstances())[0]?.name).toBe('clawdinator-1');
    await cloud.describeInstance('i-1');

    expect(stub.requests.map((r) => r.action)).toEqual(['AssumeRole', 'DescribeInstances', 'DescribeInstances']);
    const assume = new URLSearchParams(stub.requests[0]?.body);
    expect(assume.get('RoleArn')).toBe('arn:aws:iam::123456789012:role/deployer');
    expect(assume.get('RoleSessionName')).toBe('clawdinator-deployer');
    // STS was signed with the caller's own key, EC2 with the role's.
    expect(stub.requests[0]?.headers.authorization).toContain('Credential=AKIDTESTONLY/');
    for (const req of stub.requests.slice(1)) {
      expect(req.headers.authorization).toContain('Credential=ASIADEPLOYER/');
      expect(req.headers['x-amz-security-token']).toBe('deployer-session');
    }
  });
});
