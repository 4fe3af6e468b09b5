// Building the engine's parts from the configuration, the same way in every process that
// uses them (worker, gateway, CLI, sandbox).
import type { KeyObject } from 'node:crypto';
import type { RedisOptions } from 'ioredis';
import { type FleetRegistry, readRegistry } from '../../infra/registry.js';
import { ConfigError } from '../../lib/errors.js';
import { projectPath } from '../../lib/paths.js';
import { redisOptions } from '../redis.js';
import { loadPrivateKey, parsePublicKey } from '../signing.js';
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
 * Public keys by key id: the gateway's, the schedule's and operators' from settings; each
 * agent's from its registry entry (spawn records it), so a retired host's key goes with it.
 */
export function publicKeys(
  configured: Record<string, string>,
  registry: () => Promise<FleetRegistry>,
): (keyId: string) => Promise<KeyObject | null> {
  const fixed = new Map<string, KeyObject>();
  for (const [id, pem] of Object.entries(configured)) {
    const key = parsePublicKey(pem);
    if (key === null) throw new ConfigError(`config: CLAWDINATOR_JOB_PUBLIC_KEYS: ${id} is not an Ed25519 public key`);
    fixed.set(id, key);
  }
  return async (keyId) => {
    const known = fixed.get(keyId);
    if (known !== undefined) return known;
    if (!keyId.startsWith('agent:')) return null;
    const entry = (await registry())[keyId.slice('agent:'.length)];
    return entry?.agentPublicKey ? parsePublicKey(entry.agentPublicKey) : null;
  };
}
