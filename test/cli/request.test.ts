// `clawdinator request`: an agent's signed request, refused early when malformed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateSigningKeyPair } from '../../jobs/signing.js';
import { runCli, tempDir } from '../support/cli.js';

function env(keyId: string): Record<string, string> {
  const dir = tempDir('clawdinator-request-');
  writeFileSync(join(dir, 'agent.pem'), generateSigningKeyPair().privateKeyPem, { mode: 0o600 });
  return {
    CLAWDINATOR_REDIS_URL: 'redis://127.0.0.1:1',
    CLAWDINATOR_JOB_SIGNING_KEY_FILE: join(dir, 'agent.pem'),
    CLAWDINATOR_JOB_KEY_ID: keyId,
  };
}

describe('clawdinator request', () => {
  it('refuses unknown actions, bad names and a non-agent key with one line, exit 2, before connecting', async () => {
    const agent = env('agent:clawdinator-2');
    const badAction = await runCli(['request', 'destroy-everything', 'clawdinator-3'], { env: agent });
    expect(badAction).toMatchObject({
      code: 2,
      stderr: 'clawdinator: unknown action "destroy-everything": spawn, replace, retire\n',
    });
    const badName = await runCli(['request', 'spawn', 'evil;rm'], { env: agent });
    expect(badName).toMatchObject({
      code: 2,
      stderr: 'clawdinator: "evil;rm" is not a fleet name (clawdinator-[a-z0-9-])\n',
    });
    const operator = await runCli(['request', 'spawn', 'clawdinator-3'], { env: env('operator:alice') });
    expect(operator.code).toBe(2);
    expect(operator.stderr).toContain('must be agent:<host> for a request');
  });
});
