// Who asked for a job, signed. Every job carries its principal and an Ed25519 signature
// (node:crypto) over its type, id, schema version, data, principal, time and nonce, made
// with that principal's private key. Workers hold public keys only, so a write to Redis
// alone cannot start anything.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../lib/errors.js';

/** JSON with object keys sorted at every level: the same bytes on every host. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

export function signPayload(payload: unknown, privateKey: KeyObject): string {
  return sign(null, Buffer.from(canonicalJson(payload)), privateKey).toString('base64');
}

export function verifyPayload(payload: unknown, signature: string, publicKey: KeyObject): boolean {
  try {
    return verify(null, Buffer.from(canonicalJson(payload)), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

export function loadPrivateKey(path: string, settingEnv: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `config: ${settingEnv} names ${path}, which cannot be read (${(err as NodeJS.ErrnoException).code})`,
    );
  }
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error('not ed25519');
    return key;
  } catch {
    throw new ConfigError(`config: ${settingEnv} names ${path}, which is not an Ed25519 private key (PEM)`);
  }
}

const publicHalves = new WeakMap<KeyObject, KeyObject>();

/** The public half of a private key, derived once per key. */
export function publicHalf(privateKey: KeyObject): KeyObject {
  let key = publicHalves.get(privateKey);
  if (key === undefined) {
    key = createPublicKey(privateKey);
    publicHalves.set(privateKey, key);
  }
  return key;
}

export function parsePublicKey(pem: string): KeyObject | null {
  try {
    const key = createPublicKey(pem);
    return key.asymmetricKeyType === 'ed25519' ? key : null;
  } catch {
    return null;
  }
}

export function generateSigningKeyPair(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
