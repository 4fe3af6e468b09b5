// Day 0 (`clawdinator infra init`): what must exist before the base stack can be planned.
// The state bucket, which Terraform cannot create for itself, versioned and encrypted (new
// S3 buckets are private: public access blocked and ACLs off, S3's default since 2023); the
// Redis auth token that the base stack gives ElastiCache, made here so that its value never
// appears in a plan, a log or the configuration; and the control plane's two signing keys
// (Ed25519, PEM): the gateway's (key id `gateway`) and the workers' (key id `schedule`, which
// signs the schedules and each save of step results). Each is left alone when present. The
// public keys are returned for the settings (CLAWDINATOR_JOB_PUBLIC_KEYS); private keys never
// leave Secrets Manager but for the hosts' bootstrap.
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { REDIS_AUTH_SECRET } from '../../infra/names.js';
import { OperationError } from '../../lib/errors.js';
import { GATEWAY_KEY_SECRET, WORKERS_KEY_SECRET } from '../bootstrap/bundle.js';
import type { Cloud } from '../cloud/types.js';
import { generateSigningKeyPair } from '../signing.js';

export interface SigningKeyResult {
  secret: string;
  keyId: 'gateway' | 'schedule';
  created: boolean;
  publicKeyPem: string;
}

export interface InitResult {
  bucketCreated: boolean;
  secretCreated: boolean;
  signingKeys: SigningKeyResult[];
}

export const SIGNING_KEY_SECRETS = [
  { secret: GATEWAY_KEY_SECRET, keyId: 'gateway' },
  { secret: WORKERS_KEY_SECRET, keyId: 'schedule' },
] as const;

/** `stateCloud` works in the state bucket's region, `fleetCloud` in the fleet's. */
export async function initInfra(
  stateCloud: Pick<Cloud, 'createBucketIfMissing'>,
  fleetCloud: Pick<Cloud, 'secretExists' | 'putSecret' | 'getSecrets'>,
  stateBucket: string,
): Promise<InitResult> {
  const bucketCreated = await stateCloud.createBucketIfMissing(stateBucket, { versioned: true, encrypted: true });
  let secretCreated = false;
  if (!(await fleetCloud.secretExists(REDIS_AUTH_SECRET))) {
    // ElastiCache takes 16–128 printable characters without / " @: hex is safe.
    const token = randomBytes(32).toString('hex');
    await fleetCloud.putSecret(REDIS_AUTH_SECRET, token, { clientToken: randomBytes(16).toString('hex') });
    secretCreated = true;
  }
  const signingKeys: SigningKeyResult[] = [];
  for (const { secret, keyId } of SIGNING_KEY_SECRETS)
    signingKeys.push(await ensureSigningKey(fleetCloud, secret, keyId));
  return { bucketCreated, secretCreated, signingKeys };
}

async function ensureSigningKey(
  cloud: Pick<Cloud, 'secretExists' | 'putSecret' | 'getSecrets'>,
  secret: string,
  keyId: SigningKeyResult['keyId'],
): Promise<SigningKeyResult> {
  if (await cloud.secretExists(secret)) {
    const stored = (await cloud.getSecrets([secret])).get(secret);
    if (stored === undefined) throw new OperationError(`infra init: the secret ${secret} has no value`);
    let publicKeyPem: string;
    try {
      publicKeyPem = createPublicKey(createPrivateKey(stored)).export({ type: 'spki', format: 'pem' }).toString();
    } catch {
      // Never the value: only that it is not a key.
      throw new OperationError(`infra init: the secret ${secret} holds no private key (PEM)`);
    }
    return { secret, keyId, created: false, publicKeyPem };
  }
  const pair = generateSigningKeyPair();
  await cloud.putSecret(secret, pair.privateKeyPem, { clientToken: randomBytes(16).toString('hex') });
  return { secret, keyId, created: true, publicKeyPem: pair.publicKeyPem };
}
