// The host's side of the flake token: the deploy job stored a read-only GitHub token as this
// host's own secret (clawdinator/host/<name>/deploy-token) for one switch; the switch (root)
// reads it with the instance role and hands it to nix as a configuration file of its own —
// `access-tokens = github.com=…`, created 0400 in a root-only directory, given to nix through
// NIX_USER_CONF_FILES, removed after — never on a command line, never in the environment.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { OperationError } from '../../lib/errors.js';
import type { Cloud } from '../cloud/types.js';
import { deployTokenSecret } from '../fastlane/deps.js';

/** Writes the token's nix configuration to `out` (a new file); false when none is stored. */
export async function writeDeployToken(cloud: Pick<Cloud, 'getSecrets'>, name: string, out: string): Promise<boolean> {
  const secret = deployTokenSecret(name);
  const token = (await cloud.getSecrets([secret])).get(secret);
  if (token === undefined) return false;
  // Whatever the secret holds goes into a nix configuration line: a token's characters only.
  if (!/^[A-Za-z0-9_]{20,255}$/.test(token)) throw new OperationError(`host: ${secret} does not hold a GitHub token`);
  const file = await open(out, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o400);
  try {
    await file.writeFile(`access-tokens = github.com=${token}\n`);
  } finally {
    await file.close();
  }
  return true;
}
