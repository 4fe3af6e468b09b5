// The simulated cloud's call recorder: every API call AWS would have received, with what IAM
// would have been asked to authorize for it — the action, the resource ARN and the condition
// keys a policy can read (request and resource tags, the S3 prefix, the passed role's
// service). The IAM test replays these against the synthesized policies of the principal that
// made each call (`@cloud-copilot/iam-simulate`), and the bench and scale tests read the
// counts. One call may need several authorizations, as on AWS: BatchGetSecretValue needs
// `secretsmanager:BatchGetSecretValue` on `*` and `GetSecretValue` on each secret; a
// CopyObject reads one object and writes another.
import { createHash } from 'node:crypto';

export type SimService = 'ec2' | 's3' | 'ssm' | 'secrets' | 'iam';

/** What IAM evaluates for one action of a call. */
export interface AuthRequest {
  /** `ec2:RunInstances`, `s3:PutObject`, … */
  action: string;
  /** The resource ARN, or `*` for actions that take no resource. */
  resource: string;
  /** Condition keys and their values (`aws:RequestTag/Name`, `s3:prefix`, …). */
  context: Record<string, string | string[]>;
}

export interface SimCallRecord {
  seq: number;
  /** The sim clock's time of the call. */
  at: number;
  /** Who made it: `deployer` (jobs), `instance:<name>` (a host's own role), … */
  principal: string;
  service: SimService;
  /** The AWS API operation, e.g. `DescribeInstances`. */
  operation: string;
  requests: AuthRequest[];
  /** The AWS error code the call failed with: an injected fault or an IAM denial. */
  error?: string;
}

export interface SimCalls {
  ec2: number;
  s3: number;
  ssm: number;
  secrets: number;
  iam: number;
  /** Per AWS operation, e.g. `DescribeInstances`, `RunInstances`. */
  byOperation: Record<string, number>;
}

export function emptyCalls(): SimCalls {
  return { ec2: 0, s3: 0, ssm: 0, secrets: 0, iam: 0, byOperation: {} };
}

/**
 * Keeps the counts since the last reset and the most recent records (a sandbox runs for hours
 * and polls: the oldest records are dropped past `limit`, and `dropped` says how many).
 */
export class CallRecorder {
  calls: SimCalls = emptyCalls();
  private list: SimCallRecord[] = [];
  private seq = 0;
  dropped = 0;

  constructor(private readonly limit = 100_000) {}

  add(record: Omit<SimCallRecord, 'seq'>): SimCallRecord {
    const full = { ...record, seq: ++this.seq };
    this.calls[record.service]++;
    this.calls.byOperation[record.operation] = (this.calls.byOperation[record.operation] ?? 0) + 1;
    this.list.push(full);
    if (this.list.length > this.limit) {
      const over = this.list.length - this.limit;
      this.list.splice(0, over);
      this.dropped += over;
    }
    return full;
  }

  /** Records kept, oldest first (copies: a test may hold them while the sim goes on). */
  records(): SimCallRecord[] {
    return this.list.map((r) => ({ ...r, requests: r.requests.map((q) => ({ ...q, context: { ...q.context } })) }));
  }

  reset(): void {
    this.calls = emptyCalls();
    this.list = [];
    this.dropped = 0;
  }
}

/** ARNs as AWS forms them, for the account and region the simulated cloud pretends to be. */
export class Arns {
  constructor(
    readonly account: string,
    readonly region: string,
  ) {}

  instance(id: string): string {
    return `arn:aws:ec2:${this.region}:${this.account}:instance/${id}`;
  }
  /** Images and snapshots have no account in their ARN. */
  image(id: string): string {
    return `arn:aws:ec2:${this.region}::image/${id}`;
  }
  snapshot(id: string): string {
    return `arn:aws:ec2:${this.region}::snapshot/${id}`;
  }
  importSnapshotTask(id: string): string {
    return `arn:aws:ec2:${this.region}:${this.account}:import-snapshot-task/${id}`;
  }
  role(name: string): string {
    return `arn:aws:iam::${this.account}:role/${name}`;
  }
  bucket(bucket: string): string {
    return `arn:aws:s3:::${bucket}`;
  }
  object(bucket: string, key: string): string {
    return `arn:aws:s3:::${bucket}/${key}`;
  }
  /** Secrets Manager appends six random characters; here a stable function of the name. */
  secret(name: string): string {
    const suffix = createHash('sha256').update(name).digest('base64url').replace(/[-_]/g, 'x').slice(0, 6);
    return `arn:aws:secretsmanager:${this.region}:${this.account}:secret:${name}-${suffix}`;
  }
  document(name: string): string {
    // AWS-owned documents have no account in their ARN.
    return name.startsWith('AWS-')
      ? `arn:aws:ssm:${this.region}::document/${name}`
      : `arn:aws:ssm:${this.region}:${this.account}:document/${name}`;
  }
}

/** Condition keys of tags a request sets on a new resource. */
export function requestTagContext(tags: Record<string, string>): Record<string, string | string[]> {
  const context: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(tags)) context[`aws:RequestTag/${key}`] = value;
  if (Object.keys(tags).length > 0) context['aws:TagKeys'] = Object.keys(tags);
  return context;
}

/** Condition keys of the tags an existing resource carries (EC2 has its own prefix too). */
export function resourceTagContext(tags: Record<string, string>, ec2 = false): Record<string, string | string[]> {
  const context: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(tags)) {
    context[`aws:ResourceTag/${key}`] = value;
    if (ec2) context[`ec2:ResourceTag/${key}`] = value;
  }
  return context;
}
