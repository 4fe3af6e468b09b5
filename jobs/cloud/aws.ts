// The AWS SDK v3 implementation of Cloud. One adapter per service (aws-ec2.ts, aws-s3.ts,
// aws-ssm.ts, aws-secrets.ts), each loaded with its SDK on first use: the gateway and worker
// stay small until a job really talks to AWS (all four SDKs cost about +65 MiB RSS).
//
// (aws-iam.ts: the IAM lookups of a resumed apply.)
//
// Region, endpoint (AWS_ENDPOINT_URL…) and credentials (environment, profile, instance role)
// come from the SDK's own default chains; nothing here reads the environment. With a deployer
// role ARN, every client signs with that role's temporary credentials from STS AssumeRole
// (the instance role alone cannot deploy), refreshed shortly before they expire.
import type { EC2Client } from '@aws-sdk/client-ec2';
import type { IAMClient } from '@aws-sdk/client-iam';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { STSClient } from '@aws-sdk/client-sts';
import type { Ec2Service } from './aws-ec2.js';
import type { IamService } from './aws-iam.js';
import type { S3Service } from './aws-s3.js';
import type { SecretsService } from './aws-secrets.js';
import type { SsmService } from './aws-ssm.js';
import type { AwsCredentials, StsService } from './aws-sts.js';
import { type Clock, realClock } from './clock.js';
import type {
  AmiInfo,
  BucketOptions,
  Cloud,
  CommandRequest,
  DeregisterResult,
  DownloadResult,
  FleetInstance,
  ImportSnapshotInput,
  ImportTask,
  InstanceState,
  InvocationResult,
  ObjectInfo,
  PingStatus,
  RegisterImageInput,
  SendCommandOptions,
  Tags,
  UploadProgress,
  UploadResult,
} from './types.js';

export interface AwsCloudOptions {
  /** Default: the SDK's chain (AWS_REGION, the profile, the instance's region). */
  region?: string;
  /** Default: the SDK's (AWS_ENDPOINT_URL, then AWS's own). */
  endpoint?: string;
  /** Role every call assumes (STS AssumeRole); default: the caller's own credentials. */
  deployerRoleArn?: string;
  /** Attempts per call under adaptive retry (throttling backs off and slows the client). */
  maxAttempts?: number;
  /** Ready-made clients (tests: mocked, or pointed at a local server); built on first use otherwise. */
  clients?: {
    ec2?: EC2Client;
    s3?: S3Client;
    ssm?: SSMClient;
    secrets?: SecretsManagerClient;
    sts?: STSClient;
    iam?: IAMClient;
  };
  /** Time for SSM polling; default the real clock. */
  clock?: Clock;
  /** Bounds of the SDK waiters' backoff; default the EC2 waiters' own, 15 s to 120 s. */
  waiterDelaySeconds?: { min: number; max: number };
  /** Between two GetCommandInvocation polls; default 2 s, as the original's script. */
  ssmPollSeconds?: number;
}

/** What every service adapter gets: one client configuration and the polling settings. */
export interface AwsContext {
  clientConfig: ClientConfig;
  clock: Clock;
  waiterDelay: { minDelay: number; maxDelay: number };
  ssmPollMs: number;
}

interface ClientConfig {
  region?: string;
  endpoint?: string;
  credentials?: () => Promise<AwsCredentials>;
  retryMode: 'adaptive';
  maxAttempts: number;
}

const DEFAULT_MAX_ATTEMPTS = 5;

export function createAwsCloud(options: AwsCloudOptions = {}): Cloud {
  return new AwsCloud(options);
}

class AwsCloud implements Cloud {
  private readonly context: AwsContext;
  private readonly clients: NonNullable<AwsCloudOptions['clients']>;
  private ec2?: Promise<Ec2Service>;
  private s3?: Promise<S3Service>;
  private ssm?: Promise<SsmService>;
  private secrets?: Promise<SecretsService>;
  private iam?: Promise<IamService>;

  constructor(options: AwsCloudOptions) {
    this.clients = options.clients ?? {};
    const base: ClientConfig = { retryMode: 'adaptive', maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS };
    if (options.region !== undefined) base.region = options.region;
    if (options.endpoint !== undefined) base.endpoint = options.endpoint;
    const clientConfig = { ...base };
    const roleArn = options.deployerRoleArn;
    if (roleArn !== undefined) {
      // STS itself signs with the caller's own credentials (the instance role).
      let sts: Promise<StsService> | undefined;
      clientConfig.credentials = assumedRoleCredentials(roleArn, () => {
        sts ??= import('./aws-sts.js').then((m) => m.createStsService(base, this.clients.sts));
        return sts;
      });
    }
    const delay = options.waiterDelaySeconds;
    this.context = {
      clientConfig,
      clock: options.clock ?? realClock,
      waiterDelay: { minDelay: delay?.min ?? 15, maxDelay: delay?.max ?? 120 },
      ssmPollMs: (options.ssmPollSeconds ?? 2) * 1000,
    };
  }

  private ec2Service(): Promise<Ec2Service> {
    this.ec2 ??= import('./aws-ec2.js').then((m) => m.createEc2Service(this.context, this.clients.ec2));
    return this.ec2;
  }

  private s3Service(): Promise<S3Service> {
    this.s3 ??= import('./aws-s3.js').then((m) => m.createS3Service(this.context, this.clients.s3));
    return this.s3;
  }

  private ssmService(): Promise<SsmService> {
    this.ssm ??= import('./aws-ssm.js').then((m) => m.createSsmService(this.context, this.clients.ssm));
    return this.ssm;
  }

  private secretsService(): Promise<SecretsService> {
    this.secrets ??= import('./aws-secrets.js').then((m) => m.createSecretsService(this.context, this.clients.secrets));
    return this.secrets;
  }

  private iamService(): Promise<IamService> {
    this.iam ??= import('./aws-iam.js').then((m) => m.createIamService(this.context, this.clients.iam));
    return this.iam;
  }

  async listFleetInstances(): Promise<FleetInstance[]> {
    return (await this.ec2Service()).listFleetInstances();
  }

  async describeInstance(instanceId: string): Promise<FleetInstance> {
    return (await this.ec2Service()).describeInstance(instanceId);
  }

  async terminateInstance(instanceId: string): Promise<{ instanceId: string; state: InstanceState }> {
    return (await this.ec2Service()).terminateInstance(instanceId);
  }

  async waitForInstance(
    instanceId: string,
    state: 'running' | 'terminated',
    options: { timeoutSeconds: number },
  ): Promise<FleetInstance> {
    return (await this.ec2Service()).waitForInstance(instanceId, state, options);
  }

  async findLatestAmi(): Promise<AmiInfo | null> {
    return (await this.ec2Service()).findLatestAmi();
  }

  async describeImage(imageId: string): Promise<AmiInfo> {
    return (await this.ec2Service()).describeImage(imageId);
  }

  async listAmis(): Promise<AmiInfo[]> {
    return (await this.ec2Service()).listAmis();
  }

  async deregisterAmi(imageId: string): Promise<DeregisterResult> {
    return (await this.ec2Service()).deregisterAmi(imageId);
  }

  async importSnapshot(input: ImportSnapshotInput): Promise<{ importTaskId: string }> {
    return (await this.ec2Service()).importSnapshot(input);
  }

  async describeImportSnapshot(importTaskId: string): Promise<ImportTask> {
    return (await this.ec2Service()).describeImportSnapshot(importTaskId);
  }

  async registerImage(input: RegisterImageInput): Promise<{ imageId: string }> {
    return (await this.ec2Service()).registerImage(input);
  }

  async tagResources(resourceIds: string[], tags: Tags): Promise<void> {
    return (await this.ec2Service()).tagResources(resourceIds, tags);
  }

  async waitForImageAvailable(imageId: string, options: { timeoutSeconds: number }): Promise<AmiInfo> {
    return (await this.ec2Service()).waitForImageAvailable(imageId, options);
  }

  async uploadFile(
    bucket: string,
    key: string,
    path: string,
    options?: { onProgress?: (progress: UploadProgress) => void },
  ): Promise<UploadResult> {
    return (await this.s3Service()).uploadFile(bucket, key, path, options);
  }

  async downloadFile(bucket: string, key: string, path: string): Promise<DownloadResult> {
    return (await this.s3Service()).downloadFile(bucket, key, path);
  }

  async putJson(bucket: string, key: string, value: unknown): Promise<void> {
    return (await this.s3Service()).putJson(bucket, key, value);
  }

  async getJson(bucket: string, key: string): Promise<unknown> {
    return (await this.s3Service()).getJson(bucket, key);
  }

  async putBytes(bucket: string, key: string, body: Buffer, options?: { contentType?: string }): Promise<UploadResult> {
    return (await this.s3Service()).putBytes(bucket, key, body, options);
  }

  async getBytes(bucket: string, key: string): Promise<Buffer | null> {
    return (await this.s3Service()).getBytes(bucket, key);
  }

  async copyObject(bucket: string, sourceKey: string, key: string): Promise<ObjectInfo> {
    return (await this.s3Service()).copyObject(bucket, sourceKey, key);
  }

  async deleteKeys(bucket: string, keys: string[]): Promise<number> {
    return (await this.s3Service()).deleteKeys(bucket, keys);
  }

  async listKeys(bucket: string, prefix: string): Promise<string[]> {
    return (await this.s3Service()).listKeys(bucket, prefix);
  }

  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    return (await this.s3Service()).deletePrefix(bucket, prefix);
  }

  async headObject(bucket: string, key: string): Promise<ObjectInfo | null> {
    return (await this.s3Service()).headObject(bucket, key);
  }

  async createBucketIfMissing(bucket: string, options: BucketOptions): Promise<boolean> {
    return (await this.s3Service()).createBucketIfMissing(bucket, options);
  }

  async sendCommand(instanceIds: string[], command: CommandRequest, options: SendCommandOptions): Promise<string> {
    return (await this.ssmService()).sendCommand(instanceIds, command, options);
  }

  async waitForInvocation(
    commandId: string,
    instanceId: string,
    options: { timeoutSeconds: number },
  ): Promise<InvocationResult> {
    return (await this.ssmService()).waitForInvocation(commandId, instanceId, options);
  }

  async pingStatus(instanceIds: string[]): Promise<Map<string, PingStatus>> {
    return (await this.ssmService()).pingStatus(instanceIds);
  }

  async getSecrets(names: string[]): Promise<Map<string, string>> {
    return (await this.secretsService()).getSecrets(names);
  }

  async secretExists(name: string): Promise<boolean> {
    return (await this.secretsService()).secretExists(name);
  }

  async putSecret(name: string, value: string, options: { clientToken: string }): Promise<void> {
    return (await this.secretsService()).putSecret(name, value, options);
  }

  async deleteSecret(name: string): Promise<void> {
    return (await this.secretsService()).deleteSecret(name);
  }

  async roleExists(name: string): Promise<boolean> {
    return (await this.iamService()).roleExists(name);
  }

  async instanceProfileExists(name: string): Promise<boolean> {
    return (await this.iamService()).instanceProfileExists(name);
  }
}

/** Renew this long before the temporary credentials expire, so no call signs with stale ones. */
const REFRESH_MARGIN_MS = 5 * 60 * 1000;

/**
 * A credential provider for the SDK clients: AssumeRole once, reuse until close to expiry.
 * Concurrent first calls share one AssumeRole.
 */
function assumedRoleCredentials(roleArn: string, sts: () => Promise<StsService>): () => Promise<AwsCredentials> {
  let cached: AwsCredentials | undefined;
  let inFlight: Promise<AwsCredentials> | undefined;
  return async () => {
    // Real time on purpose: expiry is AWS's clock, not a simulated one.
    if (cached?.expiration !== undefined && cached.expiration.getTime() - Date.now() > REFRESH_MARGIN_MS) return cached;
    inFlight ??= sts()
      .then((service) => service.assumeRole(roleArn))
      .finally(() => {
        inFlight = undefined;
      });
    cached = await inFlight;
    return cached;
  };
}
