// The sandbox's believable world: who is at the console, what the authorization policy says,
// what the fleet registry holds, and what the simulated cloud starts with. Discord ids are
// invented for the sandbox (a guild, its ops channel, an operator and a member role); they
// only have to be snowflakes, since the signed jobs and the worker's policy check them.
import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readFile, rm } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { type FleetRegistry, parseRegistry, type RegistryEntry } from '../../infra/registry.js';
import type { SimAmiSeed, SimInstanceSeed } from '../../jobs/cloud/sim.js';
import { generateOrg, type SimOrg } from '../../jobs/github/sim.js';
import { generateSigningKeyPair } from '../../jobs/signing.js';
import type { Actor } from '../../lib/actor.js';
import type { AuthorizationPolicy } from '../../lib/authorize.js';
import { UsageError } from '../../lib/errors.js';

export const SANDBOX_GUILD = '910000000000000001';
export const SANDBOX_OPS_CHANNEL = '920000000000000001';
export const SANDBOX_OPERATOR_ROLE = '930000000000000001';
export const SANDBOX_MEMBER_ROLE = '930000000000000002';
export const SANDBOX_OPERATOR_USER = '940000000000000001';

/** The fleet's first member, online from the start. */
export const FIRST_HOST = 'clawdinator-1';
/** Discord token secrets exist for clawdinator-1 … clawdinator-5: the token pool is the fleet's size. */
export const TOKEN_POOL = 5;
/** The image every seeded host runs; a hex AMI id as the registry's schema wants. */
export const SANDBOX_AMI = 'ami-0c1a3d5a4d0b0e001';
export const SANDBOX_AMI_NAME = 'clawdinator-nixos-sandbox';
/** The base stack's bucket in the sandbox: images and bootstrap bundles. */
export const SANDBOX_BUCKET = 'clawdinator-sandbox';
/** The GitHub organization the sandbox's simulated GitHub holds and syncs into the memory. */
export const SANDBOX_ORG = 'openclaw';
export const DEFAULT_INSTANCE_TYPE = 't3.large';
/** The project's repository as the sandbox pretends it: /rebuild-ami resolves revs among these refs. */
export const SANDBOX_REPO = 'sandbox/clawdinators';
export const SANDBOX_BRANCH = 'main';
export const SANDBOX_REFS = {
  main: '5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5',
  v1: '0ddba11c1a3d5a4d0b0e0010ddba11c1a3d5a4d0',
  // The commit the sandbox's starting image (SANDBOX_AMI) was built from.
  v0: '00c1a3d5a4d0b0e00100c1a3d5a4d0b0e0010000',
  // A commit whose hosts switch and pass their own check, but whose worker never reports
  // again: /deploy rev:broken shows the control plane's rollback.
  broken: 'b40ce0b40ce0b40ce0b40ce0b40ce0b40ce0b40c',
} as const;

/**
 * The secret files every simulated host holds (under /run/clawdinator-ops on a real one), and
 * journal lines that leaked them: /logs shows them redacted, as the host script does.
 */
export function sandboxHostSecrets(seed: string): { secrets: Record<string, string>; leaks: string[] } {
  const redis = `sandbox-redis-${seed}`;
  return {
    secrets: { 'redis-password': redis, 'discord-token': `sandbox-ops-bot-token-${seed}` },
    leaks: [
      `redis: AUTH ${redis} failed (WRONGPASS), retrying`,
      `github: fetched with Authorization: token ghs_${seed}${seed}sandboxsandbox`,
    ],
  };
}

export function tokenSecretName(name: string): string {
  return `clawdinator/discord-token/${name}`;
}

/**
 * Operators (the console user) may do everything in the ops channel; members may read the
 * memory and see the status anywhere in the guild, and nothing else, so `--as` shows refusals.
 */
export const sandboxPolicy: AuthorizationPolicy = {
  '*': { guilds: [SANDBOX_GUILD], channels: [SANDBOX_OPS_CHANNEL], roles: [SANDBOX_OPERATOR_ROLE], users: [] },
  'memory read': { guilds: [SANDBOX_GUILD], roles: [SANDBOX_OPERATOR_ROLE, SANDBOX_MEMBER_ROLE], users: [] },
  'memory list': { guilds: [SANDBOX_GUILD], roles: [SANDBOX_OPERATOR_ROLE, SANDBOX_MEMBER_ROLE], users: [] },
  status: { guilds: [SANDBOX_GUILD], roles: [SANDBOX_OPERATOR_ROLE, SANDBOX_MEMBER_ROLE], users: [] },
};

function consoleUserName(): string {
  try {
    const name = userInfo()
      .username.replace(/[^A-Za-z0-9_.-]/g, '')
      .slice(0, 32);
    return name === '' ? 'operator' : name;
  } catch {
    return 'operator';
  }
}

/** The person at the console: an operator, allowed everything. */
export function operatorActor(): Actor {
  return {
    userId: SANDBOX_OPERATOR_USER,
    userName: consoleUserName(),
    roles: [SANDBOX_OPERATOR_ROLE],
    guildId: SANDBOX_GUILD,
    channelId: SANDBOX_OPS_CHANNEL,
  };
}

/**
 * `--as <user id or name>`: another member of the guild, without the operator role. A name
 * gets a stable invented id, so its audit lines stay comparable across runs.
 */
export function memberActor(who: string): Actor {
  const id = who.trim();
  if (/^\d{17,20}$/.test(id)) {
    return {
      userId: id,
      userName: `user-${id.slice(-4)}`,
      roles: [SANDBOX_MEMBER_ROLE],
      guildId: SANDBOX_GUILD,
      channelId: SANDBOX_OPS_CHANNEL,
    };
  }
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(id)) {
    throw new UsageError(
      `--as: expected a Discord user id (17–20 digits) or a name (letters, digits, _ . -), got "${who}"`,
    );
  }
  const digits = BigInt(`0x${createHash('sha256').update(id).digest('hex').slice(0, 12)}`) % 10n ** 14n;
  return {
    userId: `950${digits.toString().padStart(15, '0')}`,
    userName: id,
    roles: [SANDBOX_MEMBER_ROLE],
    guildId: SANDBOX_GUILD,
    channelId: SANDBOX_OPS_CHANNEL,
  };
}

export function registryEntry(name: string, ami = SANDBOX_AMI): RegistryEntry {
  return {
    host: name,
    instanceType: DEFAULT_INSTANCE_TYPE,
    bootstrapPrefix: `bootstrap/${name}`,
    discordTokenSecret: tokenSecretName(name),
    ami,
  };
}

/**
 * The registry under the sandbox directory: made with `clawdinator-1` on the first start,
 * kept (with whatever the jobs changed) on later ones, since the directory is the user's.
 */
export async function ensureRegistry(path: string): Promise<FleetRegistry> {
  const initial: FleetRegistry = { [FIRST_HOST]: registryEntry(FIRST_HOST) };
  const created = await createExclusive(path, `${JSON.stringify(initial, null, 2)}\n`, 0o644);
  if (created) return initial;
  let data: unknown;
  try {
    data = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    throw new UsageError(`fleet registry ${path} is not valid JSON (move it away to start a fresh sandbox world)`);
  }
  return parseRegistry(data, path);
}

export interface CloudSeed {
  secrets: Record<string, string>;
  amis: SimAmiSeed[];
  fleet: SimInstanceSeed[];
  buckets: string[];
}

/**
 * What the simulated cloud holds at start: the token pool's secrets (and any registry
 * member's), the sandbox image (and any other image the registry records), and every
 * registry member running and online — the cloud is new at each start, the registry is not.
 */
export function cloudSeed(registry: FleetRegistry): CloudSeed {
  const secrets: Record<string, string> = {};
  for (let n = 1; n <= TOKEN_POOL; n++) {
    secrets[tokenSecretName(`clawdinator-${n}`)] = `sandbox-discord-token-${n}`;
  }
  for (const [name, entry] of Object.entries(registry)) {
    secrets[entry.discordTokenSecret] ??= `sandbox-discord-token-${name}`;
  }
  const amiIds = new Set([SANDBOX_AMI, ...Object.values(registry).flatMap((e) => (e.ami ? [e.ami] : []))]);
  const amis: SimAmiSeed[] = [...amiIds]
    .filter((id) => id !== SANDBOX_AMI)
    .map((imageId) => ({ name: `clawdinator-nixos-${imageId.slice(4, 12)}`, imageId }));
  // The sandbox image last: seeded images are hours old, the last one the newest.
  amis.push({ name: SANDBOX_AMI_NAME, imageId: SANDBOX_AMI, tags: { 'clawdinator:revision': SANDBOX_REFS.v0 } });
  const fleet = Object.entries(registry).map(([name, entry]) => ({
    name,
    instanceType: entry.instanceType,
    imageId: entry.ami ?? SANDBOX_AMI,
  }));
  return { secrets, amis, fleet, buckets: [SANDBOX_BUCKET] };
}

export interface SandboxKeys {
  gateway: { privateKeyPem: string; publicKeyPem: string; path: string };
  schedule: { privateKeyPem: string; publicKeyPem: string; path: string };
}

/** Fresh Ed25519 keys for the gateway and the schedules at each start, in `<dir>/keys/` (0600). */
export async function writeSigningKeys(dir: string): Promise<SandboxKeys> {
  const keysDir = join(dir, 'keys');
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  await chmod(keysDir, 0o700);
  const out: Partial<SandboxKeys> = {};
  for (const id of ['gateway', 'schedule'] as const) {
    const pair = generateSigningKeyPair();
    const path = join(keysDir, `${id}.pem`);
    // Replaced, never rewritten in place: the new file is created 0600 before any byte is in it.
    await rm(path, { force: true });
    await createExclusive(path, pair.privateKeyPem, 0o600);
    out[id] = { ...pair, path };
  }
  return out as SandboxKeys;
}

async function createExclusive(path: string, content: string, mode: number): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
  return true;
}

/** The sandbox's simulated org: a dozen repositories, a few open pull requests and issues, one archived. */
export function sandboxOrg(): SimOrg {
  return generateOrg({ login: SANDBOX_ORG, repos: 12, pullRequests: 6, issues: 9, archived: 1 });
}
