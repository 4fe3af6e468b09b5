// Every failure of the cloud layer, from AWS or from the simulated cloud, becomes one
// CloudError whose message is one line: the AWS operation, the resource, what went wrong and
// the AWS error code, e.g. "DescribeImages ami-123: not found (InvalidAMIID.NotFound)". Never
// the request id (kept as a property for AWS support), never a secret value: for Secrets
// Manager calls the AWS message is left out altogether, since validation messages can echo
// input. Jobs branch on `kind` and `retryable`, not on AWS codes.
import { OperationError } from '../../lib/errors.js';

export type CloudErrorKind =
  | 'not-found'
  | 'access-denied'
  | 'throttled'
  | 'conflict'
  | 'invalid'
  | 'unavailable'
  | 'timeout'
  | 'failed';

export interface CloudErrorInit {
  /** The AWS API operation, e.g. `DescribeImages`. */
  operation: string;
  /** What it was about: an id, `s3://bucket/key`, a secret name; '' when none. */
  resource: string;
  /** The AWS error code (`InvalidAMIID.NotFound`) or one of ours (`WaiterTimeout`). */
  code: string;
  /** The part after the colon; defaults to a phrase for the kind. */
  detail?: string;
  kind?: CloudErrorKind;
  retryable?: boolean;
  requestId?: string;
  httpStatus?: number;
}

export class CloudError extends OperationError {
  readonly operation: string;
  readonly resource: string;
  readonly code: string;
  readonly kind: CloudErrorKind;
  /** Trying again later may succeed (throttling, a 5xx, a network error, a timeout). */
  readonly retryable: boolean;
  readonly requestId: string | undefined;
  readonly httpStatus: number | undefined;

  constructor(init: CloudErrorInit) {
    const kind = init.kind ?? kindOfCode(init.code, init.httpStatus);
    const detail = init.detail ?? PHRASES[kind];
    const where = init.resource === '' ? init.operation : `${init.operation} ${init.resource}`;
    super(`${where}: ${detail} (${init.code})`);
    this.operation = init.operation;
    this.resource = init.resource;
    this.code = init.code;
    this.kind = kind;
    this.retryable = init.retryable ?? (kind === 'throttled' || kind === 'unavailable' || kind === 'timeout');
    this.requestId = init.requestId;
    this.httpStatus = init.httpStatus;
  }
}

const PHRASES: Record<CloudErrorKind, string> = {
  'not-found': 'not found',
  'access-denied': 'access denied',
  throttled: 'throttled by AWS, still after retrying',
  conflict: 'conflicts with what exists',
  invalid: 'invalid request',
  unavailable: 'AWS is unreachable or failing, still after retrying',
  timeout: 'timed out',
  failed: 'failed',
};

const NOT_FOUND =
  /(NotFound|NoSuchKey|NoSuchBucket|NoSuchUpload|NoSuchEntity|NoSuchEntityException|DoesNotExist|ResourceNotFoundException)$/;
const DENIED =
  /^(AccessDenied|AccessDeniedException|UnauthorizedOperation|AuthFailure|Forbidden|ExpiredToken|ExpiredTokenException|InvalidClientTokenId|SignatureDoesNotMatch|UnrecognizedClientException|CredentialsProviderError|OptInRequired)$/;
const THROTTLED =
  /^(Throttling|ThrottlingException|ThrottledException|RequestLimitExceeded|TooManyRequestsException|SlowDown|RequestThrottled|RequestThrottledException|EC2ThrottledException|LimitExceededException|BandwidthLimitExceeded|PriorRequestNotComplete)$/;
const CONFLICT =
  /(Duplicate|AlreadyExists|ResourceExistsException|IdempotentParameterMismatch|IncorrectState|IncorrectInstanceState|BucketAlreadyOwnedByYou)$/;
const UNAVAILABLE =
  /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|TimeoutError)$/;

export function kindOfCode(code: string, httpStatus?: number): CloudErrorKind {
  if (THROTTLED.test(code) || httpStatus === 429) return 'throttled';
  if (NOT_FOUND.test(code) || httpStatus === 404) return 'not-found';
  if (DENIED.test(code) || httpStatus === 403) return 'access-denied';
  if (CONFLICT.test(code) || httpStatus === 409) return 'conflict';
  if (UNAVAILABLE.test(code) || (httpStatus !== undefined && httpStatus >= 500)) return 'unavailable';
  if (/^(Invalid|Validation|Malformed|MissingParameter|UnsupportedOperation)/.test(code)) return 'invalid';
  return 'failed';
}

interface SdkErrorShape {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string; attempts?: number };
  $fault?: 'client' | 'server';
}

export interface MapOptions {
  /** Leave the AWS message out of the line (Secrets Manager: it may echo input). */
  quiet?: boolean;
}

/** Turns anything an AWS SDK call threw into a CloudError naming `operation` and `resource`. */
export function toCloudError(err: unknown, operation: string, resource: string, options: MapOptions = {}): CloudError {
  if (err instanceof CloudError) return err;
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as SdkErrorShape;
  const httpStatus = e.$metadata?.httpStatusCode;
  // Node network errors carry the errno in `code`; SDK service errors carry theirs in `name`.
  const networkCode = typeof e.code === 'string' && UNAVAILABLE.test(e.code) ? e.code : undefined;
  const code = networkCode ?? e.Code ?? (e.name && e.name !== 'Error' ? e.name : undefined) ?? 'UnknownError';
  const kind = kindOfCode(code, httpStatus);
  const message = cleanMessage(e.message ?? '');
  return new CloudError({
    operation,
    resource,
    code,
    kind,
    detail: detailFor(operation, code, kind, message, e.$metadata?.attempts, options.quiet === true),
    requestId: e.$metadata?.requestId,
    httpStatus,
  });
}

function detailFor(
  operation: string,
  code: string,
  kind: CloudErrorKind,
  message: string,
  attempts: number | undefined,
  quiet: boolean,
): string {
  // AWS answers a missing or unusable VM Import service role with a generic InvalidParameter.
  if (operation === 'ImportSnapshot' && /role/i.test(message)) {
    return 'role vmimport not found or not usable by VM Import';
  }
  if (operation === 'SendCommand' && code === 'InvalidInstanceId') {
    return 'instance not managed by SSM or not online';
  }
  if (code === 'CredentialsProviderError') return 'no AWS credentials found';
  const tries = attempts !== undefined && attempts > 1 ? ` after ${attempts} attempts` : '';
  if (kind === 'throttled') return `throttled by AWS${tries}`;
  if (kind === 'unavailable') return `AWS is unreachable or failing${tries}`;
  if (kind === 'not-found' || kind === 'access-denied') return PHRASES[kind];
  if (quiet || message === '' || message === code) return PHRASES[kind];
  return message;
}

const MAX_MESSAGE = 200;

/** First line of an AWS message, without request ids, capped in length. */
function cleanMessage(message: string): string {
  const line = (message.split('\n', 1)[0] ?? '')
    .replace(/\s*\(?\b(request[ -]?id|requestid)\b\s*[:=]?\s*[\w-]+\)?/gi, '')
    .trim();
  return line.length > MAX_MESSAGE ? `${line.slice(0, MAX_MESSAGE - 1)}…` : line;
}

/** An import task that ended `deleting`/`deleted`: its status message says why. */
export function importFailed(importTaskId: string, status: string, statusMessage: string): CloudError {
  return new CloudError({
    operation: 'ImportSnapshot',
    resource: importTaskId,
    code: `ImportTask.${status}`,
    kind: 'failed',
    retryable: false,
    detail: `failed: ${cleanMessage(statusMessage) || status || 'no status'}`,
  });
}

/** A wait that ran out of time; the thing may still get there. */
export function waitTimeout(operation: string, resource: string, wanted: string, seconds: number): CloudError {
  return new CloudError({
    operation,
    resource,
    code: 'WaiterTimeout',
    kind: 'timeout',
    detail: `not ${wanted} after ${seconds} s`,
  });
}

/** A wait that can no longer succeed, e.g. an instance terminated while waiting for running. */
export function waitFailed(operation: string, resource: string, state: string, wanted: string): CloudError {
  return new CloudError({
    operation,
    resource,
    code: 'WaiterFailure',
    kind: 'failed',
    retryable: false,
    detail: `is ${state}, will not become ${wanted}`,
  });
}
