// The simulated SSM, as aws-ssm.ts sees it: an instance's agent is `Online` once it has booted
// and bootstrapped (or as forced by the sandbox), SendCommand refuses a host whose agent is not
// online, and parameters our document's rules refuse (InvalidParameters), as AWS does. What a
// command does on a host is decided by a handler — by default the simulated hosts
// (sim-hosts.ts) for our document; a test may set its own — its result ready after its
// duration on the sim's clock.
import { CloudError, waitTimeout } from './errors.js';
import { chunks, idList } from './shared.js';
import { anyResource, type SimCore } from './sim-core.js';
import { hostOf, type SimEc2, type SimHost, type SimInstance } from './sim-ec2.js';
import { SimHosts } from './sim-hosts.js';
import type { CommandRequest, CommandStatus, InvocationResult, PingStatus, SendCommandOptions } from './types.js';

export interface SimCommandRun {
  commandId: string;
  host: SimHost;
  document: string;
  parameters: Record<string, string[]>;
  comment: string;
}

export interface SimCommandResult {
  exitCode: number;
  stdout?: string;
  stderr?: string;
  /** How long the command runs; default `timings.commandMs`. */
  durationMs?: number;
}

/** Decides what a command list does on a host (called once per host when it is sent). */
export type SimCommandHandler = (run: SimCommandRun) => SimCommandResult | Promise<SimCommandResult>;

interface SimInvocation {
  commandId: string;
  instanceId: string;
  doneAt: number;
  result: SimCommandResult;
}

export class SimSsm {
  commandHandler: SimCommandHandler;
  /** Every command delivered to a host, in order (tests and the bench read what was asked). */
  readonly sent: SimCommandRun[] = [];
  private readonly invocations = new Map<string, SimInvocation>();

  constructor(
    private readonly core: SimCore,
    private readonly ec2: SimEc2,
    hosts: SimHosts,
    commandHandler: SimCommandHandler | undefined,
  ) {
    this.commandHandler = commandHandler ?? ((run) => hosts.handle(run) ?? { exitCode: 0 });
  }

  async sendCommand(
    principal: string,
    instanceIds: string[],
    command: CommandRequest,
    options: SendCommandOptions,
  ): Promise<string> {
    const { arns } = this.core;
    await this.core.call(principal, 'ssm', 'SendCommand', idList(instanceIds), [
      { action: 'ssm:SendCommand', resource: arns.document(command.document), context: {} },
      ...instanceIds.map((id) => ({
        action: 'ssm:SendCommand',
        resource: arns.instance(id),
        context: tagContext(this.ec2.instances.get(id)?.tags ?? {}),
      })),
    ]);
    const invalid = SimHosts.check(command.document, command.parameters);
    if (invalid !== null) {
      throw new CloudError({
        operation: 'SendCommand',
        resource: command.document,
        code: 'InvalidParameters',
        detail: invalid,
      });
    }
    const targets = instanceIds.map((id) => {
      const instance = this.ec2.instances.get(id);
      if (instance === undefined || this.pingOf(instance) !== 'Online') {
        throw new CloudError({
          operation: 'SendCommand',
          resource: id,
          code: 'InvalidInstanceId',
          detail: 'instance not managed by SSM or not online',
        });
      }
      return instance;
    });
    const commandId = this.core.newCommandId();
    for (const instance of targets) {
      const run: SimCommandRun = {
        commandId,
        host: hostOf(instance),
        document: command.document,
        parameters: structuredClone(command.parameters),
        comment: options.comment.slice(0, 100),
      };
      this.sent.push(run);
      const result = await this.commandHandler(run);
      const doneAt = this.core.clock.now() + (result.durationMs ?? this.core.timings.commandMs);
      this.invocations.set(`${commandId}/${instance.instanceId}`, {
        commandId,
        instanceId: instance.instanceId,
        doneAt,
        result,
      });
    }
    return commandId;
  }

  async waitForInvocation(
    principal: string,
    commandId: string,
    instanceId: string,
    options: { timeoutSeconds: number },
  ): Promise<InvocationResult> {
    const resource = `${commandId} on ${instanceId}`;
    const deadline = this.core.clock.now() + options.timeoutSeconds * 1000;
    for (;;) {
      await this.core.call(principal, 'ssm', 'GetCommandInvocation', resource, [
        anyResource('ssm:GetCommandInvocation'),
      ]);
      const invocation = this.invocations.get(`${commandId}/${instanceId}`);
      if (invocation === undefined) {
        throw new CloudError({ operation: 'GetCommandInvocation', resource, code: 'InvocationDoesNotExist' });
      }
      if (this.core.clock.now() >= invocation.doneAt) {
        const { exitCode, stdout, stderr } = invocation.result;
        const status: CommandStatus = exitCode === 0 ? 'Success' : 'Failed';
        return {
          commandId,
          instanceId,
          status,
          exitCode,
          // What SSM keeps of a command's output.
          stdout: (stdout ?? '').slice(0, 24_000),
          stderr: (stderr ?? '').slice(0, 8_000),
        };
      }
      await this.core.sleepUntil(Math.min(invocation.doneAt, deadline), deadline, () =>
        waitTimeout('GetCommandInvocation', resource, 'finished', options.timeoutSeconds),
      );
    }
  }

  async pingStatus(principal: string, instanceIds: string[]): Promise<Map<string, PingStatus>> {
    const status = new Map<string, PingStatus>();
    for (const batch of chunks(instanceIds, 50)) {
      await this.core.call(principal, 'ssm', 'DescribeInstanceInformation', idList(batch), [
        anyResource('ssm:DescribeInstanceInformation'),
      ]);
      for (const id of batch) {
        const instance = this.ec2.instances.get(id);
        status.set(id, instance === undefined ? 'Unknown' : this.pingOf(instance));
      }
    }
    return status;
  }

  pingOf(i: SimInstance): PingStatus {
    if (i.ping !== null) return i.ping;
    if (i.terminatedAt !== null) return 'ConnectionLost';
    const { timings, clock } = this.core;
    const onlineAt = i.launchedAt + timings.instanceBootMs + timings.ssmOnlineMs;
    // Not yet registered with SSM: DescribeInstanceInformation does not list it.
    return clock.now() >= onlineAt ? 'Online' : 'Unknown';
  }
}

/** SendCommand on an instance: policies condition on its tags as `ssm:resourceTag/…`. */
function tagContext(tags: Record<string, string>): Record<string, string> {
  const context: Record<string, string> = {};
  for (const [key, value] of Object.entries(tags)) {
    context[`ssm:resourceTag/${key}`] = value;
    context[`aws:ResourceTag/${key}`] = value;
  }
  return context;
}
