// The stray-cleanup job on the simulated fleet with the real worker: a stray instance (tagged
// as ours, unknown to the registry) is terminated; a registry member whose instance is gone
// is retired (its stack destroyed, entry, host key and bundle removed). Anything that is not
// a stray is refused before anything changes.
import { beforeEach, describe, expect, it } from 'vitest';
import type { SimCloud } from '../../../jobs/cloud/sim.js';
import { keys } from '../../../jobs/engine/keys.js';
import type { FileRegistryStore } from '../../../jobs/registry/file.js';
import { agentKeySecret } from '../../../jobs/types/spawn.js';
import { SIM_AMI, SIM_BUCKET, simMember } from '../../support/fleet.js';
import { lifecycleSuite, OPERATOR } from '../../support/lifecycle.js';

let cloud: SimCloud;
let registry: FileRegistryStore;
const suite = lifecycleSuite({ tokens: ['clawdinator-1', 'clawdinator-2'] });
beforeEach(() => {
  ({ cloud, registry } = suite.sim);
});

let n = 0;
let harness: ReturnType<typeof suite.harness> | undefined;
beforeEach(() => {
  harness = undefined;
});
async function cleanup(target: string) {
  // One worker per test: each harness has keys of its own.
  harness ??= suite.harness();
  const h = harness;
  const { jobId } = await h.enqueuer('operator').enqueue({
    type: 'stray-cleanup',
    data: { target },
    principal: OPERATOR,
    requestId: `cleanup-${++n}`,
  });
  return h.finished(jobId);
}

const live = async () =>
  (await cloud.listFleetInstances()).filter((i) => i.state !== 'terminated').map((i) => [i.name, i.instanceId]);

describe('stray-cleanup', () => {
  it('terminates an instance of ours that the registry does not know', async () => {
    const stray = await cloud.launchInstance({ name: 'clawdinator-7', ami: SIM_AMI, instanceType: 't3.large' });
    const job = await cleanup(stray);
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.summary).toBe(`${stray} (clawdinator-7) terminated: it was not in the registry`);
    expect((await cloud.describeInstance(stray)).state).toBe('terminated');
    expect((await live()).map(([name]) => name)).not.toContain('clawdinator-7');
  });

  it('retires a registry member whose instance is gone: stack destroyed, entry, host key and bundle removed', async () => {
    await registry.update((r) => ({ ...r, 'clawdinator-2': simMember('clawdinator-2') }), { message: 'test' });
    await cloud.putSecret(agentKeySecret('clawdinator-2'), 'a private key', { clientToken: 'test-token-0001' });
    await cloud.putJson(SIM_BUCKET, 'bootstrap/clawdinator-2/config.json', {});
    const job = await cleanup('clawdinator-2');
    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.summary).toBe('clawdinator-2 retired from the registry: it had no instance');
    expect(Object.keys((await registry.read()).registry)).not.toContain('clawdinator-2');
    expect(await cloud.secretExists(agentKeySecret('clawdinator-2'))).toBe(false);
    expect(await cloud.listKeys(SIM_BUCKET, 'bootstrap/clawdinator-2/')).toEqual([]);
  });

  it('one end when its last attempt fails: the step, the cause, what is left and the command to finish', async () => {
    const stray = await cloud.launchInstance({ name: 'clawdinator-7', ami: SIM_AMI, instanceType: 't3.large' });
    cloud.faults.arm('TerminateInstances', { code: 'RequestLimitExceeded', times: 3 });
    const job = await cleanup(stray);
    expect(job.attemptsMade).toBe(3);
    expect((await cloud.describeInstance(stray)).state).toBe('running');
    const results = (await suite.redis.xrange(keys.events, '-', '+'))
      .map(([, f]) => JSON.parse(f[1] as string).event)
      .filter((e) => e.kind === 'result' && e.jobId === job.id);
    expect(results).toEqual([
      expect.objectContaining({
        ok: false,
        text: expect.stringMatching(
          new RegExp(
            `^cleanup ${stray} failed at terminate: .*RequestLimitExceeded.* ${stray} still runs; run \`clawdinator fleet cleanup ${stray} --yes\` again: it goes on from what is there.$`,
          ),
        ),
      }),
    ]);
    const day = new Date().toISOString().slice(0, 10);
    const audit = (await suite.sim.memory.read(`audit/${day}.md`)).content.toString();
    expect(audit.split('\n').filter((l) => l.includes(`job=${job.id} `) && l.includes('→ failed:'))).toHaveLength(1);
    // Finished by the same command.
    const again = await cleanup(stray);
    expect(again.failedReason).toBeUndefined();
    expect((await cloud.describeInstance(stray)).state).toBe('terminated');
  });

  it('refuses what is not a stray, changing nothing', async () => {
    const member = (await live()).find(([name]) => name === 'clawdinator-1')?.[1] as string;
    const refusals = [
      [
        member,
        `refused: ${member} is clawdinator-1's instance, in the registry: retire or replace clawdinator-1 instead`,
      ],
      ['clawdinator-1', `refused: clawdinator-1 has an instance (${member}, running): it is not gone; use retire`],
      ['clawdinator-9', 'refused: clawdinator-9 is not in the registry'],
      ['i-0000000000000beef', 'refused: i-0000000000000beef is not an instance tagged as ours (app=clawdinator)'],
    ];
    for (const [target, reason] of refusals) {
      const job = await cleanup(target as string);
      expect(job.failedReason).toBe(reason);
    }
    expect((await live()).map(([name]) => name)).toEqual(['clawdinator-1']);
    expect(Object.keys((await registry.read()).registry)).toEqual(['clawdinator-1']);
  });

  it('refuses a target that is neither an instance id nor a member name when it is asked', async () => {
    const h = suite.harness();
    await expect(
      h.enqueuer('operator').enqueue({
        type: 'stray-cleanup',
        data: { target: 'everything' },
        principal: OPERATOR,
        requestId: 'cleanup-bad',
      }),
    ).rejects.toThrow(/stray-cleanup: invalid target/);
  });
});
