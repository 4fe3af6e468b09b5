// The simulated cloud: its state machines on a manual clock, its AWS-like answers and errors,
// and a 500-instance fleet listed and pinged in the calls AWS would take.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HOST_DOCUMENT, hostCommandParameters } from '../../../infra/host-document.js';
import { ManualClock, scaledClock } from '../../../jobs/cloud/clock.js';
import { CloudError } from '../../../jobs/cloud/errors.js';
import { createSimCloud, instantSimTimings, type SimHost } from '../../../jobs/cloud/sim.js';

const timings = {
  instanceBootMs: 30_000,
  ssmOnlineMs: 60_000,
  instanceShutdownMs: 20_000,
  importMs: 600_000,
  imageAvailableMs: 120_000,
  commandMs: 5_000,
  switchMs: 90_000,
};
const doctorCommand = { document: HOST_DOCUMENT, parameters: hostCommandParameters({ action: 'doctor' }) };
const dir = mkdtempSync(join(tmpdir(), 'clawdinator-sim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function world(extra: Parameters<typeof createSimCloud>[0] = {}) {
  const clock = new ManualClock();
  const sim = createSimCloud({
    clock,
    timings,
    amis: [{ name: 'clawdinator-nixos-1', imageId: 'ami-seed' }],
    fleet: [{ name: 'clawdinator-1' }],
    secrets: { 'clawdinator/discord-token/clawdinator-1': 'token-1' },
    buckets: ['images'],
    ...extra,
  });
  return { clock, sim };
}

describe('instances', () => {
  it('boot pending → running → SSM Online, announce themselves, and shut down to terminated', async () => {
    const { clock, sim } = world();
    const online: SimHost[] = [];
    const offline: string[] = [];
    sim.onHostOnline((host) => online.push(host));
    sim.onHostOffline((host) => offline.push(host.name));
    // The seeded host is online from the start, and replayed to a new listener.
    expect(online.map((h) => h.name)).toEqual(['clawdinator-1']);

    const id = await sim.launchInstance({
      name: 'clawdinator-3',
      ami: 'ami-seed',
      instanceType: 't3.large',
      userData: 'CLAWDINATOR_NAME=clawdinator-3',
    });
    expect((await sim.describeInstance(id)).state).toBe('pending');
    expect((await sim.pingStatus([id])).get(id)).toBe('Unknown');

    await clock.advance(30_000);
    expect((await sim.describeInstance(id)).state).toBe('running');
    expect(online).toHaveLength(1);

    await clock.advance(60_000);
    expect((await sim.pingStatus([id])).get(id)).toBe('Online');
    expect(online[1]).toMatchObject({
      instanceId: id,
      name: 'clawdinator-3',
      userData: 'CLAWDINATOR_NAME=clawdinator-3',
    });
    expect(online[1]?.tags).toMatchObject({ app: 'clawdinator', Name: 'clawdinator-3' });

    expect(await sim.terminateInstance(id)).toEqual({ instanceId: id, state: 'shutting-down' });
    expect(offline).toEqual(['clawdinator-3']);
    expect((await sim.pingStatus([id])).get(id)).toBe('ConnectionLost');
    await clock.advance(20_000);
    expect((await sim.describeInstance(id)).state).toBe('terminated');
    expect((await sim.listFleetInstances()).map((i) => i.name)).toEqual(['clawdinator-1']);
  });

  it('waits for running and for terminated on the clock, and fails as the SDK waiters do', async () => {
    const { clock, sim } = world();
    const id = await sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-seed', instanceType: 't3.large' });

    const running = sim.waitForInstance(id, 'running', { timeoutSeconds: 600 });
    await clock.advance(30_000);
    expect((await running).state).toBe('running');

    await sim.terminateInstance(id);
    const terminated = sim.waitForInstance(id, 'terminated', { timeoutSeconds: 600 });
    await clock.advance(20_000);
    expect((await terminated).state).toBe('terminated');

    await expect(sim.waitForInstance(id, 'running', { timeoutSeconds: 60 })).rejects.toThrow(
      `DescribeInstances ${id}: is terminated, will not become running (WaiterFailure)`,
    );
  });

  it('times out a wait on the clock', async () => {
    const { clock, sim } = world();
    const id = await sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-seed', instanceType: 't3.large' });
    const wait = sim.waitForInstance(id, 'running', { timeoutSeconds: 10 });
    const failed = expect(wait).rejects.toThrow(`DescribeInstances ${id}: not running after 10 s (WaiterTimeout)`);
    await clock.advance(10_000);
    await failed;
  });

  it('refuses to launch an image that does not exist, as RunInstances does', async () => {
    const { sim } = world();
    await expect(sim.launchInstance({ name: 'x', ami: 'ami-none', instanceType: 't3.large' })).rejects.toThrow(
      'RunInstances ami-none: not found (InvalidAMIID.NotFound)',
    );
  });
});

describe('the image pipeline', () => {
  it('uploads, imports with rising progress, registers, waits for available, then prunes', async () => {
    const { clock, sim } = world();
    const file = join(dir, 'nixos.img');
    writeFileSync(file, 'a disk image');
    await sim.uploadFile('images', 'clawdinator-images/nixos-2.img', file);
    const input = { bucket: 'images', key: 'clawdinator-images/nixos-2.img', description: 'd', clientToken: 'job-7' };

    const { importTaskId } = await sim.importSnapshot(input);
    // The same client token is the same task.
    expect(await sim.importSnapshot(input)).toEqual({ importTaskId });
    expect(await sim.describeImportSnapshot(importTaskId)).toMatchObject({ status: 'active', progress: 0 });
    await clock.advance(300_000);
    expect(await sim.describeImportSnapshot(importTaskId)).toMatchObject({ status: 'active', progress: 50 });
    await clock.advance(300_000);
    const done = await sim.describeImportSnapshot(importTaskId);
    expect(done).toMatchObject({ status: 'completed', progress: 100 });

    const register = {
      name: 'clawdinator-nixos-2',
      snapshotId: done.snapshotId as string,
      architecture: 'x86_64',
      bootMode: 'legacy-bios',
      clientToken: 'job-7',
      tags: { clawdinator: 'true' },
    } as const;
    const { imageId } = await sim.registerImage(register);
    expect(await sim.registerImage(register)).toEqual({ imageId });
    await expect(sim.registerImage({ ...register, clientToken: 'job-8' })).rejects.toThrow(
      'RegisterImage clawdinator-nixos-2: conflicts with what exists (InvalidAMIName.Duplicate)',
    );
    expect((await sim.describeImage(imageId)).state).toBe('pending');
    expect((await sim.findLatestAmi())?.imageId).toBe('ami-seed');

    const available = sim.waitForImageAvailable(imageId, { timeoutSeconds: 600 });
    await clock.advance(120_000);
    expect((await available).state).toBe('available');
    expect((await sim.findLatestAmi())?.imageId).toBe(imageId);
    expect((await sim.listAmis()).map((a) => a.imageId)).toEqual([imageId, 'ami-seed']);

    expect(await sim.deregisterAmi('ami-seed')).toMatchObject({
      deregistered: true,
      snapshots: [{ result: 'success' }],
    });
    expect(await sim.deregisterAmi('ami-seed')).toEqual({ imageId: 'ami-seed', deregistered: false, snapshots: [] });
    await expect(sim.describeImage('ami-seed')).rejects.toThrow(
      'DescribeImages ami-seed: not found (InvalidAMIID.NotFound)',
    );
  });

  it('fails an import halfway with the configured status message', async () => {
    const { clock, sim } = world({ failImportWith: 'ClientError: Disk validation failed' });
    const file = join(dir, 'bad.img');
    writeFileSync(file, 'not a disk');
    await sim.uploadFile('images', 'bad.img', file);
    const { importTaskId } = await sim.importSnapshot({
      bucket: 'images',
      key: 'bad.img',
      description: 'd',
      clientToken: 't',
    });
    await clock.advance(300_000);
    await expect(sim.describeImportSnapshot(importTaskId)).rejects.toThrow(
      `ImportSnapshot ${importTaskId}: failed: ClientError: Disk validation failed (ImportTask.deleted)`,
    );
  });

  it('fails an import of an object that is not in S3', async () => {
    const { sim } = world({ timings: instantSimTimings });
    const { importTaskId } = await sim.importSnapshot({
      bucket: 'images',
      key: 'none.img',
      description: 'd',
      clientToken: 't',
    });
    await expect(sim.describeImportSnapshot(importTaskId)).rejects.toThrow(
      'Unable to access the S3 object s3://images/none.img',
    );
  });
});

describe('SSM', () => {
  it('runs a command through the handler: InProgress, then the result', async () => {
    const { clock, sim } = world();
    const [host] = await sim.listFleetInstances();
    const id = host?.instanceId as string;
    sim.setCommandHandler(({ parameters, host }) =>
      parameters.action?.[0] === 'switch-start'
        ? { exitCode: 1, stderr: `error: building ${host.name} failed`, durationMs: 60_000 }
        : { exitCode: 0, stdout: 'ok' },
    );

    const cmd = await sim.sendCommand(
      [id],
      {
        document: HOST_DOCUMENT,
        parameters: hostCommandParameters({ action: 'switch-start', sha: 'b'.repeat(40), run: 'r1' }),
      },
      { comment: 'deploy' },
    );
    const result = sim.waitForInvocation(cmd, id, { timeoutSeconds: 600 });
    await clock.advance(60_000);
    expect(await result).toEqual({
      commandId: cmd,
      instanceId: id,
      status: 'Failed',
      exitCode: 1,
      stdout: '',
      stderr: 'error: building clawdinator-1 failed',
    });
  });

  it("refuses parameters our document's rules refuse (InvalidParameters), before the host sees them", async () => {
    const { sim } = world();
    const [host] = await sim.listFleetInstances();
    let ran = 0;
    sim.setCommandHandler(() => {
      ran++;
      return { exitCode: 0 };
    });
    const hostile = {
      action: ['switch-start'],
      sha: ['$(reboot)'],
      run: ['r1'],
      unit: ['clawdinator-worker'],
      lines: ['1'],
    };
    await expect(
      sim.sendCommand([host?.instanceId as string], { document: HOST_DOCUMENT, parameters: hostile }, { comment: 'c' }),
    ).rejects.toThrow(/InvalidParameters/);
    expect(ran).toBe(0);
  });

  it('refuses a host whose agent is not online, as SendCommand does', async () => {
    const { sim } = world();
    const id = await sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-seed', instanceType: 't3.large' });
    await expect(sim.sendCommand([id], doctorCommand, { comment: 'c' })).rejects.toThrow(
      `SendCommand ${id}: instance not managed by SSM or not online (InvalidInstanceId)`,
    );
    const [host] = await sim.listFleetInstances();
    sim.setPingStatus(host?.instanceId as string, 'ConnectionLost');
    expect((await sim.pingStatus([host?.instanceId as string])).get(host?.instanceId as string)).toBe('ConnectionLost');
  });
});

describe('secrets, S3 and failures on demand', () => {
  it('has the secrets it was given', async () => {
    const { sim } = world();
    expect(await sim.secretExists('clawdinator/discord-token/clawdinator-1')).toBe(true);
    expect(await sim.secretExists('clawdinator/discord-token/clawdinator-2')).toBe(false);
    await sim.putSecret('clawdinator/agent-key/clawdinator-2', 'KEY', { clientToken: 'spawn-2' });
    const values = await sim.getSecrets([
      'clawdinator/discord-token/clawdinator-1',
      'clawdinator/agent-key/clawdinator-2',
      'nope',
    ]);
    expect([...values.keys()]).toEqual([
      'clawdinator/discord-token/clawdinator-1',
      'clawdinator/agent-key/clawdinator-2',
    ]);
    await sim.deleteSecret('clawdinator/agent-key/clawdinator-2');
    expect(await sim.secretExists('clawdinator/agent-key/clawdinator-2')).toBe(false);
  });

  it('keeps objects in memory', async () => {
    const { sim } = world();
    const file = join(dir, 'bundle');
    writeFileSync(file, 'bundle bytes');
    const up = await sim.uploadFile('images', 'bootstrap/clawdinator-1/bundle', file);
    expect((await sim.headObject('images', 'bootstrap/clawdinator-1/bundle'))?.sha256).toBe(up.sha256);
    const copy = join(dir, 'bundle.copy');
    expect(await sim.downloadFile('images', 'bootstrap/clawdinator-1/bundle', copy)).toEqual({
      size: 12,
      sha256: up.sha256,
    });
    expect(readFileSync(copy, 'utf8')).toBe('bundle bytes');
    await sim.putJson('images', 'bootstrap/clawdinator-1/meta.json', { a: 1 });
    expect(await sim.getJson('images', 'bootstrap/clawdinator-1/meta.json')).toEqual({ a: 1 });
    expect(await sim.listKeys('images', 'bootstrap/')).toEqual([
      'bootstrap/clawdinator-1/bundle',
      'bootstrap/clawdinator-1/meta.json',
    ]);
    expect(await sim.deletePrefix('images', 'bootstrap/')).toBe(2);
    expect(await sim.getJson('images', 'bootstrap/clawdinator-1/meta.json')).toBeNull();
    expect(await sim.createBucketIfMissing('state', { versioned: true, encrypted: true })).toBe(true);
    expect(await sim.createBucketIfMissing('state', { versioned: true, encrypted: true })).toBe(false);
  });

  it('fails the next call of an operation on demand, once', async () => {
    const { sim } = world();
    const [host] = await sim.listFleetInstances();
    sim.failNext('TerminateInstances', 'RequestLimitExceeded');
    const err = (await sim.terminateInstance(host?.instanceId as string).catch((e: unknown) => e)) as CloudError;
    expect(err).toBeInstanceOf(CloudError);
    expect(err).toMatchObject({ kind: 'throttled', retryable: true });
    expect((await sim.terminateInstance(host?.instanceId as string)).state).toBe('shutting-down');
  });
});

describe('scale', () => {
  it('lists a 500-instance fleet in one DescribeInstances and pings it in 10 calls', async () => {
    const sim = createSimCloud({
      clock: new ManualClock(),
      amis: [{ name: 'clawdinator-nixos-1' }],
      fleet: Array.from({ length: 500 }, (_, n) => ({ name: `clawdinator-${n + 1}` })),
    });

    const fleet = await sim.listFleetInstances();
    const ping = await sim.pingStatus(fleet.map((i) => i.instanceId));

    expect(fleet).toHaveLength(500);
    expect(new Set(fleet.map((i) => i.instanceId)).size).toBe(500);
    expect([...ping.values()].every((s) => s === 'Online')).toBe(true);
    expect(sim.calls).toMatchObject({
      ec2: 1,
      ssm: 10,
      byOperation: { DescribeInstances: 1, DescribeInstanceInformation: 10 },
    });
    sim.resetCalls();
    expect(sim.calls.ec2).toBe(0);
  });
});

describe('clocks', () => {
  it('a manual clock wakes sleepers in time order, including ones that sleep again within the step', async () => {
    const clock = new ManualClock({ start: 0 });
    const woke: string[] = [];
    void clock.sleep(300).then(() => woke.push(`c@${clock.now()}`));
    void clock.sleep(100).then(async () => {
      woke.push(`a@${clock.now()}`);
      await clock.sleep(100);
      woke.push(`b@${clock.now()}`);
    });
    await clock.advance(250);
    expect(woke).toEqual(['a@100', 'b@200']);
    expect(clock.now()).toBe(250);
    await clock.advance(50);
    expect(woke).toEqual(['a@100', 'b@200', 'c@300']);
  });

  it('an auto clock jumps to the next sleeper, and parallel sleeps overlap', async () => {
    const clock = new ManualClock({ start: 0, auto: true });
    // An hour and half an hour, overlapping: the clock ends at the hour (a clock that did not
    // jump would hold the test for an hour, past its timeout).
    await Promise.all([clock.sleep(3_600_000), clock.sleep(1_800_000)]);
    expect(clock.now()).toBe(3_600_000);
  });

  it('an auto clock runs a world of minute-long timings in no wall time', async () => {
    const clock = new ManualClock({ auto: true });
    const sim = createSimCloud({ clock, timings, amis: [{ name: 'a', imageId: 'ami-a' }] });
    const id = await sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-a', instanceType: 't3.large' });
    const online = new Promise<SimHost>((resolve) => sim.onHostOnline(resolve));
    expect((await sim.waitForInstance(id, 'running', { timeoutSeconds: 600 })).state).toBe('running');
    expect((await online).instanceId).toBe(id);
  });

  it('a scaled clock runs faster than real time, and its sleeps never end early', async () => {
    const clock = scaledClock(1000);
    const slept: number[] = [];
    for (let i = 0; i < 50; i++) {
      const before = clock.now();
      await clock.sleep(2000);
      slept.push(clock.now() - before);
    }
    // A timer firing a little early by the wall clock made one sleep in 50 end a simulated second short.
    expect(slept.filter((ms) => ms < 2000)).toEqual([]);
  });
});
