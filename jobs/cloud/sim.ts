// The simulated cloud: the same Cloud interface as the AWS adapter, in memory, for the sandbox
// and tests. Laid out as the adapter is, a file per service — sim-ec2.ts (instances, images,
// VM import), sim-s3.ts, sim-ssm.ts, sim-secrets.ts, sim-iam.ts — over one shared core (sim-core.ts:
// clock, ids, the call recorder of sim-calls.ts and the fault registry of sim-faults.ts).
// This file puts them behind the Cloud interface and adds the sim-only controls.
//
// Nothing runs in the background: every state is computed from the clock, so a manual clock
// makes an hour-long import a single `advance()`. It answers like AWS where a job could tell
// the difference (the same error codes and one-line CloudError messages), records every call
// with the IAM authorizations it needs (action, resource ARN, condition keys) and who made it,
// and fails calls on demand: `faults.arm('ssm', { times: 2 })`, or an IAM authorizer that
// denies what a policy would.
import type { Clock } from './clock.js';
import type { SimCallRecord, SimCalls } from './sim-calls.js';
import { type SimAuthorizer, SimCore, type SimTimings } from './sim-core.js';
import { type SimAmiSeed, SimEc2, type SimHost, type SimInstanceSeed, type SimLaunchInput } from './sim-ec2.js';
import type { Fault, FaultRegistry } from './sim-faults.js';
import { SimHosts, type SimHostsOptions, type SimSwitchEvent } from './sim-hosts.js';
import { SimIam } from './sim-iam.js';
import { SimS3 } from './sim-s3.js';
import { SimSecrets } from './sim-secrets.js';
import { type SimCommandHandler, SimSsm } from './sim-ssm.js';
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

export type { AuthRequest, SimCallRecord, SimCalls } from './sim-calls.js';
export { defaultSimTimings, instantSimTimings, type SimAuthorizer, type SimTimings } from './sim-core.js';
export type { SimAmiSeed, SimHost, SimInstanceSeed, SimLaunchInput } from './sim-ec2.js';
export { BUILTIN_FAULTS, type Fault, FaultRegistry } from './sim-faults.js';
export { SIM_BASE_REVISION, type SimHostsOptions, type SimSwitchEvent } from './sim-hosts.js';
export type { SimCommandHandler, SimCommandResult, SimCommandRun } from './sim-ssm.js';

/** Who makes the calls unless a view says otherwise: the jobs, with the deployer role. */
export const DEPLOYER_PRINCIPAL = 'deployer';

export interface SimCloudOptions {
  /** Default: the real clock. A ManualClock for tests, a scaledClock for the sandbox. */
  clock?: Clock;
  timings?: Partial<SimTimings>;
  /** The account and region in the ARNs the recorder keeps. */
  account?: string;
  region?: string;
  /** Secrets that exist, name → value. */
  secrets?: Record<string, string>;
  /** Available images of ours. */
  amis?: SimAmiSeed[];
  /** Instances running, with their agent online, from the start. */
  fleet?: SimInstanceSeed[];
  buckets?: string[];
  /** Every import task fails halfway with this status message. */
  failImportWith?: string;
  /** Default: every command succeeds with no output. */
  commandHandler?: SimCommandHandler;
  /** Decides each authorization of each call (the IAM test); default: all allowed. */
  authorize?: SimAuthorizer;
  /** The hosts' revisions, broken revisions, secret files and journals (sim-hosts.ts). */
  hosts?: SimHostsOptions;
}

export interface SimCloud extends Cloud {
  readonly clock: Clock;
  /** API calls AWS would have received since creation or the last resetCalls(). */
  readonly calls: SimCalls;
  /** The recent calls, each with its principal, operation and the IAM requests it needs. */
  records(): SimCallRecord[];
  resetCalls(): void;
  /** "The next N times this happens, it fails": named faults or AWS operation names. */
  readonly faults: FaultRegistry;
  /**
   * `faults.take` as a call (the simulated deployer's plan and apply ask it), so a worker
   * process reaching this cloud over a wire (tests) asks the same registry.
   */
  takeFault(...targets: string[]): Promise<Fault | undefined>;
  /** The same cloud, its calls made (and recorded, and authorized) as another principal. */
  actingAs(principal: string): SimCloud;
  /** Replaces (or with null, removes) the IAM authorizer. */
  setAuthorizer(authorize: SimAuthorizer | null): void;
  /** What terraform does on AWS: a new instance, `pending` now. Returns its id. */
  launchInstance(input: SimLaunchInput): Promise<string>;
  /** What terraform does for a member's role: CreateRole (EntityAlreadyExists if it exists), its policies. */
  createRole(name: string, policyName: string): Promise<void>;
  /** What terraform does for a member's instance profile, with its role. */
  createInstanceProfile(name: string, role: string): Promise<void>;
  deleteRole(name: string): Promise<void>;
  deleteInstanceProfile(name: string): Promise<void>;
  /**
   * Called for every host online now and each one that comes online later (the sandbox writes
   * its heartbeat); returns an unsubscribe. Listeners must not throw.
   */
  onHostOnline(listener: (host: SimHost) => void): () => void;
  /** Called when an online host starts shutting down; returns an unsubscribe. */
  onHostOffline(listener: (host: SimHost) => void): () => void;
  /** Called when a host's switch ends (the sandbox restarts its heartbeat); returns an unsubscribe. */
  onHostSwitched(listener: (event: SimSwitchEvent) => void): () => void;
  /** The revision a host runs and since when (what its worker's heartbeat reports). */
  hostRevision(host: SimHost): { revision: string; switchedAt: number };
  setCommandHandler(handler: SimCommandHandler): void;
  /** The commands delivered to hosts so far: host name, document, parameters (one value each). */
  sentCommands(): { host: string; instanceId: string; document: string; parameters: Record<string, string> }[];
  /** Forces (or with null, stops forcing) an instance's SSM ping status: a host gone silent. */
  setPingStatus(instanceId: string, status: PingStatus | null): void;
  /** The next call of `operation` (e.g. `TerminateInstances`) fails with this AWS error code. */
  failNext(operation: string, code: string): void;
  /** Cancels the scheduled host events (a sim on the real clock otherwise keeps its timers). */
  close(): void;
}

export function createSimCloud(options: SimCloudOptions = {}): SimCloud {
  const core = new SimCore(options);
  const s3 = new SimS3(core, options.buckets ?? []);
  const ec2 = new SimEc2(core, s3, options.failImportWith ?? null, options);
  const hosts = new SimHosts(core, (imageId) => ec2.imageTags(imageId)?.['clawdinator:revision'], options.hosts);
  const ssm = new SimSsm(core, ec2, hosts, options.commandHandler);
  const secrets = new SimSecrets(core, options.secrets ?? {});
  const iam = new SimIam(
    core,
    (options.fleet ?? []).map((seed) => seed.name),
  );
  return new Sim({ core, ec2, s3, ssm, secrets, iam, hosts }, DEPLOYER_PRINCIPAL);
}

interface Services {
  core: SimCore;
  ec2: SimEc2;
  s3: SimS3;
  ssm: SimSsm;
  secrets: SimSecrets;
  hosts: SimHosts;
  iam: SimIam;
}

class Sim implements SimCloud {
  constructor(
    private readonly s: Services,
    private readonly principal: string,
  ) {}

  // ── sim-only controls ────────────────────────────────────────────────────────────────

  get clock(): Clock {
    return this.s.core.clock;
  }

  get calls(): SimCalls {
    return this.s.core.recorder.calls;
  }

  get faults(): FaultRegistry {
    return this.s.core.faults;
  }

  records(): SimCallRecord[] {
    return this.s.core.recorder.records();
  }

  async takeFault(...targets: string[]): Promise<Fault | undefined> {
    return this.s.core.faults.take(...targets);
  }

  resetCalls(): void {
    this.s.core.recorder.reset();
  }

  actingAs(principal: string): SimCloud {
    return new Sim(this.s, principal);
  }

  setAuthorizer(authorize: SimAuthorizer | null): void {
    this.s.core.authorize = authorize;
  }

  launchInstance(input: SimLaunchInput): Promise<string> {
    return this.s.ec2.launchInstance(this.principal, input);
  }

  createRole(name: string, policyName: string): Promise<void> {
    return this.s.iam.createRole(this.principal, name, policyName);
  }

  createInstanceProfile(name: string, role: string): Promise<void> {
    return this.s.iam.createInstanceProfile(this.principal, name, role);
  }

  deleteRole(name: string): Promise<void> {
    return this.s.iam.deleteRole(this.principal, name);
  }

  deleteInstanceProfile(name: string): Promise<void> {
    return this.s.iam.deleteInstanceProfile(this.principal, name);
  }

  onHostOnline(listener: (host: SimHost) => void): () => void {
    return this.s.ec2.onHostOnline(listener);
  }

  onHostOffline(listener: (host: SimHost) => void): () => void {
    return this.s.ec2.onHostOffline(listener);
  }

  onHostSwitched(listener: (event: SimSwitchEvent) => void): () => void {
    return this.s.hosts.onSwitched(listener);
  }

  hostRevision(host: SimHost): { revision: string; switchedAt: number } {
    return this.s.hosts.revisionOf(host);
  }

  setCommandHandler(handler: SimCommandHandler): void {
    this.s.ssm.commandHandler = handler;
  }

  sentCommands(): { host: string; instanceId: string; document: string; parameters: Record<string, string> }[] {
    return this.s.ssm.sent.map((run) => ({
      host: run.host.name,
      instanceId: run.host.instanceId,
      document: run.document,
      parameters: Object.fromEntries(Object.entries(run.parameters).map(([k, v]) => [k, v[0] ?? ''])),
    }));
  }

  setPingStatus(instanceId: string, status: PingStatus | null): void {
    this.s.ec2.instance(instanceId, 'DescribeInstanceInformation').ping = status;
  }

  failNext(operation: string, code: string): void {
    this.s.core.faults.arm(operation, { code });
  }

  close(): void {
    this.s.ec2.close();
    this.s.hosts.close();
  }

  // ── EC2 ──────────────────────────────────────────────────────────────────────────────

  listFleetInstances(): Promise<FleetInstance[]> {
    return this.s.ec2.listFleetInstances(this.principal);
  }
  describeInstance(instanceId: string): Promise<FleetInstance> {
    return this.s.ec2.describeInstance(this.principal, instanceId);
  }
  terminateInstance(instanceId: string): Promise<{ instanceId: string; state: InstanceState }> {
    return this.s.ec2.terminateInstance(this.principal, instanceId);
  }
  waitForInstance(
    instanceId: string,
    state: 'running' | 'terminated',
    options: { timeoutSeconds: number },
  ): Promise<FleetInstance> {
    return this.s.ec2.waitForInstance(this.principal, instanceId, state, options);
  }
  findLatestAmi(): Promise<AmiInfo | null> {
    return this.s.ec2.findLatestAmi(this.principal);
  }
  describeImage(imageId: string): Promise<AmiInfo> {
    return this.s.ec2.describeImage(this.principal, imageId);
  }
  listAmis(): Promise<AmiInfo[]> {
    return this.s.ec2.listAmis(this.principal);
  }
  deregisterAmi(imageId: string): Promise<DeregisterResult> {
    return this.s.ec2.deregisterAmi(this.principal, imageId);
  }
  importSnapshot(input: ImportSnapshotInput): Promise<{ importTaskId: string }> {
    return this.s.ec2.importSnapshot(this.principal, input);
  }
  describeImportSnapshot(importTaskId: string): Promise<ImportTask> {
    return this.s.ec2.describeImportSnapshot(this.principal, importTaskId);
  }
  registerImage(input: RegisterImageInput): Promise<{ imageId: string }> {
    return this.s.ec2.registerImage(this.principal, input);
  }
  tagResources(resourceIds: string[], tags: Tags): Promise<void> {
    return this.s.ec2.tagResources(this.principal, resourceIds, tags);
  }
  waitForImageAvailable(imageId: string, options: { timeoutSeconds: number }): Promise<AmiInfo> {
    return this.s.ec2.waitForImageAvailable(this.principal, imageId, options);
  }

  // ── S3 ───────────────────────────────────────────────────────────────────────────────

  uploadFile(
    bucket: string,
    key: string,
    path: string,
    options?: { onProgress?: (progress: UploadProgress) => void },
  ): Promise<UploadResult> {
    return this.s.s3.uploadFile(this.principal, bucket, key, path, options);
  }
  downloadFile(bucket: string, key: string, path: string): Promise<DownloadResult> {
    return this.s.s3.downloadFile(this.principal, bucket, key, path);
  }
  putJson(bucket: string, key: string, value: unknown): Promise<void> {
    return this.s.s3.putJson(this.principal, bucket, key, value);
  }
  getJson(bucket: string, key: string): Promise<unknown> {
    return this.s.s3.getJson(this.principal, bucket, key);
  }
  putBytes(bucket: string, key: string, body: Buffer, options?: { contentType?: string }): Promise<UploadResult> {
    return this.s.s3.putBytes(this.principal, bucket, key, body, options);
  }
  getBytes(bucket: string, key: string): Promise<Buffer | null> {
    return this.s.s3.getBytes(this.principal, bucket, key);
  }
  copyObject(bucket: string, sourceKey: string, key: string): Promise<ObjectInfo> {
    return this.s.s3.copyObject(this.principal, bucket, sourceKey, key);
  }
  deleteKeys(bucket: string, keys: string[]): Promise<number> {
    return this.s.s3.deleteKeys(this.principal, bucket, keys);
  }
  listKeys(bucket: string, prefix: string): Promise<string[]> {
    return this.s.s3.listKeys(this.principal, bucket, prefix);
  }
  deletePrefix(bucket: string, prefix: string): Promise<number> {
    return this.s.s3.deletePrefix(this.principal, bucket, prefix);
  }
  headObject(bucket: string, key: string): Promise<ObjectInfo | null> {
    return this.s.s3.headObject(this.principal, bucket, key);
  }
  createBucketIfMissing(bucket: string, options: BucketOptions): Promise<boolean> {
    return this.s.s3.createBucketIfMissing(this.principal, bucket, options);
  }

  // ── SSM ──────────────────────────────────────────────────────────────────────────────

  sendCommand(instanceIds: string[], command: CommandRequest, options: SendCommandOptions): Promise<string> {
    return this.s.ssm.sendCommand(this.principal, instanceIds, command, options);
  }
  waitForInvocation(
    commandId: string,
    instanceId: string,
    options: { timeoutSeconds: number },
  ): Promise<InvocationResult> {
    return this.s.ssm.waitForInvocation(this.principal, commandId, instanceId, options);
  }
  pingStatus(instanceIds: string[]): Promise<Map<string, PingStatus>> {
    return this.s.ssm.pingStatus(this.principal, instanceIds);
  }

  // ── Secrets Manager ──────────────────────────────────────────────────────────────────

  getSecrets(names: string[]): Promise<Map<string, string>> {
    return this.s.secrets.getSecrets(this.principal, names);
  }
  secretExists(name: string): Promise<boolean> {
    return this.s.secrets.secretExists(this.principal, name);
  }
  putSecret(name: string, value: string): Promise<void> {
    return this.s.secrets.putSecret(this.principal, name, value);
  }
  deleteSecret(name: string): Promise<void> {
    return this.s.secrets.deleteSecret(this.principal, name);
  }

  // ── IAM ──────────────────────────────────────────────────────────────────────────────

  roleExists(name: string): Promise<boolean> {
    return this.s.iam.roleExists(this.principal, name);
  }
  instanceProfileExists(name: string): Promise<boolean> {
    return this.s.iam.instanceProfileExists(this.principal, name);
  }
}
