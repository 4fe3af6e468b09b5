// Who this host is, for `clawdinator bootstrap`: the four lines user data writes to
// /var/lib/clawdinator/instance.env (infra/instance-stack.ts `userData()`), or, when that file
// is missing (user data can be missing on boot, as the original learned), the same lines read
// from the user data script itself through IMDSv2: PUT /latest/api/token, then GET
// /latest/user-data with the token. IMDSv1 (a GET without a token) is refused by our instances.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { instanceName } from '../../lib/config.js';
import { OperationError } from '../../lib/errors.js';

export interface InstanceIdentity {
  name: string;
  host: string;
  bucket: string;
  prefix: string;
}

const KEYS = {
  name: 'CLAWDINATOR_INSTANCE_NAME',
  host: 'CLAWDINATOR_HOST',
  bucket: 'CLAWDINATOR_BOOTSTRAP_BUCKET',
  prefix: 'CLAWDINATOR_BOOTSTRAP_PREFIX',
} as const;

const CHECKS: Record<keyof InstanceIdentity, (v: string) => boolean> = {
  name: (v) => instanceName.safeParse(v).success,
  host: (v) => /^[a-z0-9][a-z0-9-]{0,62}$/.test(v),
  bucket: (v) => /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v),
  prefix: (v) =>
    /^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$/.test(v) && !v.endsWith('/') && !v.includes('//') && !v.includes('..'),
};

/** The identity in `text` (instance.env, or the user data script that writes it). */
export function parseIdentity(text: string, source: string): InstanceIdentity {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(CLAWDINATOR_[A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) values.set(m[1], m[2].replace(/^(['"])(.*)\1$/, '$2'));
  }
  const out: Partial<InstanceIdentity> = {};
  for (const [field, key] of Object.entries(KEYS) as [keyof InstanceIdentity, string][]) {
    const value = values.get(key);
    if (value === undefined || value === '') throw new OperationError(`bootstrap: ${source} does not set ${key}`);
    if (!CHECKS[field](value)) throw new OperationError(`bootstrap: ${source} has an invalid ${key}`);
    out[field] = value;
  }
  return out as InstanceIdentity;
}

/** instance.env as user data writes it. */
export function formatIdentity(id: InstanceIdentity): string {
  return `${KEYS.name}=${id.name}\n${KEYS.host}=${id.host}\n${KEYS.bucket}=${id.bucket}\n${KEYS.prefix}=${id.prefix}\n`;
}

/** The file's identity, null when the file does not exist. */
export async function readInstanceEnv(path: string): Promise<InstanceIdentity | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw new OperationError(`bootstrap: cannot read ${path} (${code ?? 'unreadable'})`);
  }
  return parseIdentity(text, path);
}

/** Writes instance.env back (temp + rename), as user data would have. */
export async function writeInstanceEnv(path: string, id: InstanceIdentity): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const partial = `${path}.partial`;
  await writeFile(partial, formatIdentity(id), { mode: 0o644 });
  await rename(partial, path);
}

const TOKEN_TTL_SECONDS = 300;
const ATTEMPTS = 3;

/** The metadata service's base URL: the setting, else the SDK's standard variable, else EC2's. */
export function imdsEndpoint(setting: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const sdk = env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
  return setting ?? (sdk !== undefined && sdk !== '' ? sdk : 'http://169.254.169.254');
}

/** A minimal IMDSv2 client: a session token first, every read with it. Used by the bootstrap
 * (root) and the worker (the ops user: the only other user the host's firewall lets through). */
export class Imds {
  private token: string | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly options: { timeoutMs?: number; retryDelayMs?: number; label?: string } = {},
  ) {}

  /** Starts each error line: "bootstrap: " for the bootstrap's. */
  private get label(): string {
    return this.options.label === undefined ? '' : `${this.options.label}: `;
  }

  /** The user data script, null when the instance has none. */
  async userData(): Promise<string | null> {
    return this.get('/latest/user-data');
  }

  async region(): Promise<string> {
    const region = await this.get('/latest/meta-data/placement/region');
    if (region === null || !/^[a-z]{2}(-[a-z]+)+-\d$/.test(region.trim())) {
      throw new OperationError(`${this.label}IMDS ${this.baseUrl} gave no region`);
    }
    return region.trim();
  }

  /** This instance's id (i-…). */
  async instanceId(): Promise<string> {
    const id = await this.get('/latest/meta-data/instance-id');
    if (id === null || !/^i-[0-9a-f]{8,17}$/.test(id.trim())) {
      throw new OperationError(`${this.label}IMDS ${this.baseUrl} gave no instance id`);
    }
    return id.trim();
  }

  private async get(path: string): Promise<string | null> {
    const token = await this.sessionToken();
    const res = await this.request('GET', path, { 'x-aws-ec2-metadata-token': token });
    if (res.status === 404) return null;
    if (!res.ok) throw new OperationError(`${this.label}IMDS GET ${path}: HTTP ${res.status}`);
    return res.text();
  }

  private async sessionToken(): Promise<string> {
    if (this.token !== undefined) return this.token;
    const res = await this.request('PUT', '/latest/api/token', {
      'x-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_SECONDS),
    });
    if (!res.ok)
      throw new OperationError(`${this.label}IMDS ${this.baseUrl} gave no session token (HTTP ${res.status})`);
    this.token = (await res.text()).trim();
    return this.token;
  }

  /** One request; network errors and 5xx are tried again (IMDS can lag early in boot). */
  private async request(method: string, path: string, headers: Record<string, string>): Promise<Response> {
    const url = new URL(path, this.baseUrl);
    let last = '';
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      try {
        const res = await fetch(url, {
          method,
          headers,
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 2000),
        });
        if (res.status < 500) return res;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      }
      if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, (this.options.retryDelayMs ?? 1000) * attempt));
    }
    throw new OperationError(`${this.label}IMDS ${this.baseUrl} unreachable (${method} ${path}: ${last})`);
  }
}

/**
 * This host's identity: instance.env, else the user data from IMDS (and instance.env is
 * written back). Says which it used.
 */
export async function resolveIdentity(
  instanceEnvPath: string,
  imds: Imds,
): Promise<{ identity: InstanceIdentity; source: 'instance.env' | 'imds' }> {
  const fromFile = await readInstanceEnv(instanceEnvPath);
  if (fromFile !== null) return { identity: fromFile, source: 'instance.env' };
  const userData = await imds.userData();
  if (userData === null) {
    throw new OperationError(`bootstrap: ${instanceEnvPath} is missing and the instance has no user data`);
  }
  const identity = parseIdentity(userData, 'the user data from IMDS');
  await writeInstanceEnv(instanceEnvPath, identity);
  return { identity, source: 'imds' };
}
