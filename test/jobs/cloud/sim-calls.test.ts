// The simulated cloud's call recorder, fault registry and IAM hook: every call is recorded
// with who made it and what IAM would evaluate; armed faults fail exactly the next N
// occurrences and nothing else; an authorizer that denies makes the call fail as AWS does,
// before it changes anything.
import { describe, expect, it } from 'vitest';
import { HOST_DOCUMENT, hostCommandParameters } from '../../../infra/host-document.js';
import { ManualClock } from '../../../jobs/cloud/clock.js';
import { CloudError } from '../../../jobs/cloud/errors.js';
import { createSimCloud, FaultRegistry } from '../../../jobs/cloud/sim.js';
import { UsageError } from '../../../lib/errors.js';

function world() {
  return createSimCloud({
    clock: new ManualClock({ auto: true }),
    timings: { instanceBootMs: 0, ssmOnlineMs: 0, commandMs: 0, importMs: 1000, imageAvailableMs: 0 },
    amis: [{ name: 'clawdinator-nixos-1', imageId: 'ami-seed' }],
    fleet: [{ name: 'clawdinator-1' }],
    secrets: { 'clawdinator/discord-token/clawdinator-1': 'token-1' },
    buckets: ['fleet-bucket'],
    account: '111122223333',
    region: 'eu-west-1',
  });
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as CloudError,
  );

describe('the call recorder', () => {
  it('records each call with its principal, operation, resource ARNs and condition keys', async () => {
    const sim = world();
    const host = sim.actingAs('instance:clawdinator-1');
    await sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-seed', instanceType: 't3.large' });
    await host.getSecrets(['clawdinator/discord-token/clawdinator-1', 'clawdinator/fleet/redis-auth']);
    await host.listKeys('fleet-bucket', 'bootstrap/clawdinator-1/');
    await sim.putBytes('fleet-bucket', 'bootstrap/clawdinator-2/config.json', Buffer.from('{}'));

    const records = sim.records();
    expect(records.map((r) => [r.principal, r.operation])).toEqual([
      ['deployer', 'RunInstances'],
      ['instance:clawdinator-1', 'BatchGetSecretValue'],
      ['instance:clawdinator-1', 'ListObjectsV2'],
      ['deployer', 'PutObject'],
    ]);
    const [run, batch, list, put] = records;
    expect(run?.requests[0]).toMatchObject({
      action: 'ec2:RunInstances',
      resource: expect.stringMatching(/^arn:aws:ec2:eu-west-1:111122223333:instance\/i-[0-9a-f]{17}$/),
      context: { 'aws:RequestTag/Name': 'clawdinator-2', 'aws:RequestTag/app': 'clawdinator' },
    });
    expect(run?.requests[1]).toMatchObject({
      action: 'ec2:RunInstances',
      resource: 'arn:aws:ec2:eu-west-1::image/ami-seed',
    });
    // The batch action on *, and GetSecretValue on each secret, as AWS authorizes it.
    expect(batch?.requests.map((r) => r.action)).toEqual([
      'secretsmanager:BatchGetSecretValue',
      'secretsmanager:GetSecretValue',
      'secretsmanager:GetSecretValue',
    ]);
    expect(batch?.requests[1]?.resource).toMatch(
      /^arn:aws:secretsmanager:eu-west-1:111122223333:secret:clawdinator\/discord-token\/clawdinator-1-[A-Za-z0-9]{6}$/,
    );
    expect(list?.requests).toEqual([
      {
        action: 's3:ListBucket',
        resource: 'arn:aws:s3:::fleet-bucket',
        context: { 's3:prefix': 'bootstrap/clawdinator-1/' },
      },
    ]);
    expect(put?.requests[0]).toMatchObject({
      action: 's3:PutObject',
      resource: 'arn:aws:s3:::fleet-bucket/bootstrap/clawdinator-2/config.json',
    });
    // The counts are the same calls, by service and operation.
    expect(sim.calls).toMatchObject({ ec2: 1, s3: 2, secrets: 1, ssm: 0 });
    expect(host.calls).toBe(sim.calls);
  });

  it('a terminate carries the instance tags as condition keys; a view shares one world', async () => {
    const sim = world();
    const [member] = await sim.listFleetInstances();
    const id = member?.instanceId as string;
    await sim.actingAs('someone').terminateInstance(id);
    expect((await sim.describeInstance(id)).state).not.toBe('running');
    const terminate = sim.records().find((r) => r.operation === 'TerminateInstances');
    expect(terminate?.principal).toBe('someone');
    expect(terminate?.requests[0]?.context).toMatchObject({
      'ec2:ResourceTag/Name': 'clawdinator-1',
      'aws:ResourceTag/app': 'clawdinator',
    });
  });
});

describe('faults', () => {
  it('fail exactly the next N occurrences of a service, then calls succeed again', async () => {
    const sim = world();
    const [member] = await sim.listFleetInstances();
    const id = member?.instanceId as string;
    sim.faults.arm('ssm', { times: 2 });
    const first = await failure(sim.pingStatus([id]));
    expect(first).toBeInstanceOf(CloudError);
    expect(first).toMatchObject({ operation: 'DescribeInstanceInformation', kind: 'unavailable', retryable: true });
    const doctor = { document: HOST_DOCUMENT, parameters: hostCommandParameters({ action: 'doctor' }) };
    expect(await failure(sim.sendCommand([id], doctor, { comment: 'x' }))).toBeInstanceOf(CloudError);
    // Other services are untouched, and the third SSM call succeeds.
    expect(await sim.listFleetInstances()).toHaveLength(1);
    expect((await sim.pingStatus([id])).get(id)).toBe('Online');
    expect(
      sim
        .records()
        .filter((r) => r.error !== undefined)
        .map((r) => r.operation),
    ).toEqual(['DescribeInstanceInformation', 'SendCommand']);
  });

  it('a named step fails only its operation, with the code asked for, and nothing is created', async () => {
    const sim = world();
    sim.faults.arm('run-instances', { code: 'InsufficientInstanceCapacity' });
    const err = await failure(sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-seed', instanceType: 't3.large' }));
    expect(err?.message).toContain('RunInstances clawdinator-2');
    expect(err?.message).toContain('(InsufficientInstanceCapacity)');
    expect((await sim.listFleetInstances()).map((i) => i.name)).toEqual(['clawdinator-1']);
    await sim.launchInstance({ name: 'clawdinator-2', ami: 'ami-seed', instanceType: 't3.large' });
    expect((await sim.listFleetInstances()).map((i) => i.name).sort()).toEqual(['clawdinator-1', 'clawdinator-2']);
  });

  it('the registry refuses unknown names and bad counts, lists what it knows, and adds names', () => {
    const faults = new FaultRegistry();
    expect(() => faults.arm('nonsense')).toThrow(UsageError);
    expect(() => faults.arm('nonsense')).toThrow(/one of plan, apply, run-instances/);
    expect(() => faults.arm('apply', { times: 0 })).toThrow(/times must be/);
    expect(() => faults.arm('apply', { times: 2.5 })).toThrow(/times must be/);
    faults.arm('apply', { times: 2, message: 'Error: boom' });
    faults.arm('TerminateInstances');
    expect(faults.list().find((f) => f.name === 'apply')?.remaining).toBe(2);
    expect(faults.take('plan')).toBeUndefined();
    expect(faults.take('apply')).toEqual({ target: 'apply', message: 'Error: boom' });
    expect(faults.take('apply')).toEqual({ target: 'apply', message: 'Error: boom' });
    expect(faults.take('apply')).toBeUndefined();
    expect(() => faults.arm('switch')).toThrow(UsageError);
    faults.define('switch', 'the next nixos-rebuild switch');
    faults.arm('switch');
    expect(faults.take('switch')).toEqual({ target: 'switch' });
    faults.arm('ssm', { times: 3 });
    faults.clear();
    expect(faults.list().every((f) => f.remaining === 0)).toBe(true);
  });
});

describe('an IAM authorizer', () => {
  it('denies as the service does, before the call changes anything, and the denial is recorded', async () => {
    const sim = world();
    // The host's own role may read its own token only.
    sim.setAuthorizer((principal, request) => {
      if (principal === 'deployer') return true;
      return request.action === 'secretsmanager:BatchGetSecretValue' || request.resource.includes('clawdinator-1-');
    });
    const host = sim.actingAs('instance:clawdinator-1');
    const own = await host.getSecrets(['clawdinator/discord-token/clawdinator-1']);
    expect(own.get('clawdinator/discord-token/clawdinator-1')).toBe('token-1');
    const denied = await failure(host.getSecrets(['clawdinator/fleet/redis-auth']));
    expect(denied).toMatchObject({ kind: 'access-denied', code: 'AccessDeniedException' });
    expect(denied?.message).toContain('secretsmanager:GetSecretValue');

    const put = await failure(host.putSecret('clawdinator/host/clawdinator-1/agent-key', 'k', { clientToken: 't' }));
    expect(put).toMatchObject({ kind: 'access-denied' });
    // Not created: the deployer sees no such secret.
    expect(await sim.secretExists('clawdinator/host/clawdinator-1/agent-key')).toBe(false);
    const ec2 = await failure(host.terminateInstance((await sim.listFleetInstances())[0]?.instanceId as string));
    expect(ec2).toMatchObject({ code: 'UnauthorizedOperation' });
    expect((await sim.listFleetInstances())[0]?.state).toBe('running');
    expect(
      sim
        .records()
        .filter((r) => r.error !== undefined)
        .map((r) => r.error),
    ).toEqual(['AccessDeniedException', 'AccessDeniedException', 'UnauthorizedOperation']);
    sim.setAuthorizer(null);
    expect((await host.getSecrets(['clawdinator/fleet/redis-auth'])).size).toBe(0);
  });

  it('a role without BatchGetSecretValue reads secret by secret, as the adapter falls back', async () => {
    const sim = world();
    sim.setAuthorizer((_principal, request) => request.action !== 'secretsmanager:BatchGetSecretValue');
    const host = sim.actingAs('instance:clawdinator-1');
    const names = ['clawdinator/discord-token/clawdinator-1', 'clawdinator/fleet/redis-auth'];
    expect((await host.getSecrets(names)).get(names[0] as string)).toBe('token-1');
    await host.getSecrets(names);
    expect(sim.records().map((r) => [r.operation, r.error ?? 'ok'])).toEqual([
      ['BatchGetSecretValue', 'AccessDeniedException'],
      ['GetSecretValue', 'ok'],
      ['GetSecretValue', 'ok'],
      // Denied once: no batch call again.
      ['GetSecretValue', 'ok'],
      ['GetSecretValue', 'ok'],
    ]);
  });

  it('a missing object reads as missing only to a caller allowed to list the bucket, as on S3', async () => {
    const sim = world();
    sim.setAuthorizer((principal, request) => principal === 'deployer' || request.action !== 's3:ListBucket');
    const host = sim.actingAs('instance:clawdinator-1');
    expect(await sim.getBytes('fleet-bucket', 'bootstrap/clawdinator-1/manifest.json')).toBeNull();
    const err = await failure(host.getBytes('fleet-bucket', 'bootstrap/clawdinator-1/manifest.json'));
    expect(err).toMatchObject({ kind: 'access-denied', code: 'AccessDenied' });
    expect(await failure(host.headObject('fleet-bucket', 'nothing'))).toMatchObject({ code: 'AccessDenied' });
    await sim.putBytes('fleet-bucket', 'bootstrap/clawdinator-1/manifest.json', Buffer.from('{}'));
    expect((await host.getBytes('fleet-bucket', 'bootstrap/clawdinator-1/manifest.json'))?.toString()).toBe('{}');
  });

  it('a deregister goes through when a snapshot may not be deleted, and says so per snapshot, as AWS does', async () => {
    const sim = world();
    sim.setAuthorizer((_principal, request) => request.action !== 'ec2:DeleteSnapshot');
    const [image] = await sim.listAmis();
    const result = await sim.deregisterAmi(image?.imageId as string);
    expect(result.deregistered).toBe(true);
    expect(result.snapshots).toEqual([{ snapshotId: image?.rootSnapshotId, result: 'missing-permissions' }]);
    expect(await sim.listAmis()).toEqual([]);
    const [record] = sim.records().filter((r) => r.operation === 'DeregisterImage');
    expect(record?.requests.map((r) => r.action)).toEqual(['ec2:DeregisterImage', 'ec2:DeleteSnapshot']);
  });
});
