// The GitHub schedules on a real redis-server with the real worker: the fleet-wide org sync
// runs once per period whatever the number of workers (three here, each upserting the fleet's
// schedules as `clawdinator worker` does), against the simulated GitHub; the agent's token
// refresh lives on its host's own queue, is run by that host's worker for itself, and is
// refused for another host.
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Job, Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FLEET_QUEUE, hostQueue, keys } from '../../../jobs/engine/keys.js';
import { JobTypes, type Signer } from '../../../jobs/engine/queues.js';
import { FLEET_SCHEDULES, removeSchedules, upsertSchedules } from '../../../jobs/engine/schedulers.js';
import { AgentTokens } from '../../../jobs/github/agent-token.js';
import { syncOrg } from '../../../jobs/github/org-sync.js';
import { type GitHubJobDeps, hostSchedules, TOKEN_SCHEDULE_ID } from '../../../jobs/github/setup.js';
import { SimOrg } from '../../../jobs/github/sim.js';
import { GITHUB_SYNC, GITHUB_SYNC_EVERY_MS, githubSyncJob } from '../../../jobs/types/github-sync.js';
import { GITHUB_TOKEN, githubTokenJob } from '../../../jobs/types/github-token.js';
import { healthSweep } from '../../../jobs/types/health-sweep.js';
import { type OrgWorld, orgWorld } from '../../support/github-org.js';
import { fastSettings, harness, keyPair, startWorker } from '../../support/jobs.js';
import { startRedis, type TestRedis } from '../../support/redis.js';

const SYNC_ID = 'clawdinator-github-sync';
// `every` schedules run in the middle of their slots (schedulers.ts): a 15-minute sync or a
// 45-minute refresh would first run minutes after the upsert. The runs below use the same
// definitions with a period a test can wait for; the real periods are asserted as defined.
const TEST_EVERY_MS = 10_000;
let server: TestRedis;
let conn: { host: string; port: number };
let world: OrgWorld | undefined;
let closers: (() => Promise<void>)[] = [];
const h = harness();
const scheduleKeys = keyPair();
h.keys.schedule = scheduleKeys.publicKey;
const signer: Signer = { keyId: 'schedule', key: scheduleKeys.privateKey };

beforeAll(async () => {
  server = await startRedis();
  conn = { host: '127.0.0.1', port: server.port };
});
afterAll(async () => {
  await server.stop();
});
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
  await world?.stop();
  world = undefined;
  await server.client().flushall();
});

function queue(name: string): Queue {
  const q = new Queue(name, { connection: conn });
  closers.push(() => q.close());
  return q;
}

function types(github: GitHubJobDeps): JobTypes {
  return new JobTypes([
    healthSweep({ redis: server.client(), fleet: async () => [] }),
    githubSyncJob({ github }),
    githubTokenJob({ github }),
  ]);
}

async function until<T>(fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('GitHub schedules', () => {
  it('three workers: the org sync runs once in its period, the next run one period later', async () => {
    const org = new SimOrg('acme');
    org.addRepo('widgets');
    org.addItem('widgets', { kind: 'issue', title: 'x', author: 'alice', labels: [], comments: 0 });
    world = await orgWorld(org);
    const w = world;
    expect(FLEET_SCHEDULES).toContainEqual({ id: SYNC_ID, type: GITHUB_SYNC, every: GITHUB_SYNC_EVERY_MS, data: {} });
    expect(GITHUB_SYNC_EVERY_MS).toBe(15 * 60_000);
    const defs = FLEET_SCHEDULES.map((d) => (d.id === SYNC_ID ? { ...d, every: TEST_EVERY_MS } : d));

    const completed: Job[] = [];
    const failed: string[] = [];
    const hosts = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
    // Each host: its worker's own GitHub deps (the real sync), its fleet-queue worker, and its
    // schedule upserts, all at once.
    const upserts = hosts.map((host) => {
      const github: GitHubJobDeps = {
        sync: () => syncOrg({ installation: w.installation, memory: w.memory, org: 'acme' }),
      };
      const t = types(github);
      const worker = startWorker(FLEET_QUEUE, { ...h.deps(server.client(), conn), types: t }, fastSettings);
      closers.push(() => worker.close());
      worker.worker.on('completed', (job) => {
        if (job.repeatJobKey === SYNC_ID) completed.push(job);
      });
      worker.worker.on('failed', (job, err) => failed.push(`${job?.id}: ${err.message}`));
      return () =>
        upsertSchedules({
          queue: queue(FLEET_QUEUE),
          redis: server.client(),
          signer,
          types: t,
          defs,
          workerId: `${host}-1`,
        });
    });
    await Promise.all(upserts.map((u) => u()));
    await until(async () => (completed.length > 0 ? true : undefined));
    // The workers keep upserting every minute: doing it again changes nothing and runs nothing.
    await Promise.all(upserts.map((u) => u()));
    await new Promise((r) => setTimeout(r, 1500));

    expect(failed).toEqual([]);
    expect(completed).toHaveLength(1);
    expect(world.sim.graphqlRequests.filter((r) => r.operation === 'OrgWatermark')).toHaveLength(1);
    expect(readFileSync(join(world.memoryDir, 'github/issues.md'), 'utf8')).toContain('## acme/widgets');
    const fleet = queue(FLEET_QUEUE);
    expect((await fleet.getJobSchedulers()).filter((s) => s.key === SYNC_ID)).toHaveLength(1);
    const next = (await fleet.getJobs(['delayed'])).filter((j) => j.repeatJobKey === SYNC_ID);
    expect(next).toHaveLength(1);
    const slot = (job: Job) => Number(String(job.id).split(':').pop());
    expect(slot(next[0] as Job) - slot(completed[0] as Job)).toBe(TEST_EVERY_MS);
  }, 60_000);

  it('the token refresh: on the host’s own queue, run by its worker for itself; refused for another host', async () => {
    const org = new SimOrg('openclaw');
    org.addRepo('openclaw');
    org.addRepo('clawdinators');
    world = await orgWorld(org);
    const dir = join(mkdtempSync(join(tmpdir(), 'clawdinator-token-')), 'github');
    const github: GitHubJobDeps = {
      agentToken: {
        host: 'clawdinator-2',
        refreshMs: 45 * 60_000,
        tokens: new AgentTokens({
          installation: world.installation,
          policy: {
            repositories: [],
            permissions: { contents: 'write', metadata: 'read' },
            registryRepo: 'openclaw/clawdinators',
          },
          targets: { envFile: join(dir, 'github-app.env'), ghConfigDir: dir, gid: 4242 },
          apiUrl: world.sim.url,
        }),
      },
    };
    const defs = hostSchedules(github);
    expect(defs).toEqual([
      { id: TOKEN_SCHEDULE_ID, type: GITHUB_TOKEN, every: 45 * 60_000, data: { host: 'clawdinator-2' } },
    ]);
    expect(hostSchedules(undefined)).toEqual([]);
    const agentToken = github.agentToken as NonNullable<GitHubJobDeps['agentToken']>;
    const testDefs = hostSchedules({ agentToken: { ...agentToken, refreshMs: TEST_EVERY_MS } });
    const own = queue(hostQueue('clawdinator-2'));
    const t = types(github);
    const upserted = await upsertSchedules({
      queue: own,
      redis: server.client(),
      signer,
      types: t,
      defs: testDefs,
      workerId: 'clawdinator-2-1',
      leaseKey: keys.hostSchedulerLeader('clawdinator-2'),
    });
    expect(upserted).toEqual({ leader: true, upserted: [TOKEN_SCHEDULE_ID], removed: [], verified: true });
    // The fleet's lease is another key: a host's upsert never waits for the fleet's leader.
    expect(await server.client().exists(keys.schedulerLeader)).toBe(0);

    const worker = startWorker(
      hostQueue('clawdinator-2'),
      // The worker admits its host's schedules beside the fleet's, as `clawdinator worker` does.
      { ...h.deps(server.client(), conn), types: t, schedules: testDefs },
      fastSettings,
    );
    closers.push(() => worker.close());
    const done = await new Promise<Job>((resolve) => worker.worker.on('completed', resolve));
    expect(done.returnvalue.summary).toMatch(/^token minted for 1 repositories, expires /);
    const token = world.sim.mints.find((m) => m.body.repositories !== undefined)?.token as string;
    expect(world.sim.mints.find((m) => m.body.repositories !== undefined)?.body.repositories).toEqual(['openclaw']);
    expect(readFileSync(join(dir, 'github-app.env'), 'utf8')).toContain(`GITHUB_TOKEN=${token}\n`);
    expect(statSync(join(dir, 'github-app.env')).gid).toBe(4242);
    // Its slot is recorded for this host's queue: every host's refresh has this scheduler id
    // and runs in the same slots, so a fleet-wide key would let one host's run refuse the rest.
    expect(await server.client().keys('clawdinator:schedule-slot:*')).toEqual([
      expect.stringMatching(
        new RegExp(`^clawdinator:schedule-slot:${hostQueue('clawdinator-2')}:${TOKEN_SCHEDULE_ID}:\\d+$`),
      ),
    ]);
    // The result in Redis names the expiry, never the token.
    expect(JSON.stringify(done.returnvalue)).not.toContain(token);

    // Another host's worker given this job refuses it: the files live on their own host.
    const other = githubTokenJob({ github: { agentToken: { ...agentToken, host: 'clawdinator-3' } } });
    await expect(other.run({ data: { host: 'clawdinator-2' } } as Parameters<typeof other.run>[0])).rejects.toThrow(
      "refused: this worker does not write clawdinator-2's GitHub token",
    );

    // Retired: the host queue's schedules go (retire's cleanup step).
    expect(await removeSchedules(own)).toEqual([TOKEN_SCHEDULE_ID]);
    expect(await own.getJobSchedulers()).toEqual([]);
  }, 60_000);
});
