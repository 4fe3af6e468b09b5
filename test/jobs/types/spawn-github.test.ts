// The spawn job with the fleet registry on GitHub: the real worker on a real redis-server,
// the simulated fleet (test/support/fleet.ts), and the GitHub registry backend talking to the
// loopback GitHub stand-in (App JWT checked with the test key's public key). Concurrent
// spawns both land after a stale-sha retry; a repository that would refuse the commit stops
// the spawn in its checks with nothing created; a commit refused anyway is undone.
import { Writable } from 'node:stream';
import { type Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FleetRegistry } from '../../../infra/registry.js';
import { SimDeployer } from '../../../jobs/deploy/sim.js';
import type { Envelope, Principal } from '../../../jobs/engine/envelope.js';
import { FLEET_QUEUE } from '../../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../../jobs/engine/queues.js';
import { createGitHubInstallation } from '../../../jobs/github/app.js';
import { GitHubRegistryStore } from '../../../jobs/registry/github.js';
import type { RegistryStore } from '../../../jobs/registry/types.js';
import { jobTypes } from '../../../jobs/types/index.js';
import type { FleetDeps } from '../../../jobs/types/spawn.js';
import { createLogger } from '../../../lib/log.js';
import { SIM_BUCKET, SIM_INFRA_SETTINGS, type SimFleet, simFleet, simMember } from '../../support/fleet.js';
import { appKeyPair, GitHubStandin } from '../../support/github-standin.js';
import { keyPair, lifecycleSettings, startWorker, testStepSigner } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

const APP_ID = '31337';
const INSTALLATION_ID = '99';
const REPO = 'openclaw/clawdinators';
const PATH = 'infra/fleet.json';
const operator: Principal = { kind: 'cli', operator: 'ops' };
const signer = keyPair();
const appKey = appKeyPair();
const member = simMember('clawdinator-1');

let server: TestRedis;
let redis: Redis;
let sim: SimFleet;
let standin: GitHubStandin;
let logged: string[];
let closers: (() => Promise<void> | void)[] = [];
let requests = 0;

beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server.stop();
});
beforeEach(async () => {
  redis = server.client();
  await redis.flushall();
  sim = simFleet(redis, { tokens: ['clawdinator-2', 'clawdinator-3'] });
  standin = await new GitHubStandin({
    appId: APP_ID,
    installationId: INSTALLATION_ID,
    publicKey: appKey.publicKey,
    repo: REPO,
    files: { [PATH]: `${JSON.stringify({ 'clawdinator-1': member }, null, 2)}\n` },
  }).start();
  logged = [];
  closers = [() => sim.close(), () => standin.stop()];
});
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
});

/** `syncUpdates`: the first two registry updates start together (both read the same sha). */
function start(options: { syncUpdates?: boolean } = {}) {
  const log = createLogger(
    'debug',
    new Writable({
      write(chunk, _enc, done) {
        logged.push(String(chunk));
        done();
      },
    }),
  );
  const github = new GitHubRegistryStore({
    installation: createGitHubInstallation({
      appId: APP_ID,
      installationId: INSTALLATION_ID,
      privateKeyPem: appKey.privateKeyPem,
      apiUrl: standin.url,
      log,
      retryBaseMs: 1,
    }),
    repo: REPO,
    branch: 'main',
    path: PATH,
    retryDelayMs: 5,
  });
  const registryStore: RegistryStore = options.syncUpdates ? synchronized(github) : github;
  const fleet: FleetDeps = {
    ...sim.fleet,
    registryStore,
    deployer: new SimDeployer({
      cloud: sim.cloud,
      registry: registryStore,
      settings: SIM_INFRA_SETTINGS,
      outdir: `${sim.dir}/cdktf.out`,
      bucket: SIM_BUCKET,
    }),
  };
  const types = new JobTypes(
    jobTypes({ redis, registry: async () => (await github.read()).registry, memory: sim.memory, fleet }),
  );
  const connection = { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null };
  const worker = startWorker(
    FLEET_QUEUE,
    {
      connection,
      redis: server.client(),
      types,
      publicKey: async (id) => (id === 'operator:ops' ? signer.publicKey : null),
      policy: { policy: {}, redis, agentRequestsPerHour: 3 },
      log,
      stepSigner: testStepSigner,
    },
    lifecycleSettings,
  );
  const enqueuer = new Enqueuer(connection, server.client(), types, { keyId: 'operator:ops', key: signer.privateKey });
  const queue = new Queue(FLEET_QUEUE, { connection });
  closers.push(
    () => worker.close(),
    () => enqueuer.close(),
    () => queue.close(),
  );
  return {
    github,
    queue,
    async spawn(name: string): Promise<Job<Envelope>> {
      const { jobId } = await enqueuer.enqueue({
        type: 'spawn',
        data: { name },
        principal: operator,
        requestId: `req-${name}-${++requests}`,
      });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const state = await queue.getJobState(jobId);
        if (state === 'completed' || state === 'failed') return (await queue.getJob(jobId)) as Job<Envelope>;
        if (Date.now() > deadline) throw new Error(`${jobId} did not finish (state ${state})`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

/**
 * The production store, with its first two updates held until both have begun and the
 * stand-in set to answer their two reads together: a stale-sha race that cannot be missed.
 */
function synchronized(store: GitHubRegistryStore): RegistryStore {
  const waiting: (() => void)[] = [];
  return {
    read: () => store.read(),
    preflight: () => store.preflight(),
    async update(mutator, options) {
      if (waiting.length < 2) {
        const turn = new Promise<void>((resolve) => waiting.push(resolve));
        if (waiting.length === 2) {
          standin.holdReads(2);
          for (const go of waiting) go();
        }
        await turn;
      }
      return store.update(mutator, options);
    },
  };
}

const registryNow = (): FleetRegistry => JSON.parse(standin.files.get(PATH) as string);

async function expectNothingCreated(name: string): Promise<void> {
  expect(standin.commits).toEqual([]);
  expect(Object.keys(registryNow())).toEqual(['clawdinator-1']);
  expect(await sim.cloud.secretExists(`clawdinator/host/${name}/agent-key`)).toBe(false);
  expect(sim.cloud.calls.byOperation.CreateSecret).toBeUndefined();
  expect(await sim.cloud.listKeys(SIM_BUCKET, 'bootstrap/')).toEqual([]);
  expect(sim.cloud.calls.byOperation.RunInstances).toBeUndefined();
}

describe('spawn with the registry on GitHub', () => {
  it('two spawns at once: both entries committed (one stale-sha retry), messages name who asked', async () => {
    const { spawn } = start({ syncUpdates: true });
    const [a, b] = await Promise.all([spawn('clawdinator-2'), spawn('clawdinator-3')]);
    expect(a.failedReason).toBeUndefined();
    expect(b.failedReason).toBeUndefined();
    expect(a.returnvalue.summary).toMatch(/^clawdinator-2 online/);
    expect(b.returnvalue.summary).toMatch(/^clawdinator-3 online/);
    expect(standin.shaMismatches).toBeGreaterThanOrEqual(1);
    expect(Object.keys(registryNow()).sort()).toEqual(['clawdinator-1', 'clawdinator-2', 'clawdinator-3']);
    expect(standin.commits.map((c) => c.message).sort()).toEqual([
      'fleet: spawn clawdinator-2 — requested by operator ops via the CLI',
      'fleet: spawn clawdinator-3 — requested by operator ops via the CLI',
    ]);
    expect(registryNow()['clawdinator-3']?.agentPublicKey).toContain('PUBLIC KEY');
    expect(sim.cloud.calls.byOperation.RunInstances).toBe(2);
    // One App, one installation token for every call of both jobs.
    expect(standin.mints).toBe(1);
  });

  it('a protected registry branch: refused in the checks, naming cause and fix; nothing created', async () => {
    standin.protectedBranch = true;
    const { spawn } = start();
    const job = await spawn('clawdinator-3');
    expect(job.failedReason).toBe(
      `refused: branch main of ${REPO} is protected, so the fleet registry's commits would be refused: give the registry an unprotected branch (CLAWDINATOR_GITHUB_REGISTRY_BRANCH), or let the GitHub App bypass the protection and set CLAWDINATOR_GITHUB_REGISTRY_PROTECTED_BRANCH=allow`,
    );
    expect(job.attemptsMade).toBe(1);
    await expectNothingCreated('clawdinator-3');
  });

  it('an App with Contents read only: refused in the checks, naming the permission; nothing created', async () => {
    standin.permissions = { contents: 'read', metadata: 'read' };
    const { spawn } = start();
    const job = await spawn('clawdinator-3');
    expect(job.failedReason).toMatch(
      /^refused: the GitHub App's installation 99 has Contents: read, and the fleet registry .* needs Contents: read and write: give the GitHub App "Contents: Read and write" on openclaw\/clawdinators .*$/,
    );
    expect(job.attemptsMade).toBe(1);
    await expectNothingCreated('clawdinator-3');
  });

  it('a commit refused at the registry step anyway: a final error with cause and fix, the host key undone', async () => {
    // A rule the preflight cannot see (e.g. a ruleset on an older GHES): the PUT is refused.
    standin.failPut = {
      status: 422,
      message: 'Repository rule violations found\n\nChanges must be made through a pull request.',
    };
    const { spawn, queue } = start();
    const job = await spawn('clawdinator-3');
    expect(job.failedReason).toBe(
      `clawdinator-3: registry failed: GitHub refused the commit to the fleet registry ${REPO}@main:${PATH} (HTTP 422: Repository rule violations found Changes must be made through a pull request.): the branch is protected or under repository rules: give the registry an unprotected branch (CLAWDINATOR_GITHUB_REGISTRY_BRANCH), or let the GitHub App bypass the protection and set CLAWDINATOR_GITHUB_REGISTRY_PROTECTED_BRANCH=allow; undone: no registry entry, host key or bundle left`,
    );
    expect(job.attemptsMade).toBe(1);
    expect(sim.cloud.calls.byOperation.CreateSecret).toBe(1);
    expect(await sim.cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(false);
    expect(standin.commits).toEqual([]);
    expect(Object.keys(registryNow())).toEqual(['clawdinator-1']);
    expect(await sim.cloud.listKeys(SIM_BUCKET, 'bootstrap/')).toEqual([]);
    expect(sim.cloud.calls.byOperation.RunInstances).toBeUndefined();

    // Planted secrets: the App key and every installation token are in no output of the job.
    const outputs = [
      ...logged,
      job.failedReason ?? '',
      JSON.stringify(job.data),
      JSON.stringify(job.stacktrace),
      JSON.stringify((await queue.getJobLogs(job.id as string)).logs),
      await sim.memory.read(`audit/${new Date().toISOString().slice(0, 10)}.md`).then((r) => r.content.toString()),
    ].join('\n');
    expect(logged.length).toBeGreaterThan(0);
    expect(standin.tokens.length).toBeGreaterThan(0);
    for (const token of standin.tokens) expect(outputs).not.toContain(token);
    expect(outputs).not.toContain(appKey.privateKeyPem.split('\n')[1]);
    expect(outputs).not.toMatch(/PRIVATE KEY|ghs_/);
  });
});
