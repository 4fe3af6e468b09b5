// Every lifecycle job has one end, whatever ends it: the last attempt failed, a removal. The
// real worker and job types on a real redis-server, the simulated cloud and deployer; the
// failures are put in with deployer wrappers. What is checked is what the issue found
// missing: the undo (the name free again, nothing left in the registry, secrets or bucket),
// the spawn-rate slot given back, the reservation of a retire released, exactly one audit
// line and one final message that names the step, the cause and the next command.
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { beforeEach, describe, expect, it } from 'vitest';
import type { SimCloud } from '../../../jobs/cloud/sim.js';
import type { Deployer } from '../../../jobs/deploy/types.js';
import type { Envelope } from '../../../jobs/engine/envelope.js';
import { keys } from '../../../jobs/engine/keys.js';
import type { FileRegistryStore } from '../../../jobs/registry/file.js';
import type { MemoryStore } from '../../../memory/store.js';
import { SIM_BUCKET as BUCKET } from '../../support/fleet.js';
import { type LifecycleOptions, lifecycleSuite } from '../../support/lifecycle.js';
import { until } from '../../support/until.js';

let redis: Redis;
let cloud: SimCloud;
let registry: FileRegistryStore;
let memory: MemoryStore;
const suite = lifecycleSuite({ tokens: ['clawdinator-3'] });
beforeEach(() => {
  redis = suite.redis;
  ({ cloud, registry, memory } = suite.sim);
});

const SPAWN_RATE = 'clawdinator:spawn-rate';
const names = async () => Object.keys((await registry.read()).registry);
const day = () => new Date().toISOString().slice(0, 10);
const auditLines = async (jobId: string) =>
  (await memory.read(`audit/${day()}.md`)).content
    .toString()
    .split('\n')
    .filter((l) => l.includes(`job=${jobId} `));
const results = async (jobId: string) =>
  (await redis.xrange(keys.events, '-', '+'))
    .map(([, f]) => JSON.parse(f[1] as string).event)
    .filter((e) => e.kind === 'result' && e.jobId === jobId);

/** A deployer whose plan (or apply) fails the first `times` calls, as a cloud quota would. */
function failing(step: 'plan' | 'apply', times: number, message: string): LifecycleOptions['deployer'] {
  let left = times;
  return (sim: Deployer): Deployer => ({
    async planInstance(name, o, c) {
      if (step === 'plan' && left-- > 0) throw new Error(message);
      return sim.planInstance(name, o, c);
    },
    async applyInstance(name, o, c) {
      if (step === 'apply' && left-- > 0) throw new Error(message);
      return sim.applyInstance(name, o, c);
    },
  });
}

describe('one end for every lifecycle job', () => {
  it('a spawn that fails on its last attempt is undone: the name is free, nothing left, the rate slot back', async () => {
    const h = suite.harness({ deployer: failing('plan', 3, 'quota exceeded for t3.large in eu-central-1') });
    const job = await h.run('spawn', { name: 'clawdinator-3' });
    const jobId = job.id as string;
    expect(job.attemptsMade).toBe(3);
    expect(job.failedReason).toBe(
      'clawdinator-3: plan failed: quota exceeded for t3.large in eu-central-1; undone: no registry entry, host key or bundle left',
    );
    // Nothing of it is left: no registry entry, no host key, no bundle, no launch.
    expect(await names()).toEqual(['clawdinator-1']);
    expect(await cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(false);
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-3/')).toEqual([]);
    expect(cloud.calls.byOperation.RunInstances).toBeUndefined();
    // Nothing was created: its spawn-rate slot is given back; the member is free.
    expect(await redis.zscore(SPAWN_RATE, jobId)).toBeNull();
    expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBeNull();
    expect(await redis.get(keys.finalized(jobId))).toBe('done');
    expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
    const message =
      'spawn clawdinator-3 failed at plan: quota exceeded for t3.large in eu-central-1. Nothing was left behind; run `clawdinator fleet spawn clawdinator-3` again.';
    expect(await auditLines(jobId)).toEqual([
      expect.stringMatching(
        new RegExp(`job=${jobId} operator ops spawn name:clawdinator-3 → failed: ${literal(message)}$`),
      ),
    ]);
    expect(await results(jobId)).toEqual([expect.objectContaining({ ok: false, text: message })]);
    const log = (await h.queue.getJobLogs(jobId)).logs;
    expect(log.at(-1)).toBe(`ended: ${message}`);

    // The name is free again: the same spawn now goes through.
    const again = await h.run('spawn', { name: 'clawdinator-3' });
    expect(again.returnvalue.summary).toMatch(/^clawdinator-3 online: /);
  });

  it('a spawn whose apply fails on every attempt after launching: the instance is gone, the name free, the cause kept', async () => {
    const h = suite.harness();
    // Terraform's own text, as the simulated apply prints it after RunInstances (each attempt
    // launches or imports, then fails before the state is saved).
    cloud.faults.arm('apply', {
      times: 3,
      message: [
        "Error: waiting for EC2 Instance (i-0123) create: unexpected state 'shutting-down'",
        '',
        'The instance terminated: Server.InternalError: Internal error on launch; token=ghs_plantedsecret0123456789abcdefABCDEF0123',
      ].join('\n'),
    });
    const job = await h.run('spawn', { name: 'clawdinator-3' });
    const jobId = job.id as string;
    expect(job.attemptsMade).toBe(3);
    // Launched once, adopted by the retries, terminated by the undo: none runs.
    expect(cloud.calls.byOperation.RunInstances).toBe(1);
    expect(
      (await cloud.listFleetInstances()).filter((i) => i.name === 'clawdinator-3' && i.state !== 'shutting-down'),
    ).toEqual([]);
    expect(await names()).toEqual(['clawdinator-1']);
    expect(await cloud.secretExists('clawdinator/host/clawdinator-3/agent-key')).toBe(false);
    expect(await cloud.listKeys(BUCKET, 'bootstrap/clawdinator-3/')).toEqual([]);
    // The apply ran: something was created, the slot is not given back.
    expect(await redis.zscore(SPAWN_RATE, jobId)).not.toBeNull();
    const [result] = await results(jobId);
    const cause =
      "terraform apply failed for clawdinator-3: waiting for EC2 Instance (i-0123) create: unexpected state 'shutting-down': The instance terminated: Server.InternalError: Internal error on launch; token=[redacted]";
    expect(result?.text).toMatch(
      new RegExp(
        `^spawn clawdinator-3 failed at apply: ${literal(cause)} Undone: terminated i-[0-9a-f]+\\. Left: the IAM role clawdinator-3 and the instance profile clawdinator-3 \\(unused; a new spawn of clawdinator-3 adopts them\\); run \`clawdinator fleet spawn clawdinator-3\` again\\.$`,
      ),
    );
    // The cause is in the job's log too, terraform's lines as it printed them, the secret redacted.
    const { logs } = await h.queue.getJobLogs(jobId);
    expect(logs).toContain("Error: waiting for EC2 Instance (i-0123) create: unexpected state 'shutting-down'");
    expect(logs.join('\n')).not.toContain('ghs_plantedsecret');
    expect(JSON.stringify(await redis.xrange(keys.events, '-', '+'))).not.toContain('ghs_plantedsecret');
    expect(job.failedReason).not.toContain('ghs_plantedsecret');

    // The name is free: a new spawn adopts the role and profile left, and comes online.
    const again = await h.run('spawn', { name: 'clawdinator-3' });
    expect(again.returnvalue.summary).toMatch(/^clawdinator-3 online: /);
    expect(cloud.calls.byOperation.CreateRole).toBe(1);
  });

  it('a retire that fails on its last attempt releases its reservation: a second retire runs at once', async () => {
    const h = suite.harness({ deployer: failing('apply', 0, '') });
    await h.run('spawn', { name: 'clawdinator-3' });
    await suite.closeStarted();
    const broken = suite.harness({
      deployer: (sim) => ({
        planInstance: (name, o, c) => sim.planInstance(name, o, c),
        async applyInstance(name, o, c) {
          if (o.destroy) throw new Error('RequestLimitExceeded: Request limit exceeded.');
          return sim.applyInstance(name, o, c);
        },
      }),
    });
    const first = await broken.run('retire', { name: 'clawdinator-3' });
    const jobId = first.id as string;
    expect(first.attemptsMade).toBe(3);
    expect(first.failedReason).toBe('clawdinator-3: apply failed: RequestLimitExceeded: Request limit exceeded.');
    expect(await redis.get(keys.retiring('clawdinator-3'))).toBeNull();
    const message =
      "retire clawdinator-3 failed at apply: RequestLimitExceeded: Request limit exceeded. clawdinator-3's stack may be partly destroyed; run `clawdinator fleet retire clawdinator-3 --yes` again: it goes on from what is there.";
    expect(await results(jobId)).toEqual([expect.objectContaining({ ok: false, text: message })]);
    expect(await auditLines(jobId)).toHaveLength(1);
    await suite.closeStarted();

    const second = await suite.harness().run('retire', { name: 'clawdinator-3' });
    expect(second.failedReason).toBeUndefined();
    expect(second.returnvalue.summary).toMatch(/^clawdinator-3 retired: i-[0-9a-f]+ terminated$/);
    expect(await names()).toEqual(['clawdinator-1']);
  });

  it('a spawn removed while it waits for its host is finalized once, by one of two racing workers', async () => {
    // The host never reports its SSM agent online: the job waits, re-delayed, at ssm-online.
    const quiet: LifecycleOptions['deployer'] = (sim) => ({
      planInstance: (name, o, c) => sim.planInstance(name, o, c),
      async applyInstance(name, o, c) {
        const out = await sim.applyInstance(name, o, c);
        if (out.instanceId !== null) cloud.setPingStatus(out.instanceId, 'ConnectionLost');
        return out;
      },
    });
    const a = suite.harness({ deployer: quiet });
    suite.harness({ deployer: quiet });
    const { jobId } = await a.enqueuer('operator').enqueue({
      type: 'spawn',
      data: { name: 'clawdinator-3' },
      principal: { kind: 'cli', operator: 'ops' },
      requestId: 'removed-while-waiting',
    });
    const waiting = await until('the spawn to wait for its host', async () => {
      const job = (await a.queue.getJob(jobId)) as Job<Envelope> | undefined;
      return job?.data.steps?.running !== undefined && (await a.queue.getJobState(jobId)) === 'delayed' && job;
    });
    const applied = waiting.data.steps?.apply as { instanceId: string } | undefined;
    const instanceId = applied?.instanceId as string;
    // Removed by hand (not `jobs cancel`, which flags a started job): no processor runs again.
    // BullMQ refuses (0) to remove a locked job: between our look and the remove, the delay
    // may have run out and a worker taken it for its next look; remove it between two runs.
    await until('the job to be removed between two runs', async () => (await a.queue.remove(jobId)) === 1);
    await until('the removal to be finalized', async () => (await redis.get(keys.finalized(jobId))) === 'done');

    const message = `spawn clawdinator-3 stopped at ssm-online: removed: ${jobId} was removed before it ended. Left: ${instanceId} and its registry entry clawdinator-3; run \`clawdinator fleet retire clawdinator-3 --yes\` to remove them, or \`clawdinator fleet replace clawdinator-3 --yes\` for a new host.`;
    expect(await results(jobId)).toEqual([expect.objectContaining({ ok: false, text: message })]);
    expect(await auditLines(jobId)).toEqual([expect.stringContaining(`→ removed: ${message}`)]);
    expect(await redis.get(keys.instanceLock('clawdinator-3'))).toBeNull();
    expect(await redis.hexists(keys.openJobs, jobId)).toBe(0);
    // After the apply, the instance and its entry stay (a retire removes them).
    expect(await names()).toEqual(['clawdinator-1', 'clawdinator-3']);
    expect((await cloud.describeInstance(instanceId)).state).toBe('running');
  });
});

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
