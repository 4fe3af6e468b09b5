// `clawdinator fleet update|doctor|logs` through the built binary: update queues a deploy
// signed with the operator's key that a real worker (here, in the test process, on the
// simulated cloud) runs to its end; hostile values are refused with one line and exit 2
// before any setting is read, anything queued or any host asked.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLEET_QUEUE } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { generateSigningKeyPair, parsePublicKey } from '../../jobs/signing.js';
import { jobTypes } from '../../jobs/types/index.js';
import { createLogger } from '../../lib/log.js';
import { runCli } from '../support/cli.js';
import { type SimFleet, simFleet } from '../support/fleet.js';
import { lifecycleSettings, testStepSigner } from '../support/jobs.js';
import { simLane } from '../support/lane.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { HOSTILE_REVS } from '../support/revs.js';

let server: TestRedis;
let sim: SimFleet;
let env: Record<string, string>;
let stop: () => Promise<void>;

beforeAll(async () => {
  server = await startRedis();
  const redis = server.client();
  sim = simFleet(redis, { members: ['clawdinator-1', 'clawdinator-2'] });
  const { dir, registry, memory } = sim;
  const operator = generateSigningKeyPair();
  writeFileSync(join(dir, 'operator.pem'), operator.privateKeyPem, { mode: 0o600 });
  const publicKey = parsePublicKey(operator.publicKeyPem);
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection: { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null },
      redis: server.client(),
      types: new JobTypes(
        jobTypes({ redis, registry: async () => (await registry.read()).registry, memory, lane: simLane(sim) }),
      ),
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

describe('clawdinator fleet update', () => {
  it('queues the deploy as this operator and prints its progress and outcome', async () => {
    const r = await runCli(['fleet', 'update', '--rev', 'main'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^queued deploy-cli-/);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('deployed 5a4dbee (main) to clawdinator-1, clawdinator-2');
  });

  it('a failed deploy is exit 1 with its report', async () => {
    sim.cloud.faults.arm('switch');
    const r = await runCli(['fleet', 'update', '--rev', 'v2', '--target', 'clawdinator-2'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^clawdinator: deploy of 0ddba11 \(v2\) stopped at clawdinator-2, step switch: .*rollback: clawdinator-2 rolled itself back to [0-9a-f]{7}; verified/,
    );
  });

  it('hostile revs, targets, units and line counts: exit 2, one line, nothing queued, no host asked', async () => {
    const queue = new Queue(FLEET_QUEUE, { connection: { host: '127.0.0.1', port: server.port } });
    const before = await queue.count();
    const ssm = sim.cloud.calls.ssm;
    const cases = [
      // (commander echoes the value in its error: a rev with a newline would make two lines of it)
      ...HOSTILE_REVS.filter((r) => r !== '' && !r.startsWith('-') && !r.includes('\n')).map((rev) => [
        'fleet',
        'update',
        '--rev',
        rev,
      ]),
      ['fleet', 'update', '--target', 'clawdinator-1;reboot'],
      ['fleet', 'update', '--target', 'ALL'],
      ['fleet', 'logs', 'clawdinator-1', '--unit', 'sshd'],
      ['fleet', 'logs', 'clawdinator-1', '--lines', '501'],
      ['fleet', 'logs', 'clawdinator-1', '--lines', '1e3'],
      ['fleet', 'logs', '../clawdinator-1'],
      ['fleet', 'doctor', 'clawdinator-1 && reboot'],
    ];
    for (const args of cases) {
      const r = await runCli(args, { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    expect(await queue.count()).toBe(before);
    expect(sim.cloud.calls.ssm).toBe(ssm);
    await queue.close();
  });
});
