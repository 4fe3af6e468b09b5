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
//      install is cleaned (the secret files its config named, the kept bundle), and the new
//      one is installed: the repo seeds extracted in the root-owned state dir, the workspace
//      and the seeds copied into the agent's home (jobs/bootstrap/safe-copy.ts: created for the
//      agent, no link followed, renamed into place), secrets written 0400 for their owner in
//      root-owned dirs, the EFS tunnel's config, the bundle's config.json and manifest.json
//      kept in the state dir.
//   4. The switch hand-off (a command from settings; nix/module.nix hands `nixos-rebuild
//      switch` to a unit of its own with `systemd-run --no-block`) to a flake root owns: the
//      bundle's pinned revision of this project (config.json `flake`), else the root-owned
//      extraction of the seeds — never a path in the agent's home. Then the sentinel, last,
//      by temp + rename. A failed hand-off leaves no sentinel, so the next start tries again.
//
// Root never works in a directory the agent can write: staging, extraction and the secrets
// dirs are root's (the secrets dirs root:<user's group> 0750); the agent's home is reached only
// through safe-copy.ts.
//
// Secret values go only into their files: never into a log line, an error or the result.
import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize } from 'node:path';
import { ConfigError, errorLine, OperationError } from '../../lib/errors.js';
import type { Cloud } from '../cloud/types.js';
import {
  AGENT_KEY_FILE,
  AGENT_PUBLIC_KEY_FILE,
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
import { installTree, type Owner, removeTree } from './safe-copy.js';

export const SENTINEL_FILE = '.bootstrap-ok';
/** The root-owned extraction of the repo seeds, in the state dir (also the seeds' flake). */
export const SEEDS_DIR = 'repo-seeds';
/** The project's checkout among the seeds: the flake the switch uses when the bundle pins none. */
export const SEEDS_PROJECT = 'clawdinators';

export interface BootstrapDirs {
  /** Root's: the sentinel, the installed bundle (bundle/), staging, the seeds' extraction. */
  state: string;
  /** In the agent's home: written only through safe-copy.ts. */
  workspace: string;
  repoSeeds: string;
  /**
   * Where the seeds' archive is left, root's and readable by all, for `clawdinator seed-repos`
   * (run as the agent, which never has git run inside its repositories by root).
   */
  repoSeedsArchive?: string;
  /** Root-owned, group-readable by the user whose secrets they hold. */
  opsSecrets: string;
  agentSecrets: string;
}

export interface BootstrapOwners {
  /** The control plane's user (its secrets); null: left as created (not root, tests). */
  ops: Owner | null;
  /** The agent's user (its secrets, workspace and seeds). */
  agent: Owner | null;
}

export interface EfsTunnel {
  /** Where the stunnel config goes (nix/units.json paths.efsTunnelConfig); removed when the bundle names no EFS. */
  configFile: string;
  /** The CA bundle stunnel checks the EFS certificate against. */
  caFile: string;
  /** The host's region, when config.json does not name one. */
  region: string;
}

export interface BootstrapOptions {
  cloud: Cloud;
  identity: InstanceIdentity;
  dirs: BootstrapDirs;
  owners?: BootstrapOwners;
  /** Absent: no tunnel config written (a host without the EFS mount). */
  efsTunnel?: EfsTunnel;
  /** argv run after a (re)initialization; `{flake}`, `{host}` and `{name}` are replaced; [] skips it. */
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
    await writeEfsTunnel(options, installed);
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
  if (installed !== null) {
    for (const secret of installed.secrets) await rm(secretPath(dirs, secret), { force: true });
  }
  await rm(join(dirs.state, 'bundle'), { recursive: true, force: true });

  const owners = options.owners ?? { ops: null, agent: null };
  const workspaceFiles = manifest.files.filter((f) => f.path.startsWith(`${WORKSPACE_DIR}/`));
  // The manifest's workspace files are already in staging (root's), under workspace/.
  await mkdir(join(staging, WORKSPACE_DIR), { recursive: true, mode: 0o755 });
  await installTree(dirname(dirs.workspace), basename(dirs.workspace), join(staging, WORKSPACE_DIR), owners.agent);
  log(`workspace: ${workspaceFiles.length} files in ${dirs.workspace}`);
  const seeds = join(dirs.state, SEEDS_DIR);
  if (manifest.files.some((f) => f.path === REPO_SEEDS_FILE)) {
    const run = options.run ?? runCommand;
    await replaceDir(seeds, (into) =>
      run(['tar', '--zstd', '-xf', join(staging, REPO_SEEDS_FILE), '-C', into, '--no-same-owner']),
    );
    await installTree(dirname(dirs.repoSeeds), basename(dirs.repoSeeds), seeds, owners.agent);
    log(`repo seeds: extracted into ${dirs.repoSeeds}`);
    if (dirs.repoSeedsArchive !== undefined) await stageArchive(join(staging, REPO_SEEDS_FILE), dirs.repoSeedsArchive);
  } else {
    await rm(seeds, { recursive: true, force: true });
    await removeTree(dirname(dirs.repoSeeds), basename(dirs.repoSeeds));
    if (dirs.repoSeedsArchive !== undefined) await rm(dirs.repoSeedsArchive, { force: true });
  }
  const secrets = await installSecrets(options, config, secretValues);
  await writeEfsTunnel(options, config);
  const bundleDir = join(dirs.state, 'bundle');
  await mkdir(bundleDir, { recursive: true, mode: 0o755 });
  await writeFile(join(bundleDir, CONFIG_FILE), configBytes);
  await writeFile(join(bundleDir, MANIFEST_FILE), manifestBytes);
  await rm(staging, { recursive: true, force: true });

  // ── hand-off, then the sentinel ──────────────────────────────────────────────────────
  let switched = false;
  if (options.switchCommand.length > 0) {
    const flake = switchFlake(config, seeds);
    if (flake === null && options.switchCommand.some((w) => w.includes('{flake}'))) {
      throw new OperationError(
        `bootstrap: no flake to switch to: ${CONFIG_FILE} pins none and the repo seeds hold no ${SEEDS_PROJECT}/flake.nix (no sentinel written)`,
      );
    }
    const argv = options.switchCommand.map((w) =>
      w
        .replaceAll('{flake}', flake ?? '')
        .replaceAll('{host}', config.host)
        .replaceAll('{name}', config.instance),
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
  const { repoSeedsArchive, ...folders } = dirs;
  const entries = Object.entries(folders).map(([k, v]) => [k, normalize(v)] as const);
  // The archive is a file root leaves for the agent: never inside what the agent owns.
  if (repoSeedsArchive !== undefined) {
    const archive = normalize(repoSeedsArchive);
    const agents = [folders.workspace, folders.repoSeeds, folders.agentSecrets].map((d) => normalize(d));
    if (!isAbsolute(archive) || agents.some((d) => archive === d || archive.startsWith(`${d}/`))) {
      throw new ConfigError(
        `config: the bootstrap's seeds archive ${archive} must be an absolute path outside the agent's dirs`,
      );
    }
  }
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

/** Writes each secret 0400 for its owner in its root-owned dir (0750), only when its value changed. */
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
    const owner = secret.owner === 'ops' ? options.owners?.ops : options.owners?.agent;
    await writeSecretFile(path, value, owner ?? null);
    out.written.push(secret.name);
  }
  // The ops gateway checks this host's agent's signed requests on the request socket against
  // the agent's public key: derived here, so the gateway needs neither the private key nor a
  // registry credential.
  const agentKey = config.secrets.find((secret) => secret.file === AGENT_KEY_FILE && secret.owner === 'agent');
  const agentKeyValue = agentKey === undefined ? undefined : values.get(agentKey.name);
  if (agentKeyValue !== undefined) {
    const path = join(options.dirs.opsSecrets, AGENT_PUBLIC_KEY_FILE);
    const publicKey = publicKeyPem(agentKeyValue);
    if ((await readFile(path, 'utf8').catch(() => null)) !== publicKey) {
      await writeSecretFile(path, publicKey, options.owners?.ops ?? null);
    }
  }
  if (out.written.length > 0) options.log(`secrets: ${out.written.length} written (${out.written.join(', ')})`);
  if (out.absent.length > 0)
    options.log(`secrets: ${out.absent.length} not present, skipped (${out.absent.join(', ')})`);
  return out;
}

/**
 * Writes one secret file: created 0400, exclusively and without following a link, given to its
 * owner through the descriptor (the value is never readable by anyone else, even briefly), then
 * renamed over the old one.
 */
async function writeSecretFile(path: string, value: string, owner: Owner | null): Promise<void> {
  await secretsDir(dirname(path), owner);
  const partial = `${path}.partial-${randomBytes(8).toString('hex')}`;
  const handle = await open(
    partial,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o400,
  );
  try {
    if (owner) await handle.chown(owner.uid, owner.gid);
    await handle.writeFile(value);
  } finally {
    await handle.close();
  }
  await rename(partial, path);
}

/** A copy of the checked archive at `target`, root's and 0644: in place by rename, never half there. */
async function stageArchive(source: string, target: string): Promise<void> {
  const partial = `${target}.partial-${randomBytes(8).toString('hex')}`;
  await copyFile(source, partial, constants.COPYFILE_EXCL);
  await chmod(partial, 0o644);
  await rename(partial, target);
}

/** The SPKI PEM of a private key PEM; a key that does not parse stops the bootstrap. */
function publicKeyPem(privateKeyPem: string): string {
  try {
    return createPublicKey(createPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
  } catch {
    throw new OperationError(`bootstrap: the agent key (${AGENT_KEY_FILE}) is not a private key (PEM)`);
  }
}

/** A secrets dir: root's, entered by its user's group only (0750), so nobody but root writes there. */
async function secretsDir(dir: string, owner: Owner | null): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o750 });
  if (owner !== null) await chown(dir, 0, owner.gid);
  await chmod(dir, 0o750);
}

/** The flake root owns: the bundle's pinned revision, else the seeds' root-owned copy of this project. */
function switchFlake(config: BundleConfig, seeds: string): string | null {
  if (config.flake) return config.flake;
  const project = join(seeds, SEEDS_PROJECT);
  return existsSync(join(project, 'flake.nix')) ? project : null;
}

/**
 * The EFS tunnel's stunnel config (nix/units.json memoryMount): 127.0.0.1:2049 → the bundle's
 * file system over TLS, its certificate checked against the CA bundle and the EFS name. Removed
 * when the bundle names no EFS, so the tunnel and the mount are skipped (ConditionPathExists).
 */
async function writeEfsTunnel(options: BootstrapOptions, config: BundleConfig): Promise<void> {
  const tunnel = options.efsTunnel;
  if (tunnel === undefined) return;
  if (config.efsId === null) {
    await rm(tunnel.configFile, { force: true });
    options.log(`memory: no EFS in ${CONFIG_FILE}: /memory stays a local directory`);
    return;
  }
  if (!/^fs-[0-9a-f]{8,17}$/.test(config.efsId))
    throw new OperationError(`bootstrap: ${CONFIG_FILE} has an invalid efsId`);
  const region = config.region ?? tunnel.region;
  const host = `${config.efsId}.efs.${region}.amazonaws.com`;
  const text = [
    '# Written by clawdinator bootstrap from the bundle config: the EFS TLS tunnel for /memory.',
    'foreground = yes',
    'pid =',
    'client = yes',
    '[efs]',
    'accept = 127.0.0.1:2049',
    `connect = ${host}:2049`,
    'verifyChain = yes',
    `checkHost = ${host}`,
    `CAfile = ${tunnel.caFile}`,
    'sslVersionMin = TLSv1.2',
    '',
  ].join('\n');
  const current = await readFile(tunnel.configFile, 'utf8').catch(() => null);
  if (current === text) return;
  await mkdir(dirname(tunnel.configFile), { recursive: true, mode: 0o755 });
  const partial = `${tunnel.configFile}.partial-${randomBytes(8).toString('hex')}`;
  await writeFile(partial, text, { mode: 0o644, flag: 'wx' });
  await rename(partial, tunnel.configFile);
  options.log(`memory: EFS ${config.efsId} over TLS (${host})`);
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
