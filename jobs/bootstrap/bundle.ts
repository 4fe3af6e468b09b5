// The per-instance bootstrap bundle under s3://<bucket>/<bootstrapPrefix>/ (bootstrap/<name>/),
// what `clawdinator bootstrap` installs on the host at boot (the original's
// upload-bootstrap.sh, without the secrets: the host fetches those itself, by name):
//
//   config.json          who the host is and what it joins: instance, host, region, bucket,
//                        prefix, EFS id, the fleet's Redis URL (never a password) and the
//                        *names* of the secrets it fetches, with where each goes
//   workspace/…          every file of the project's workspace/ templates
//   repo-seeds.tar.zst   the prepared repo seeds, when there are any: a server-side copy of
//                        s3://<bucket>/repo-seeds/repo-seeds.tar.zst (tar + zstd, as the original)
//   manifest.json        each file above with its SHA-256 and size; written last
//
// Checksummed, not content-addressed: a file whose SHA-256 equals the manifest's and the
// object's stored `sha256` is not sent again, so an unchanged bundle costs a GET and a HEAD per
// file. The manifest is written after every file it names and keys that left the bundle are
// removed after it, so a host never reads a manifest naming a missing file. A host that reads
// while a new bundle is going up can see a new file under the old manifest: its checksum check
// refuses that, and the next run installs the new bundle.

import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { z } from 'zod';
import { REDIS_AUTH_SECRET } from '../../infra/names.js';
import { directKeyFile } from '../../lib/agent-config.js';
import { instanceName } from '../../lib/config.js';
import { OperationError } from '../../lib/errors.js';
import { projectPath } from '../../lib/paths.js';
import type { Cloud } from '../cloud/types.js';

/** The agent's job-signing key, in the agent's secrets dir. */
export const AGENT_KEY_FILE = 'agent-key.pem';
/** Its public half, in the ops secrets dir: what the gateway checks the agent's requests with. */
export const AGENT_PUBLIC_KEY_FILE = 'agent-public-key.pem';

export const BUNDLE_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';
export const CONFIG_FILE = 'config.json';
export const REPO_SEEDS_FILE = 'repo-seeds.tar.zst';
/** Where prepared repo seeds live in the bucket (uploaded with their `sha256` metadata). */
export const REPO_SEEDS_SOURCE_KEY = `repo-seeds/${REPO_SEEDS_FILE}`;
export const WORKSPACE_DIR = 'workspace';

/**
 * Fleet-wide control-plane secrets a host fetches when they exist, into the ops secrets dir
 * under these file names (nix/units.json `opsSecrets` names the same files, and each unit the
 * ones it reads). `infra init` makes the Redis auth token and the two signing keys; the ops
 * bot token and the GitHub App key are the operator's to create.
 */
export const OPS_BOT_TOKEN_SECRET = 'clawdinator/fleet/ops-bot-token';
/** The gateway's signing key (key id `gateway`): only the gateway unit reads it. */
export const GATEWAY_KEY_SECRET = 'clawdinator/fleet/gateway-signing-key';
/** The workers' signing key (key id `schedule`): only the worker unit reads it. */
export const WORKERS_KEY_SECRET = 'clawdinator/fleet/workers-signing-key';
export const GITHUB_APP_KEY_SECRET = 'clawdinator/fleet/github-app-key';
/** The model providers' keys: only the model proxy's unit reads them (the agent never does). */
export const ANTHROPIC_KEY_SECRET = 'clawdinator/fleet/anthropic-api-key';
export const OPENAI_KEY_SECRET = 'clawdinator/fleet/openai-api-key';

/** Ops secrets: file name in the ops secrets dir → secret name. */
export const OPS_SECRET_FILES: Record<string, string> = {
  'redis-password': REDIS_AUTH_SECRET,
  'discord-token': OPS_BOT_TOKEN_SECRET,
  'gateway-signing-key.pem': GATEWAY_KEY_SECRET,
  'workers-signing-key.pem': WORKERS_KEY_SECRET,
  'github-app.pem': GITHUB_APP_KEY_SECRET,
  'anthropic-api-key': ANTHROPIC_KEY_SECRET,
  'openai-api-key': OPENAI_KEY_SECRET,
};

const secretFile = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/);
const bundleSecret = z
  .object({
    name: z.string().regex(/^clawdinator\/[A-Za-z0-9/_+=.@-]{1,500}$/),
    /** File name in the owner's secrets dir. */
    file: secretFile,
    /** `ops`: the control plane's dir (user clawdinator-ops); `agent`: the agent's own. */
    owner: z.enum(['ops', 'agent']),
    /** A missing required secret stops the bootstrap; a missing optional one is skipped. */
    required: z.boolean(),
  })
  .strict();
export type BundleSecret = z.output<typeof bundleSecret>;

const prefixSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$/)
  .refine((p) => !p.endsWith('/') && !p.includes('//') && !p.split('/').includes('..'));

/** A flake root can fetch by itself: github:<owner>/<repo>[/<rev>]. */
export const flakeRef = z
  .string()
  .regex(/^github:[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}(\/[A-Za-z0-9_.-]{1,100})?$/);

export const bundleConfigSchema = z
  .object({
    version: z.literal(BUNDLE_VERSION),
    // The one name rule (lib/config.ts): a 40-character name written at spawn must read back here.
    instance: instanceName,
    host: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    region: z.string().nullable(),
    bucket: z.string(),
    bootstrapPrefix: prefixSchema,
    efsId: z.string().nullable(),
    redisUrl: z.string().nullable(),
    secrets: z.array(bundleSecret),
    /** The flake the first boot switches to: this project at a pinned revision (github:owner/repo/rev). */
    flake: flakeRef.nullable().optional(),
  })
  .strict();
export type BundleConfig = z.output<typeof bundleConfigSchema>;

/** A path inside the bundle: config.json, repo-seeds.tar.zst or workspace/<relative path>. */
const bundlePath = z
  .string()
  .refine(
    (p) =>
      p === CONFIG_FILE ||
      p === REPO_SEEDS_FILE ||
      (/^workspace\/[A-Za-z0-9._@+-][A-Za-z0-9._@+/ -]{0,500}$/.test(p) &&
        !p.split('/').some((part) => part === '..' || part === '.' || part === '') &&
        !p.includes('\\')),
    'a bundle path (config.json, repo-seeds.tar.zst or workspace/…)',
  );

export const manifestSchema = z
  .object({
    version: z.literal(BUNDLE_VERSION),
    prefix: prefixSchema,
    files: z.array(
      z
        .object({
          path: bundlePath,
          sha256: z.string().regex(/^[0-9a-f]{64}$/),
          size: z.number().int().min(0),
        })
        .strict(),
    ),
  })
  .strict();
export type Manifest = z.output<typeof manifestSchema>;
export type ManifestFile = Manifest['files'][number];

export interface BundleInput {
  name: string;
  host: string;
  bootstrapPrefix: string;
  bucket: string;
  /** null: the host's own region. */
  region: string | null;
  efsId: string | null;
  /** The fleet's Redis as hosts reach it, without a password. */
  redisUrl: string | null;
  /** The flake the host's first boot switches to (null: its repo seeds' copy of this project). */
  flake?: string | null;
  /** Names only: the host's own Discord token and job-signing key. */
  secrets: { discordToken: string; agentKey: string };
  /**
   * Model keys the agent holds itself, for providers its runtime cannot reach through the
   * model proxy (CLAWDINATOR_AGENT_DIRECT_KEYS): provider → secret name. Each goes to the
   * agent's secrets dir as model-key-<provider>.
   */
  agentKeys?: Record<string, string>;
  /** Default: the project's workspace/ templates. */
  workspaceDir?: string;
}

export interface BundleResult {
  prefix: string;
  /** SHA-256 of manifest.json as stored: what the host's sentinel records. */
  manifestSha256: string;
  uploaded: string[];
  unchanged: string[];
  /** Keys under the prefix that left the bundle, deleted. */
  removed: string[];
}

/** The host's config.json: names of secrets, never values. */
export function bundleConfig(input: BundleInput): BundleConfig {
  return {
    version: BUNDLE_VERSION,
    instance: input.name,
    host: input.host,
    region: input.region,
    bucket: input.bucket,
    bootstrapPrefix: input.bootstrapPrefix,
    efsId: input.efsId,
    redisUrl: input.redisUrl,
    // Only when set: a bootstrap older than the field (an older image) reads the rest as before.
    ...(input.flake ? { flake: input.flake } : {}),
    secrets: [
      { name: input.secrets.discordToken, file: 'discord-token', owner: 'agent', required: true },
      { name: input.secrets.agentKey, file: AGENT_KEY_FILE, owner: 'agent', required: true },
      { name: REDIS_AUTH_SECRET, file: 'redis-password', owner: 'ops', required: true },
      { name: OPS_BOT_TOKEN_SECRET, file: 'discord-token', owner: 'ops', required: false },
      { name: GATEWAY_KEY_SECRET, file: 'gateway-signing-key.pem', owner: 'ops', required: false },
      { name: WORKERS_KEY_SECRET, file: 'workers-signing-key.pem', owner: 'ops', required: false },
      { name: GITHUB_APP_KEY_SECRET, file: 'github-app.pem', owner: 'ops', required: false },
      { name: ANTHROPIC_KEY_SECRET, file: 'anthropic-api-key', owner: 'ops', required: false },
      { name: OPENAI_KEY_SECRET, file: 'openai-api-key', owner: 'ops', required: false },
      ...Object.entries(input.agentKeys ?? {})
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([provider, name]) => ({
          name,
          file: directKeyFile(provider),
          owner: 'agent' as const,
          required: false,
        })),
    ],
  };
}

/** The stored form of JSON files in the bundle: stable, so equal content has equal bytes. */
export function jsonBytes(value: unknown): Buffer {
  return Buffer.from(`${JSON.stringify(value, null, 2)}\n`);
}

export function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

interface BundleFile extends ManifestFile {
  /** Bytes to put; absent for the seeds, which are copied server-side. */
  body?: Buffer;
}

/** Builds the member's bundle and uploads what changed; see the file comment. */
export async function uploadBundle(cloud: Cloud, input: BundleInput): Promise<BundleResult> {
  const { bucket, bootstrapPrefix: prefix } = input;
  const files = await bundleFiles(cloud, input);
  const key = (path: string) => `${prefix}/${path}`;
  const manifestKey = key(MANIFEST_FILE);
  const storedManifest = await cloud.getBytes(bucket, manifestKey);
  const previous = readManifest(storedManifest);

  const uploaded: string[] = [];
  const unchanged: string[] = [];
  for (const file of files) {
    const before = previous?.files.find((f) => f.path === file.path);
    if (before?.sha256 === file.sha256) {
      // The manifest says so, and the object there still carries that checksum.
      const head = await cloud.headObject(bucket, key(file.path));
      if (head !== null && head.sha256 === file.sha256 && head.size === file.size) {
        unchanged.push(file.path);
        continue;
      }
    }
    if (file.body !== undefined) {
      const contentType = file.path.endsWith('.json') ? 'application/json' : 'application/octet-stream';
      await cloud.putBytes(bucket, key(file.path), file.body, { contentType });
    } else {
      const copied = await cloud.copyObject(bucket, REPO_SEEDS_SOURCE_KEY, key(file.path));
      if (copied.sha256 !== file.sha256 || copied.size !== file.size) {
        throw new OperationError(
          `bundle: the copy of s3://${bucket}/${REPO_SEEDS_SOURCE_KEY} to ${key(file.path)} does not match it (the seeds changed meanwhile?): upload the bundle again`,
        );
      }
    }
    uploaded.push(file.path);
  }

  const manifest: Manifest = {
    version: BUNDLE_VERSION,
    prefix,
    files: files.map(({ path, sha256, size }) => ({ path, sha256, size })),
  };
  const manifestBytes = jsonBytes(manifest);
  if (storedManifest === null || !storedManifest.equals(manifestBytes)) {
    await cloud.putBytes(bucket, manifestKey, manifestBytes, { contentType: 'application/json' });
  }

  const wanted = new Set([manifestKey, ...files.map((f) => key(f.path))]);
  const stale = (await cloud.listKeys(bucket, `${prefix}/`)).filter((k) => !wanted.has(k));
  if (stale.length > 0) await cloud.deleteKeys(bucket, stale);
  return {
    prefix,
    manifestSha256: sha256Of(manifestBytes),
    uploaded,
    unchanged,
    removed: stale.map((k) => k.slice(prefix.length + 1)),
  };
}

/** config.json, the workspace templates, the seeds when prepared; sorted by path. */
async function bundleFiles(cloud: Cloud, input: BundleInput): Promise<BundleFile[]> {
  const files: BundleFile[] = [];
  const add = (path: string, body: Buffer) => files.push({ path, sha256: sha256Of(body), size: body.length, body });
  add(CONFIG_FILE, jsonBytes(bundleConfig(input)));
  const root = input.workspaceDir ?? projectPath(WORKSPACE_DIR);
  for (const rel of await listFiles(root)) {
    const path = `${WORKSPACE_DIR}/${rel}`;
    if (!bundlePath.safeParse(path).success) {
      throw new OperationError(`bundle: ${join(root, rel)}: the name cannot go in a bundle (use a-z, 0-9, ._@+- )`);
    }
    add(path, await readFile(join(root, rel)));
  }
  const seeds = await cloud.headObject(input.bucket, REPO_SEEDS_SOURCE_KEY);
  if (seeds !== null) {
    if (seeds.sha256 === null || !/^[0-9a-f]{64}$/.test(seeds.sha256)) {
      throw new OperationError(
        `bundle: s3://${input.bucket}/${REPO_SEEDS_SOURCE_KEY} has no sha256 metadata: upload the seeds with their checksum`,
      );
    }
    files.push({ path: REPO_SEEDS_FILE, sha256: seeds.sha256, size: seeds.size });
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Relative paths (with /) of the regular files under `root`, recursively, sorted. */
async function listFiles(root: string): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true, recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new OperationError(`bundle: cannot read the workspace templates in ${root} (${code})`);
  }
  return entries
    .filter((e) => e.isFile())
    .map((e) => {
      // Node 20 names the parent `path` (later also `parentPath`).
      const dir = (e as { parentPath?: string }).parentPath ?? e.path;
      return relative(root, join(dir, e.name)).split(sep).join('/');
    })
    .sort();
}

/** The stored manifest, or null when there is none or it is unreadable (everything goes again). */
function readManifest(bytes: Buffer | null): Manifest | null {
  if (bytes === null) return null;
  try {
    const parsed = manifestSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
