// Day 0 (`clawdinator infra init`): what must exist before the base stack can be planned.
// The state bucket, which Terraform cannot create for itself, versioned and encrypted (new
// S3 buckets are private: public access blocked and ACLs off, S3's default since 2023); and
// the Redis auth token that the base stack gives ElastiCache, made here so that its value
// never appears in a plan, a log or the configuration. Both are left alone when present.
import { randomBytes } from 'node:crypto';
import { REDIS_AUTH_SECRET } from '../../infra/names.js';
import type { Cloud } from '../cloud/types.js';

export interface InitResult {
  bucketCreated: boolean;
  secretCreated: boolean;
}

/** `stateCloud` works in the state bucket's region, `fleetCloud` in the fleet's. */
export async function initInfra(
  stateCloud: Pick<Cloud, 'createBucketIfMissing'>,
  fleetCloud: Pick<Cloud, 'secretExists' | 'putSecret'>,
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
  return { bucketCreated, secretCreated };
}
