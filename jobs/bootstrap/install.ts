// `clawdinator bootstrap` on a host: installs its bundle (jobs/bootstrap/bundle.ts) once per
// bootstrap prefix, as the original's bootstrap did with /var/lib/clawd/.bootstrap-ok.
//
//   1. A sentinel recording this prefix → nothing to install ("already bootstrapped"); only the
//      secrets are brought up to date (they live in /run, gone after each reboot), and a file
//      is rewritten only when its value changed.
//   2. Otherwise everything is fetched into a staging dir first and checked: the manifest's
//      prefix, each file's SHA-256 and size, config.json naming this instance and prefix, every
//      required secret present. Any failure stops here with nothing installed and the
//      sentinel as it was.
//   3. Then the sentinel goes (a crash from here on means "not bootstrapped"), the previous
//      install is cleaned (workspace, repo seeds, the secret files its config named, the kept
//      bundle), and the new one is installed: workspace and seeds each built beside their
//      target and renamed into place, secrets written 0400 by temp + rename, the bundle's
//      config.json and manifest.json kept in the state dir.
//   4. The switch hand-off (a command from settings; nix/module.nix hands `nixos-rebuild
//      switch` to a unit of its own with `systemd-run --no-block`), then the sentinel, last,
//      by temp + rename. A failed hand-off leaves no sentinel, so the next start tries again.
//
// Secret values go only into their files: never into a log line, an error or the result.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { ConfigError, errorLine, OperationError } from '../../lib/errors.js';
import type { Cloud } from '../cloud/types.js';
import {
  type BundleConfig,
  bundleConfigSchema,
  CONFIG_FILE,
  jsonBytes,
  MANIFEST_FILE,
  type Manifest,
  manifestSchema,
  REPO_SEEDS_FILE,
  sha256Of,
  WORKSPACE_DIR,
} from './bundle.js';
import type { InstanceIdentity } from './identity.js';

export const SENTINEL_FILE = '.bootstrap-ok';

export interface BootstrapDirs {
  /** The sentinel and the installed bundle's config.json and manifest.json (bundle/). */
  state: string;
  workspace: string;
  repoSeeds: string;
  opsSecrets: string;
  agentSecrets: string;
}

export interface BootstrapOptions {
  cloud: Cloud;
  identity: InstanceIdentity;
  dirs: BootstrapDirs;
  /** argv run after a (re)initialization; `{host}` and `{name}` are replaced; [] skips it. */
  switchCommand: string[];
  /** One line of progress (no values of secrets ever reach it). */
  log: (line: string) => void;
  /** Runs a command; default: execFile. Replaced in tests to see the hand-off. */
  run?: (argv: string[]) => Promise<void>;
}

export interface Sentinel {
  prefix: string;
  manifestSha256: string;
  instance: string;
  at: string;
}

export interface BootstrapResult {
  action: 'installed' | 'reinitialized' | 'unchanged';
  prefix: string;
  manifestSha256: string;
  secrets: { written: string[]; unchanged: string[]; absent: string[] };
  switched: boolean;
}

export async function bootstrap(options: BootstrapOptions): Promise<BootstrapResult> {
  const { identity, dirs, log } = options;
  checkDirs(dirs);
  const where = `s3://${identity.bucket}/${identity.prefix}/`;
  const sentinelPath = join(dirs.state, SENTINEL_FILE);
  const sentinel = await readSentinel(sentinelPath);
  const installed = await readInstalledConfig(dirs.state);

  if (sentinel?.prefix === identity.prefix && installed !== null) {
    const secrets = await installSecrets(options, installed, await fetchSecrets(options.cloud, installed));
    log(`already bootstrapped from ${identity.prefix} (manifest ${sentinel.manifestSha256.slice(0, 12)})`);
    return {
      action: 'unchanged',
      prefix: identity.prefix,
      manifestSha256: sentinel.manifestSha256,
      secrets,
      switched: false,
    };
  }

  // ── fetch and check everything; nothing is installed before all of it holds ──────────
  const staging = join(dirs.state, '.staging');
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true, mode: 0o700 });
  let manifest: Manifest;
  let manifestSha256: string;
  let config: BundleConfig;
  let configBytes: Buffer;
  let manifestBytes: Buffer;
  let secretValues: Map<string, string>;
  try {
    manifestBytes = await fetchManifest(options.cloud, identity, where);
    manifestSha256 = sha256Of(manifestBytes);
    manifest = parseJson(manifestBytes, manifestSchema, `${where}${MANIFEST_FILE}`);
    if (manifest.prefix !== identity.prefix) {
      throw new OperationError(`${where}${MANIFEST_FILE} is for ${manifest.prefix}, not ${identity.prefix}`);
    }
    for (const file of manifest.files) await fetchFile(options.cloud, identity, staging, file);
    if (!manifest.files.some((f) => f.path === CONFIG_FILE)) {
      throw new OperationError(`${where}${MANIFEST_FILE} names no ${CONFIG_FILE}`);
    }
    configBytes = await readFile(join(staging, CONFIG_FILE));
    config = parseJson(configBytes, bundleConfigSchema, `${where}${CONFIG_FILE}`);
    if (config.instance !== identity.name || config.bootstrapPrefix !== identity.prefix) {
      throw new OperationError(
        `${where}${CONFIG_FILE} is for ${config.instance} at ${config.bootstrapPrefix}, not ${identity.name} at ${identity.prefix}`,
      );
    }
    secretValues = await fetchSecrets(options.cloud, config);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw new OperationError(`bootstrap: ${errorLine(err).replace(/^bootstrap: /, '')}: nothing installed`, {
      cause: err,
    });
  }

  // ── replace the previous install ─────────────────────────────────────────────────────
  const action = sentinel === null && installed === null ? 'installed' : 'reinitialized';
  if (action === 'reinitialized') {
    log(`re-initializing: ${sentinel?.prefix ?? 'an unfinished install'} → ${identity.prefix}`);
  }
  await rm(sentinelPath, { force: true });
  await rm(dirs.workspace, { recursive: true, force: true });
  await rm(dirs.repoSeeds, { recursive: true, force: true });
  if (installed !== null) {
    for (const secret of installed.secrets) await rm(secretPath(dirs, secret), { force: true });
  }
  await rm(join(dirs.state, 'bundle'), { recursive: true, force: true });

  const workspaceFiles = manifest.files.filter((f) => f.path.startsWith(`${WORKSPACE_DIR}/`));
  await replaceDir(dirs.workspace, async (into) => {
    for (const file of workspaceFiles) {
      const target = join(into, file.path.slice(WORKSPACE_DIR.length + 1));
      await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      await rename(join(staging, file.path), target);
    }
  });
  log(`workspace: ${workspaceFiles.length} files in ${dirs.workspace}`);
  if (manifest.files.some((f) => f.path === REPO_SEEDS_FILE)) {
    const run = options.run ?? runCommand;
    await replaceDir(dirs.repoSeeds, (into) =>
      run(['tar', '--zstd', '-xf', join(staging, REPO_SEEDS_FILE), '-C', into, '--no-same-owner']),
    );
    log(`repo seeds: extracted into ${dirs.repoSeeds}`);
  }
  const secrets = await installSecrets(options, config, secretValues);
  const bundleDir = join(dirs.state, 'bundle');
  await mkdir(bundleDir, { recursive: true, mode: 0o755 });
  await writeFile(join(bundleDir, CONFIG_FILE), configBytes);
  await writeFile(join(bundleDir, MANIFEST_FILE), manifestBytes);
  await rm(staging, { recursive: true, force: true });

  // ── hand-off, then the sentinel ──────────────────────────────────────────────────────
  let switched = false;
  if (options.switchCommand.length > 0) {
    const argv = options.switchCommand.map((w) =>
      w.replaceAll('{host}', config.host).replaceAll('{name}', config.instance),
    );
    try {
      await (options.run ?? runCommand)(argv);
    } catch (err) {
      throw new OperationError(`bootstrap: the switch hand-off failed: ${errorLine(err)} (no sentinel written)`);
    }
    switched = true;
    log(`switch handed off: ${argv.join(' ')}`);
  }
  const written: Sentinel = {
    prefix: identity.prefix,
    manifestSha256,
    instance: identity.name,
    at: new Date().toISOString(),
  };
  const partial = `${sentinelPath}.partial`;
  await writeFile(partial, jsonBytes(written), { mode: 0o644 });
  await rename(partial, sentinelPath);
  log(`bootstrapped ${identity.name} from ${identity.prefix} (manifest ${manifestSha256.slice(0, 12)})`);
  return { action, prefix: identity.prefix, manifestSha256, secrets, switched };
}

/** The dirs a re-initialization empties: absolute, below the top level, apart from each other. */
function checkDirs(dirs: BootstrapDirs): void {
  const entries = Object.entries(dirs).map(([k, v]) => [k, normalize(v)] as const);
  for (const [k, dir] of entries) {
    if (!isAbsolute(dir) || dir.split('/').filter(Boolean).length < 2) {
      throw new ConfigError(`config: the bootstrap's ${k} dir ${dir} must be an absolute path below the top level`);
    }
    for (const [other, o] of entries) {
      if (other !== k && (o === dir || o.startsWith(`${dir}/`))) {
        throw new ConfigError(`config: the bootstrap's ${k} dir ${dir} holds its ${other} dir ${o}: give them apart`);
      }
    }
  }
}

export async function readSentinel(path: string): Promise<Sentinel | null> {
  try {
    const data = JSON.parse(await readFile(path, 'utf8')) as Partial<Sentinel>;
    return typeof data.prefix === 'string' && typeof data.manifestSha256 === 'string' ? (data as Sentinel) : null;
  } catch {
    // Missing or unreadable: not bootstrapped, so the next steps install again.
    return null;
  }
}

async function readInstalledConfig(state: string): Promise<BundleConfig | null> {
  try {
    const parsed = bundleConfigSchema.safeParse(JSON.parse(await readFile(join(state, 'bundle', CONFIG_FILE), 'utf8')));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

async function fetchManifest(cloud: Cloud, id: InstanceIdentity, where: string): Promise<Buffer> {
  const bytes = await cloud.getBytes(id.bucket, `${id.prefix}/${MANIFEST_FILE}`);
  if (bytes === null) {
    throw new OperationError(
      `no bundle at ${where} (no ${MANIFEST_FILE}): upload it with clawdinator fleet bundle ${id.name}`,
    );
  }
  return bytes;
}

/** Downloads one file of the manifest into staging and checks it against the manifest. */
async function fetchFile(
  cloud: Cloud,
  id: InstanceIdentity,
  staging: string,
  file: Manifest['files'][number],
): Promise<void> {
  const key = `${id.prefix}/${file.path}`;
  const target = join(staging, file.path);
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  let got: { size: number; sha256: string };
  if (file.path === REPO_SEEDS_FILE) {
    // Streamed to disk: the seeds can be large.
    got = await cloud.downloadFile(id.bucket, key, target);
  } else {
    const body = await cloud.getBytes(id.bucket, key);
    if (body === null) throw new OperationError(`s3://${id.bucket}/${key} is missing`);
    await writeFile(target, body);
    got = { size: body.length, sha256: sha256Of(body) };
  }
  if (got.sha256 !== file.sha256 || got.size !== file.size) {
    throw new OperationError(
      `s3://${id.bucket}/${key} does not match the manifest (sha256 ${got.sha256.slice(0, 12)}…, ${got.size} bytes; expected ${file.sha256.slice(0, 12)}…, ${file.size} bytes)`,
    );
  }
}

/** The values of the config's secrets; a missing required one is an error naming it. */
async function fetchSecrets(cloud: Cloud, config: BundleConfig): Promise<Map<string, string>> {
  const values = await cloud.getSecrets(config.secrets.map((s) => s.name));
  const missing = config.secrets.find((s) => s.required && !values.has(s.name));
  if (missing !== undefined) throw new OperationError(`bootstrap: the secret ${missing.name} does not exist`);
  return values;
}

/** Writes each secret 0400 in its owner's dir (0700), only when its value changed. */
async function installSecrets(
  options: BootstrapOptions,
  config: BundleConfig,
  values: Map<string, string>,
): Promise<BootstrapResult['secrets']> {
  const out: BootstrapResult['secrets'] = { written: [], unchanged: [], absent: [] };
  for (const secret of config.secrets) {
    const value = values.get(secret.name);
    if (value === undefined) {
      out.absent.push(secret.name);
      continue;
    }
    const path = secretPath(options.dirs, secret);
    const current = await readFile(path, 'utf8').catch(() => null);
    if (current === value) {
      out.unchanged.push(secret.name);
      continue;
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await chmod(dirname(path), 0o700);
    const partial = `${path}.partial`;
    await rm(partial, { force: true });
    // Created 0400 and exclusively: the value is never readable by anyone else, even briefly.
    const handle = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o400);
    try {
      await handle.writeFile(value);
    } finally {
      await handle.close();
    }
    await rename(partial, path);
    out.written.push(secret.name);
  }
  if (out.written.length > 0) options.log(`secrets: ${out.written.length} written (${out.written.join(', ')})`);
  if (out.absent.length > 0)
    options.log(`secrets: ${out.absent.length} not present, skipped (${out.absent.join(', ')})`);
  return out;
}

function secretPath(dirs: BootstrapDirs, secret: BundleConfig['secrets'][number]): string {
  return join(secret.owner === 'ops' ? dirs.opsSecrets : dirs.agentSecrets, secret.file);
}

/** Fills `<dir>.partial` and renames it to `dir`: readers see the old dir or the whole new one. */
async function replaceDir(dir: string, fill: (into: string) => Promise<void>): Promise<void> {
  const partial = `${dir}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true, mode: 0o755 });
  await fill(partial);
  await rm(dir, { recursive: true, force: true });
  await rename(partial, dir);
}

function parseJson<T>(
  bytes: Buffer,
  schema: { safeParse(v: unknown): { success: boolean; data?: T } },
  where: string,
): T {
  let data: unknown;
  try {
    data = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new OperationError(`${where} is not valid JSON`);
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) throw new OperationError(`${where} is not a bundle file of version 1`);
  return parsed.data as T;
}

function runCommand(argv: string[]): Promise<void> {
  const [bin, ...args] = argv;
  return new Promise((resolve, reject) => {
    execFile(bin as string, args, { maxBuffer: 4 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (err === null) return resolve();
      const code = (err as NodeJS.ErrnoException).code;
      const detail = String(stderr).trim().split('\n').pop() || (typeof code === 'string' ? code : `exit ${code}`);
      reject(new OperationError(`${bin} failed: ${detail}`));
    });
  });
}
