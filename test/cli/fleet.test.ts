// `clawdinator fleet spawn|retire|replace` as an operator runs them: the built binary queues
// a job signed with the operator's key; a real worker (here, in the test process, on the
// simulated cloud) runs it; the command prints its progress and outcome.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { generateSigningKeyPair, parsePublicKey } from '../../jobs/signing.js';
import { jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';
import { runCli } from '../support/cli.js';
import { simFleet } from '../support/fleet.js';
import { lifecycleSettings, testStepSigner } from '../support/jobs.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const _AMI = 'ami-00000000000000a11';
let server: TestRedis;
let env: Record<string, string>;
let stop: () => Promise<void>;
let cloud: ReturnType<typeof simFleet>['cloud'];

beforeAll(async () => {
  server = await startRedis();
  const redis = server.client();
  const sim = simFleet(redis);
  const { dir, registry, memory, fleet } = sim;
  cloud = sim.cloud;
  const operator = generateSigningKeyPair();
  writeFileSync(join(dir, 'operator.pem'), operator.privateKeyPem, { mode: 0o600 });
  const publicKey = parsePublicKey(operator.publicKeyPem);
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection: { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null },
      redis: server.client(),
      types: new JobTypes(jobTypes({ redis, registry: async () => (await registry.read()).registry, memory, fleet })),
      publicKey: async (id) => (id === 'operator:alice' ? publicKey : null),
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
    },
    lifecycleSettings,
  );
  stop = async () => {
    await worker.close();
    sim.close();
  };
  env = {
    CLAWDINATOR_REDIS_URL: server.url,
    CLAWDINATOR_JOB_SIGNING_KEY_FILE: join(dir, 'operator.pem'),
    CLAWDINATOR_JOB_KEY_ID: 'operator:alice',
    CLAWDINATOR_FLEET_REGISTRY: join(dir, 'fleet.json'),
  };
});
afterAll(async () => {
  await stop();
  await server.stop();
});

describe('clawdinator fleet spawn|retire|replace|cleanup', () => {
  it('spawn queues the job as the operator and prints its progress and outcome', async () => {
    const r = await runCli(['fleet', 'spawn', 'clawdinator-3'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^queued spawn-cli-/);
    expect(r.stdout).toMatch(/clawdinator-3 online: i-[0-9a-f]+, ami-00000000000000a11/);
  });

  it('a refusal is exit 1 with its one line; retire and replace need --yes; only an operator key may ask', async () => {
    const again = await runCli(['fleet', 'spawn', 'clawdinator-3'], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^clawdinator: .*already in the registry/);
    const unconfirmed = await runCli(['fleet', 'retire', 'clawdinator-3'], { env });
    expect(unconfirmed).toMatchObject({
      code: 2,
      stderr: "clawdinator: retire destroys clawdinator-3's host: confirm with --yes\n",
    });
    const notOperator = await runCli(['fleet', 'replace', 'clawdinator-3', '--yes'], {
      env: { ...env, CLAWDINATOR_JOB_KEY_ID: 'gateway' },
    });
    expect(notOperator.code).toBe(2);
    expect(notOperator.stderr).toContain('must be operator:<name>');
    const badName = await runCli(['fleet', 'spawn', 'evil;rm'], { env });
    expect(badName.code).toBe(2);
  });

  it('cleanup needs --yes; it terminates a stray instance of ours and refuses a registry member’s', async () => {
    const unconfirmed = await runCli(['fleet', 'cleanup', 'i-0123456789abcdef0'], { env });
    expect(unconfirmed).toMatchObject({
      code: 2,
      stderr: 'clawdinator: cleanup terminates i-0123456789abcdef0: confirm with --yes\n',
    });
    const stray = await cloud.launchInstance({ name: 'clawdinator-7', ami: _AMI, instanceType: 't3.large' });
    const r = await runCli(['fleet', 'cleanup', stray, '--yes'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^queued stray-cleanup-cli-/);
    expect(r.stdout).toContain(`${stray} (clawdinator-7) terminated: it was not in the registry`);
    const member = await runCli(['fleet', 'cleanup', 'clawdinator-1', '--yes'], { env });
    expect(member.code).toBe(1);
    expect(member.stderr).toMatch(/^clawdinator: refused: clawdinator-1 has an instance \(i-[0-9a-f]+, running\)/);
  });
});
