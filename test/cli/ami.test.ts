// `clawdinator ami …` through the built binary. `ami rebuild` queues the rebuild-ami job signed
// with the operator's key; a real worker (here, in the test process, on the simulated fleet,
// with the members' host-queue workers) runs it; the command prints its progress and outcome.
// Bad input — a hostile rev, a rollout without --yes, an object that is not ours — is exit 2,
// one line, and nothing reaches Redis.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKeyPair, parsePublicKey } from '../../jobs/signing.js';
import { hostWorkers, simAmiDeps } from '../support/ami.js';
import { runCli } from '../support/cli.js';
import { simFleet } from '../support/fleet.js';
import { lifecycleHarness } from '../support/lifecycle.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { HOSTILE_REVS } from '../support/revs.js';

let server: TestRedis;
let env: Record<string, string>;
let stop: () => Promise<void>;

beforeAll(async () => {
  server = await startRedis();
  const redis = server.client();
  const sim = simFleet(redis, { members: ['clawdinator-1', 'clawdinator-2'] });
  const operator = generateSigningKeyPair();
  writeFileSync(join(sim.dir, 'operator.pem'), operator.privateKeyPem, { mode: 0o600 });
  const h = lifecycleHarness(server, redis, sim, { types: { ami: simAmiDeps(server, sim) } });
  // The harness's worker knows its own operator key; the CLI signs as operator:alice.
  const publicKey = parsePublicKey(operator.publicKeyPem);
  const { startWorker, lifecycleSettings, testStepSigner } = await import('../support/jobs.js');
  const { createLogger } = await import('../../lib/log.js');
  const { FLEET_QUEUE } = await import('../../jobs/engine/keys.js');
  await h.close();
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection: { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null },
      redis: server.client(),
      types: h.types,
      publicKey: async (id) => (id === 'operator:alice' ? publicKey : null),
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log: createLogger('silent'),
      stepSigner: testStepSigner,
    },
    lifecycleSettings,
  );
  const hosts = hostWorkers(server, redis, h, ['clawdinator-1', 'clawdinator-2']);
  stop = async () => {
    await hosts.close();
    await worker.close();
    sim.close();
  };
  env = {
    CLAWDINATOR_REDIS_URL: server.url,
    CLAWDINATOR_JOB_SIGNING_KEY_FILE: join(sim.dir, 'operator.pem'),
    CLAWDINATOR_JOB_KEY_ID: 'operator:alice',
    CLAWDINATOR_FLEET_REGISTRY: join(sim.dir, 'fleet.json'),
  };
});
afterAll(async () => {
  await stop();
  await server.stop();
});

describe('clawdinator ami', () => {
  it('ami rebuild queues the job as the operator and prints its stages and outcome', async () => {
    const r = await runCli(['ami', 'rebuild', '--rev', 'v2', '--timeout', '60'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^queued rebuild-ami-cli-[A-Za-z0-9_-]+\n/);
    // Its progress, as it changes between two looks (stage: what happens).
    expect(r.stdout).toMatch(/\n {2}(resolve|build|upload|import|register)[:-]/);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toMatch(
      /^ami-[0-9a-f]+ \(clawdinator-nixos-\d{14}\) from 0ddba11 \(v2\), built by clawdinator-2: available$/,
    );
  });

  it('refuses hostile revs, a rollout without --yes and a rollout with --local: exit 2, one line, nothing queued', async () => {
    const redis = server.client();
    const jobs = async () => (await redis.keys('bull:*:rebuild-ami-*')).length;
    const before = await jobs();
    expect(before).toBeGreaterThan(0);
    const cases = [
      ...HOSTILE_REVS.filter((r) => r !== '').map((rev) => ['ami', 'rebuild', `--rev=${rev}`]),
      ...HOSTILE_REVS.filter((r) => r !== '').map((rev) => ['ami', 'build', `--rev=${rev}`]),
      ['ami', 'rebuild', '--rollout', 'canary'],
      ['ami', 'rebuild', '--rollout', 'sideways', '--yes'],
      ['ami', 'rebuild', '--local', '--rollout', 'all', '--yes'],
      ['ami', 'upload', '/tmp/image.raw', '--rev', 'main'],
      ['ami', 'import', 's3://bucket/somewhere/else.raw', '--rev', '5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5'],
      [
        'ami',
        'import',
        's3://bucket/images/clawdinator-nixos-20260101000000-0ddba11.raw',
        '--rev',
        '5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5',
      ],
      ['ami', 'prune', '--keep', '0'],
    ];
    for (const args of cases) {
      const r = await runCli(args, { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }
    expect(await jobs()).toBe(before);
  });

  it('ami is listed in the CLI help', async () => {
    const r = await runCli(['--help']);
    expect(r.stdout).toMatch(/\n {2}ami +the base image \(AMI\): rebuild, build, upload, import, list, prune\n/);
  });
});
