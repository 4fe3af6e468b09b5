// The SSM half of the AWS adapter, with aws-sdk-client-mock at the client's `send`.
import {
  DescribeInstanceInformationCommand,
  type DescribeInstanceInformationCommandInput,
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { HOST_DOCUMENT, hostCommandParameters } from '../../../infra/host-document.js';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { ManualClock } from '../../../jobs/cloud/clock.js';

const client = new SSMClient({ region: 'eu-central-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
const ssm = mockClient(client);
const clock = new ManualClock({ auto: true });
const cloud = createAwsCloud({ clients: { ssm: client }, clock });

beforeEach(() => ssm.reset());

describe('send-command', () => {
  it('runs our document with typed parameters (one value each), never a shell line', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
    const parameters = hostCommandParameters({
      action: 'switch-start',
      sha: 'a'.repeat(40),
      run: 'deploy-1-clawdinator-1',
    });

    const id = await cloud.sendCommand(
      ['i-1'],
      { document: HOST_DOCUMENT, parameters },
      {
        comment: 'deploy aaaaaaa to clawdinator-1',
      },
    );

    expect(id).toBe('cmd-1');
    expect(ssm.commandCalls(SendCommandCommand)[0]?.args[0].input).toEqual({
      DocumentName: 'clawdinator-host',
      InstanceIds: ['i-1'],
      Comment: 'deploy aaaaaaa to clawdinator-1',
      TimeoutSeconds: 600,
      Parameters: {
        action: ['switch-start'],
        sha: ['a'.repeat(40)],
        run: ['deploy-1-clawdinator-1'],
        unit: ['clawdinator-worker'],
        lines: ['100'],
      },
    });
  });

  it('waits through InvocationDoesNotExist and InProgress to the result, on the injected clock', async () => {
    const missing = new InvocationDoesNotExist({ message: 'no such invocation', $metadata: {} });
    ssm
      .on(GetCommandInvocationCommand)
      .rejectsOnce(missing)
      .resolvesOnce({ Status: 'InProgress' })
      .resolves({
        Status: 'Failed',
        ResponseCode: 2,
        StandardOutputContent: `${'x'.repeat(5000)}building the system configuration...`,
        StandardErrorContent: 'error: flake has no output',
      });
    const start = clock.now();

    const result = await cloud.waitForInvocation('cmd-1', 'i-1', { timeoutSeconds: 60 });

    expect(result).toMatchObject({ commandId: 'cmd-1', instanceId: 'i-1', status: 'Failed', exitCode: 2 });
    // All SSM kept, for the caller to parse (doctor's lines, a journal) or cut to a tail.
    expect(result.stdout).toHaveLength(5036);
    expect(result.stdout.endsWith('building the system configuration...')).toBe(true);
    expect(result.stderr).toBe('error: flake has no output');
    expect(ssm.commandCalls(GetCommandInvocationCommand)).toHaveLength(3);
    expect(ssm.commandCalls(GetCommandInvocationCommand)[0]?.args[0].input).toEqual({
      CommandId: 'cmd-1',
      InstanceId: 'i-1',
    });
    // Two polls of 2 s, in simulated time only.
    expect(clock.now() - start).toBe(4000);
  });

  it('times out with one line naming the command and the host', async () => {
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'InProgress' });
    await expect(cloud.waitForInvocation('cmd-1', 'i-1', { timeoutSeconds: 10 })).rejects.toThrow(
      'GetCommandInvocation cmd-1 on i-1: not finished after 10 s (WaiterTimeout)',
    );
  });

  it('maps a host not managed by SSM to one line', async () => {
    ssm
      .on(SendCommandCommand)
      .rejects({ name: 'InvalidInstanceId', message: 'Instances [[i-1]] not in a valid state' });
    const doctor = { document: HOST_DOCUMENT, parameters: hostCommandParameters({ action: 'doctor' }) };
    await expect(cloud.sendCommand(['i-1'], doctor, { comment: 'c' })).rejects.toThrow(
      'SendCommand i-1: instance not managed by SSM or not online (InvalidInstanceId)',
    );
  });
});

describe('ping status', () => {
  it('asks for 120 instances in batches of at most 50, one call each', async () => {
    const seen: DescribeInstanceInformationCommandInput[] = [];
    ssm.on(DescribeInstanceInformationCommand).callsFake((input: DescribeInstanceInformationCommandInput) => {
      seen.push(structuredClone(input));
      const ids = input.Filters?.[0]?.Values ?? [];
      // Everyone online except the host i-7, which SSM lost, and i-8, which SSM does not know.
      return {
        InstanceInformationList: ids
          .filter((id) => id !== 'i-8')
          .map((id) => ({ InstanceId: id, PingStatus: id === 'i-7' ? 'ConnectionLost' : 'Online' })),
      };
    });
    const ids = Array.from({ length: 120 }, (_, n) => `i-${n}`);

    const status = await cloud.pingStatus(ids);

    expect(seen).toHaveLength(3);
    expect(seen.map((s) => s.Filters?.[0]?.Values?.length)).toEqual([50, 50, 20]);
    for (const input of seen) {
      expect(input.Filters?.[0]?.Key).toBe('InstanceIds');
      expect(input.MaxResults).toBe(50);
    }
    expect(status.size).toBe(120);
    expect(status.get('i-0')).toBe('Online');
    expect(status.get('i-7')).toBe('ConnectionLost');
    expect(status.get('i-8')).toBe('Unknown');
  });

  it('makes no call for no instances', async () => {
    expect((await cloud.pingStatus([])).size).toBe(0);
    expect(ssm.calls()).toHaveLength(0);
  });
});
