// The retire job end to end: the real worker on a real redis-server, the simulated cloud with
// instant timings, the simulated deployer (the real synth), the file registry and memory in
// a temp dir. clawdinator-3 is spawned for real first, then retired. Every host that is
// online (clawdinator-1 from the start) writes its heartbeat, as its worker would.
import { readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { beforeEach, describe, expect, it } from 'vitest';
import type { SimCloud } from '../../../jobs/cloud/sim.js';
import type { Principal } from '../../../jobs/engine/envelope.js';
import { hostQueue, keys } from '../../../jobs/engine/keys.js';
import type { FileRegistryStore } from '../../../jobs/registry/file.js';
import type { MemoryStore } from '../../../memory/store.js';
import { SIM_BUCKET as BUCKET } from '../../support/fleet.js';
import { AGENT as agent, type LifecycleOptions, lifecycleSuite } from '../../support/lifecycle.js';

let redis: Redis;
let cloud: SimCloud;
let registry: FileRegistryStore;
let memory: MemoryStore;
const suite = lifecycleSuite();
beforeEach(() => {
  redis = suite.redis;
  ({ cloud, registry, memory } = suite.sim);
});

function start(options: LifecycleOptions = {}) {
  const h = suite.harness(options);
  return {
    spawn: (name: string) => h.run('spawn', { name }),
    retire: (name: string, principal?: Principal) => h.run('retire', { name }, principal),
  };
}

const names = async () => Object.keys((await registry.read()).registry);
const instanceOf = async (name: string) => (await cloud.listFleetInstances()).find((i) => i.name === name);

describe('retire', () => {
  it('retires a spawned clawdinator-3: terminated, out of the registry, bundle and key gone, recorded', async () => {
    const { spawn, retire } = start();
    const spawned = await spawn('clawdinator-3');
    const instanceId = spawned.returnvalue.instanceId as string;
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-3/')).toContain('bootstrap/clawdinator-3/manifest.json');
    // Its worker keeps its agent's token refresh on its own queue, as every host's does.
    const ownQueue = new Queue(hostQueue('clawdinator-3'), { connection: redis });
    await ownQueue.upsertJobScheduler(
      'clawdinator-github-token',
      { every: 45 * 60_000 },
      { name: 'github-token', data: {} },
    );

    const job = await retire('clawdinator-3');
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.summary).toBe(`clawdinator-3 retired: ${instanceId} terminated`);
    expect(Object.keys(job.data.steps ?? {}).filter((s) => !s.includes(':'))).toEqual([
      'checks',
      'plan',
      'apply',
      'terminated',
      'registry',
      'cleanup',
      'record',
    ]);
    expect(await names()).toEqual(['clawdinator-1']);
    expect((await cloud.describeInstance(instanceId)).state).toBe('terminated');
    expect(await instanceOf('clawdinator-3')).toBeUndefined();
    expect(await instanceOf('clawdinator-1')).toBeDefined();
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-3/')).toEqual([]);
    expect(await cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(false);
    // The retired host's schedules went with it.
    expect(await ownQueue.getJobSchedulers()).toEqual([]);
    expect(await ownQueue.getDelayedCount()).toBe(0);
    await ownQueue.close();
    // The member's Discord token is the operators' to keep or delete: a respawn reuses it.
    expect(await cloud.secretExists('clawdinator/discord-token/clawdinator-3')).toBe(true);
    expect(readFileSync(registry.historyPath, 'utf8')).toContain(
      'fleet: retire clawdinator-3 — requested by operator ops via the CLI',
    );
    const ops = (await memory.read('ops.md')).content.toString();
    expect(ops).toMatch(
      new RegExp(
        `\\n- \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC retire clawdinator-3: ${instanceId} terminated — requested by operator ops \\(job retire-req-retire-clawdinator-3-2\\)\\n$`,
      ),
    );
    const day = new Date().toISOString().slice(0, 10);
    expect((await memory.read(`audit/${day}.md`)).content.toString()).toContain(
      `retire name:clawdinator-3 → retired: clawdinator-3 retired: ${instanceId} terminated`,
    );

    const again = await retire('clawdinator-3');
    expect(again.failedReason).toBe('refused: clawdinator-3 is not in the registry');
    expect(again.attemptsMade).toBe(1);
  });

  it('refuses to retire the last healthy host, and an unknown name; nothing is destroyed', async () => {
    const { spawn, retire } = start();
    await spawn('clawdinator-3');
    // clawdinator-1's worker stopped: clawdinator-3 is the only host running a worker.
    await redis.del(keys.heartbeat('clawdinator-1'));
    const before = readFileSync(registry.path, 'utf8');
    const last = await retire('clawdinator-3');
    expect(last.failedReason).toBe(
      'refused: retiring clawdinator-3 would leave the fleet without a healthy host running a worker: spawn another first',
    );
    expect(last.attemptsMade).toBe(1);
    const unknown = await retire('clawdinator-9');
    expect(unknown.failedReason).toBe('refused: clawdinator-9 is not in the registry');
    expect(readFileSync(registry.path, 'utf8')).toBe(before);
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
    expect(await instanceOf('clawdinator-3')).toBeDefined();
  });

  it('a forged heartbeat is no healthy host: the last one is not retired', async () => {
    const { spawn, retire } = start();
    await spawn('clawdinator-3');
    // clawdinator-1's worker stopped; a Redis writer says it is alive (the unsigned shape, and
    // its own last signed heartbeat with the expiry pushed out).
    const signed = JSON.parse((await redis.get(keys.heartbeat('clawdinator-1'))) as string);
    for (const forged of [
      JSON.stringify(signed.heartbeat),
      JSON.stringify({
        ...signed,
        expiresAt: Date.now() + 3_600_000,
        heartbeat: { ...signed.heartbeat, at: Date.now() },
      }),
    ]) {
      await redis.set(keys.heartbeat('clawdinator-1'), forged, 'EX', 600);
      const last = await retire('clawdinator-3');
      expect(last.failedReason).toBe(
        'refused: retiring clawdinator-3 would leave the fleet without a healthy host running a worker: spawn another first',
      );
    }
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
    expect(await names()).toEqual(['clawdinator-1', 'clawdinator-3']);
  });

  it('two retires of different members at once: one is refused, so a healthy host stays', async () => {
    const { spawn, retire } = start();
    await cloud.putSecret('clawdinator/discord-token/clawdinator-4', 'token-4', { clientToken: 'test-token-4' });
    await spawn('clawdinator-3');
    await spawn('clawdinator-4');
    // clawdinator-1's worker stopped: 3 and 4 each see the other as the healthy host left.
    await redis.del(keys.heartbeat('clawdinator-1'));
    const jobs = await Promise.all([retire('clawdinator-3'), retire('clawdinator-4')]);
    const refused = jobs.filter((j) => j.failedReason?.includes('without a healthy host'));
    expect(refused).toHaveLength(1);
    expect(jobs.filter((j) => j.failedReason === undefined)).toHaveLength(1);
    const left = (refused[0]?.data.signed.data as { name: string } | undefined)?.name;
    expect(await names()).toEqual(['clawdinator-1', left]);
    expect((await instanceOf(left ?? 'none'))?.state).toBe('running');
    expect(cloud.calls.byOperation.TerminateInstances).toBe(1);
    // Both reservations ended with their jobs: the member left can be retired once a peer is back.
    expect(await redis.keys(keys.retiring('*'))).toEqual([]);
  });

  it("fails an agent's retire of a peer when no ops channel is configured to ask a human", async () => {
    const { spawn, retire } = start();
    await spawn('clawdinator-3');
    const job = await retire('clawdinator-3', agent);
    expect(job.failedReason).toBe(
      "an agent's retire needs a human's confirmation in the ops channel, and none is configured (CLAWDINATOR_OPS_CHANNEL_ID)",
    );
    expect(await names()).toEqual(['clawdinator-1', 'clawdinator-3']);
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
  });

  it('a plan that is not destroy-only stops the job with its summary; nothing is applied', async () => {
    let applied = false;
    const { spawn, retire } = start({
      deployer: (sim) => ({
        async planInstance(name, o, c) {
          if (!o.destroy) return sim.planInstance(name, o, c);
          return {
            add: 1,
            change: 0,
            destroy: 1,
            resources: [{ address: 'aws_instance.host', action: 'replace' }],
          };
        },
        async applyInstance(name, o, c) {
          if (o.destroy) applied = true;
          return sim.applyInstance(name, o, c);
        },
      }),
    });
    await spawn('clawdinator-3');
    const job = await retire('clawdinator-3');
    expect(job.failedReason).toBe(
      'clawdinator-3: plan failed: plan for clawdinator-3 is not destroy-only: not applied (1 to add, 0 to change, 1 to destroy: aws_instance.host (replace))',
    );
    expect(applied).toBe(false);
    expect(await names()).toEqual(['clawdinator-1', 'clawdinator-3']);
    expect(await instanceOf('clawdinator-3')).toBeDefined();
  });
});
