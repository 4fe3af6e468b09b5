// The replace job end to end: the real worker on a real redis-server, the simulated cloud
// with instant timings, the simulated deployer (the real synth), the file registry and
// memory in a temp dir. clawdinator-3 is spawned for real first, then replaced. Every host
// that is online writes its heartbeat (with its own instance id), as its worker would.
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { beforeEach, describe, expect, it } from 'vitest';
import type { SimCloud } from '../../../jobs/cloud/sim.js';
import type { Principal } from '../../../jobs/engine/envelope.js';
import { keys } from '../../../jobs/engine/keys.js';
import type { FileRegistryStore } from '../../../jobs/registry/file.js';
import type { MemoryStore } from '../../../memory/store.js';
import { SIM_AMI as AMI } from '../../support/fleet.js';
import { AGENT as agent, type LifecycleOptions, lifecycleSuite } from '../../support/lifecycle.js';

const AMI2 = 'ami-00000000000000b22';

let redis: Redis;
let cloud: SimCloud;
let registry: FileRegistryStore;
let memory: MemoryStore;
const suite = lifecycleSuite({
  // The newer image last: spawn picks the newest, so AMI2 goes first.
  amis: [
    { name: 'clawdinator-nixos-next', imageId: AMI2 },
    { name: 'clawdinator-nixos', imageId: AMI },
  ],
});
beforeEach(() => {
  redis = suite.redis;
  ({ cloud, registry, memory } = suite.sim);
});

function start(options: LifecycleOptions = {}) {
  const h = suite.harness(options);
  return {
    spawn: (name: string) => h.run('spawn', { name }),
    replace: (name: string, ami?: string, principal?: Principal) =>
      h.run('replace', ami === undefined ? { name } : { name, ami }, principal),
  };
}

const instanceOf = async (name: string) => (await cloud.listFleetInstances()).find((i) => i.name === name);
const entryOf = async (name: string) => (await registry.read()).registry[name];

describe('replace', () => {
  it('replaces a spawned clawdinator-3: a new instance online, the old one terminated, recorded', async () => {
    const { spawn, replace } = start();
    const spawned = await spawn('clawdinator-3');
    const oldId = spawned.returnvalue.instanceId as string;
    const before = readFileSync(registry.path, 'utf8');

    const job = await replace('clawdinator-3');
    expect(job.failedReason).toBeUndefined();
    const newId = job.returnvalue.instanceId as string;
    expect(newId).not.toBe(oldId);
    expect(job.returnvalue.summary).toBe(`clawdinator-3 replaced: ${oldId} → ${newId} (${AMI})`);
    expect(Object.keys(job.data.steps ?? {}).filter((s) => !s.includes(':'))).toEqual([
      'checks',
      'plan',
      'apply',
      'running',
      'ssm-online',
      'heartbeat',
      'record',
    ]);
    expect((await cloud.describeInstance(oldId)).state).toBe('terminated');
    const now = await instanceOf('clawdinator-3');
    expect(now?.instanceId).toBe(newId);
    expect(now?.state).toBe('running');
    expect((await cloud.pingStatus([newId])).get(newId)).toBe('Online');
    expect(JSON.parse((await redis.get(keys.heartbeat('clawdinator-3'))) as string).heartbeat.instanceId).toBe(newId);
    // No AMI given: the registry is untouched.
    expect(readFileSync(registry.path, 'utf8')).toBe(before);
    const ops = (await memory.read('ops.md')).content.toString();
    expect(ops).toContain(
      `replace clawdinator-3: ${oldId} → ${newId} (${AMI}) — requested by operator ops (job replace-req-replace-clawdinator-3-2)`,
    );
    const day = new Date().toISOString().slice(0, 10);
    expect((await memory.read(`audit/${day}.md`)).content.toString()).toContain(
      `replace name:clawdinator-3 → replaced: clawdinator-3 replaced: ${oldId} → ${newId}`,
    );
  });

  it('replaces onto a given AMI: recorded in the registry, the new host runs it', async () => {
    const { spawn, replace } = start();
    const oldId = (await spawn('clawdinator-3')).returnvalue.instanceId as string;
    expect((await cloud.describeInstance(oldId)).imageId).toBe(AMI);
    const job = await replace('clawdinator-3', AMI2);
    expect(job.failedReason).toBeUndefined();
    const newId = job.returnvalue.instanceId as string;
    expect(job.returnvalue.summary).toBe(`clawdinator-3 replaced: ${oldId} → ${newId} (${AMI2})`);
    expect((await cloud.describeInstance(newId)).imageId).toBe(AMI2);
    expect((await cloud.describeInstance(oldId)).state).toBe('terminated');
    expect((await entryOf('clawdinator-3'))?.ami).toBe(AMI2);
    expect((await entryOf('clawdinator-1'))?.ami).toBe(AMI);
    expect(readFileSync(registry.historyPath, 'utf8')).toContain(
      `fleet: replace clawdinator-3 with ${AMI2} — requested by operator ops via the CLI`,
    );
  });

  it('refuses an unknown AMI, an unknown name and an agent before anything changes', async () => {
    const { spawn, replace } = start();
    const oldId = (await spawn('clawdinator-3')).returnvalue.instanceId as string;
    const before = readFileSync(registry.path, 'utf8');
    const launches = cloud.calls.byOperation.RunInstances;

    const ami = await replace('clawdinator-3', 'ami-0000000000000dead');
    expect(ami.failedReason).toBe('refused: AMI ami-0000000000000dead does not exist');
    expect(ami.attemptsMade).toBe(1);
    const unknown = await replace('clawdinator-9');
    expect(unknown.failedReason).toBe('refused: clawdinator-9 is not in the registry');
    const byAgent = await replace('clawdinator-3', undefined, agent);
    expect(byAgent.failedReason).toBe(
      "an agent's replace needs a human's confirmation in the ops channel, and none is configured (CLAWDINATOR_OPS_CHANNEL_ID)",
    );

    expect(readFileSync(registry.path, 'utf8')).toBe(before);
    expect(cloud.calls.byOperation.TerminateInstances).toBeUndefined();
    expect(cloud.calls.byOperation.RunInstances).toBe(launches);
    expect((await instanceOf('clawdinator-3'))?.instanceId).toBe(oldId);
  });
});
