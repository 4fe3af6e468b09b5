// Building the engine's parts from the configuration, the same way in every process that
// uses them (worker, gateway, CLI, sandbox).
import type { KeyObject } from 'node:crypto';
import type { RedisOptions } from 'ioredis';
import { type FleetRegistry, readRegistry } from '../../infra/registry.js';
import { type ConfigSource, loadConfig, readSecretFile } from '../../lib/config.js';
import { ConfigError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { projectPath } from '../../lib/paths.js';
import { redisOptions } from '../redis.js';
import type { RegistryStore } from '../registry/types.js';
import { loadPrivateKey, parsePublicKey, publicHalf } from '../signing.js';
import type { EventTrust } from './notify.js';
import type { Signer } from './queues.js';

export function connectionFrom(config: { redisUrl: string; redisPasswordFile?: string }): RedisOptions {
  return redisOptions(config);
}

export function signerFrom(config: { jobSigningKeyFile: string; jobKeyId: string }): Signer {
  return { keyId: config.jobKeyId, key: loadPrivateKey(config.jobSigningKeyFile, 'CLAWDINATOR_JOB_SIGNING_KEY_FILE') };
}

/** The registry file's path: the setting, or the project's infra/fleet.json. */
export function registryPath(path: string | undefined): string {
  const given = path ?? 'infra/fleet.json';
  return given.startsWith('/') ? given : projectPath(given);
}

/** The registry from its file, read fresh each time. */
export function fileRegistry(path: string | undefined): () => Promise<FleetRegistry> {
  const full = registryPath(path);
  return async () => readRegistry(full);
}

/**
 * How the workers, /status, `fleet status` and `request` read the registry. `fresh` asks for
 * a new read past a cache (an agent key id not seen yet may be a host spawned a moment ago).
 */
export type RegistryReader = (options?: { fresh?: boolean }) => Promise<FleetRegistry>;

export interface RegistryBackendConfig {
  fleetRegistryBackend: 'file' | 'github';
  fleetRegistryPath?: string;
}

/** The settings the GitHub backend adds; read only when the backend is `github`. */
export const GITHUB_REGISTRY_SETTINGS = [
  'githubAppId',
  'githubInstallationId',
  'githubAppKeyFile',
  'githubApiUrl',
  'githubRegistryRepo',
  'githubRegistryBranch',
  'githubRegistryPath',
  'githubRegistryProtectedBranch',
] as const;

/** How long readers reuse a registry read from GitHub, and the least time between forced reads. */
export const GITHUB_REGISTRY_CACHE_MS = 30_000;
export const GITHUB_REGISTRY_MIN_REFRESH_MS = 5_000;

export interface RegistryFactoryOptions {
  /** Where the settings come from (tests); the process environment otherwise. */
  source?: ConfigSource;
  log?: Logger;
  /**
   * Read the App's key at the first GitHub call instead of now: for commands that only
   * enqueue (`request` runs as the agent's user, which cannot read the key).
   */
  lazyKey?: boolean;
}

/**
 * The registry reader for the configured backend: the file read fresh each time, or GitHub
 * through a short cache so verifying each agent job does not cost an API call. The GitHub
 * settings are checked here, at start-up; the GitHub code loads on the first read.
 */
export function registryReader(config: RegistryBackendConfig, options: RegistryFactoryOptions = {}): RegistryReader {
  if (config.fleetRegistryBackend === 'file') return fileRegistry(config.fleetRegistryPath);
  const github = githubStoreLoader(options);
  return cachedRegistry(async () => (await (await github()).read()).registry, {
    ttlMs: GITHUB_REGISTRY_CACHE_MS,
    minRefreshMs: GITHUB_REGISTRY_MIN_REFRESH_MS,
  });
}

/** The store the lifecycle jobs write through, for the configured backend (loaded on demand). */
export async function registryStoreFrom(
  config: RegistryBackendConfig,
  options: RegistryFactoryOptions = {},
): Promise<RegistryStore> {
  if (config.fleetRegistryBackend === 'file') {
    const { FileRegistryStore } = await import('../registry/file.js');
    return new FileRegistryStore(registryPath(config.fleetRegistryPath));
  }
  return githubStoreLoader(options)();
}

// One GitHub store (one App, one token cache) per process and settings: the worker's reader
// and its lifecycle jobs share the installation token.
const githubStores = new Map<string, Promise<RegistryStore>>();

function githubStoreLoader(options: RegistryFactoryOptions): () => Promise<RegistryStore> {
  const settings = loadConfig(GITHUB_REGISTRY_SETTINGS, options.source);
  const readKey = () => readSecretFile(settings.githubAppKeyFile, 'CLAWDINATOR_GITHUB_APP_KEY_FILE');
  // Read now, so a missing or unreadable key stops the process at start-up.
  const early = options.lazyKey ? undefined : readKey();
  const id = JSON.stringify(settings);
  return () => {
    let store = githubStores.get(id);
    if (store === undefined) {
      const privateKeyPem = early ?? readKey();
      store = import('../registry/github.js').then(({ githubRegistryStore }) =>
        githubRegistryStore(
          settings,
          {
            appId: settings.githubAppId,
            installationId: settings.githubInstallationId,
            privateKeyPem,
            apiUrl: settings.githubApiUrl,
          },
          options.log,
        ),
      );
      store.catch(() => githubStores.delete(id));
      githubStores.set(id, store);
    }
    return store;
  };
}

/**
 * A read shared by concurrent callers and reused for `ttlMs`; `fresh` forces a new read,
 * at most once per `minRefreshMs` (a flood of unknown key ids cannot flood the API).
 * A failed read is not kept.
 */
export function cachedRegistry(
  read: () => Promise<FleetRegistry>,
  options: { ttlMs: number; minRefreshMs: number },
): RegistryReader {
  let value: { registry: FleetRegistry; at: number } | undefined;
  let pending: Promise<FleetRegistry> | undefined;
  return async (asked = {}) => {
    const age = value === undefined ? Number.POSITIVE_INFINITY : Date.now() - value.at;
    const wanted = asked.fresh ? options.minRefreshMs : options.ttlMs;
    if (value !== undefined && age < wanted) return value.registry;
    if (pending === undefined) {
      const started = Date.now();
      pending = read()
        .then((registry) => {
          value = { registry, at: started };
          return registry;
        })
        .finally(() => {
          pending = undefined;
        });
    }
    return pending;
  };
}

/**
 * Public keys by key id: the gateway's, the schedule's and operators' from settings; each
 * agent's from its registry entry (spawn records it), so a retired host's key goes with it.
 */
export function publicKeys(
  configured: Record<string, string>,
  registry: RegistryReader,
): (keyId: string) => Promise<KeyObject | null> {
  const fixed = configuredKeys(configured);
  return async (keyId) => {
    const known = fixed.get(keyId);
    if (known !== undefined) return known;
    if (!keyId.startsWith('agent:')) return null;
    const name = keyId.slice('agent:'.length);
    // A cached registry may predate this host's spawn: one fresh read before saying no.
    const entry = (await registry())[name] ?? (await registry({ fresh: true }))[name];
    return entry?.agentPublicKey ? parsePublicKey(entry.agentPublicKey) : null;
  };
}

function configuredKeys(configured: Record<string, string>): Map<string, KeyObject> {
  const fixed = new Map<string, KeyObject>();
  for (const [id, pem] of Object.entries(configured)) {
    const key = parsePublicKey(pem);
    if (key === null) throw new ConfigError(`config: CLAWDINATOR_JOB_PUBLIC_KEYS: ${id} is not an Ed25519 public key`);
    fixed.set(id, key);
  }
  return fixed;
}

/**
 * The workers' public key (`schedule` in CLAWDINATOR_JOB_PUBLIC_KEYS): heartbeats, the
 * workers' events and a job's pending confirmation are verified with it, so a process that
 * reads any of them (the gateway, `fleet status`) cannot start without it.
 */
export function workersPublicKey(configured: Record<string, string>): KeyObject {
  const key = configuredKeys(configured).get('schedule');
  if (key === undefined) {
    throw new ConfigError(
      'config: CLAWDINATOR_JOB_PUBLIC_KEYS must hold the workers\' key "schedule" (heartbeats, job events and confirmations are verified with it)',
    );
  }
  return key;
}

/**
 * Who the relay believes (notify.ts): the keys configured for the control plane — the workers',
 * the gateway's, operators' — and this process's own key. Never an agent's: agents' keys come
 * from the registry, which this lookup does not read.
 */
export function eventTrust(configured: Record<string, string>, own?: Signer): EventTrust {
  const fixed = configuredKeys(configured);
  return {
    async publicKey(keyId) {
      if (keyId.startsWith('agent:')) return null;
      if (own !== undefined && keyId === own.keyId) return publicHalf(own.key);
      return fixed.get(keyId) ?? null;
    },
  };
}
