// SSM half of the AWS adapter: run a Command document on hosts (ours, `clawdinator-host`:
// infra/host-document.ts), wait for its result, and read each host's agent ping status.
// Loaded on first use by aws.ts.
import {
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  paginateDescribeInstanceInformation,
  SendCommandCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { UsageError } from '../../lib/errors.js';
import type { AwsContext } from './aws.js';
import { toCloudError, waitTimeout } from './errors.js';
import { chunks, forEachLimited, idList, isTerminalCommandStatus } from './shared.js';
import type { CommandRequest, InvocationResult, PingStatus, SendCommandOptions } from './types.js';

/** DescribeInstanceInformation returns at most 50 a page: one batch of ids is one call. */
export const PING_BATCH = 50;
/** SendCommand takes at most 50 instance ids. */
const MAX_TARGETS = 50;
/**
 * Delivery timeout: a host offline this long fails the command instead of running it late,
 * after the job has moved on (a late `nixos-rebuild switch` would deploy behind its back).
 */
const DELIVERY_TIMEOUT_SECONDS = 600;
/** Batches of DescribeInstanceInformation in flight at once, under SSM's API rate. */
const PING_CONCURRENCY = 5;

export function createSsmService(context: AwsContext, client?: SSMClient): SsmService {
  return new SsmService(client ?? new SSMClient(context.clientConfig), context);
}

export class SsmService {
  constructor(
    private readonly client: SSMClient,
    private readonly context: AwsContext,
  ) {}

  async sendCommand(instanceIds: string[], command: CommandRequest, options: SendCommandOptions): Promise<string> {
    if (instanceIds.length === 0 || instanceIds.length > MAX_TARGETS) {
      throw new UsageError(`SendCommand: needs 1 to ${MAX_TARGETS} instances, got ${instanceIds.length}`);
    }
    try {
      const out = await this.client.send(
        new SendCommandCommand({
          DocumentName: command.document,
          InstanceIds: instanceIds,
          Comment: options.comment.slice(0, 100),
          TimeoutSeconds: DELIVERY_TIMEOUT_SECONDS,
          // Typed parameters, checked by SSM against the document's patterns and handed to
          // the script as environment variables: nothing is quoted or joined into a shell line.
          Parameters: command.parameters,
        }),
      );
      const commandId = out.Command?.CommandId;
      if (commandId === undefined) throw new Error('no CommandId in the answer');
      return commandId;
    } catch (err) {
      throw toCloudError(err, 'SendCommand', idList(instanceIds));
    }
  }

  async waitForInvocation(
    commandId: string,
    instanceId: string,
    options: { timeoutSeconds: number },
  ): Promise<InvocationResult> {
    const { clock, ssmPollMs } = this.context;
    const resource = `${commandId} on ${instanceId}`;
    const deadline = clock.now() + options.timeoutSeconds * 1000;
    for (;;) {
      const out = await this.invocation(commandId, instanceId, resource);
      if (out !== null && isTerminalCommandStatus(out.Status ?? '')) {
        const code = out.ResponseCode;
        return {
          commandId,
          instanceId,
          status: out.Status as InvocationResult['status'],
          // -1 is SSM's "the script never ran".
          exitCode: code === undefined || code === -1 ? null : code,
          stdout: out.StandardOutputContent ?? '',
          stderr: out.StandardErrorContent ?? '',
        };
      }
      if (clock.now() + ssmPollMs > deadline) {
        throw waitTimeout('GetCommandInvocation', resource, 'finished', options.timeoutSeconds);
      }
      await clock.sleep(ssmPollMs);
    }
  }

  async pingStatus(instanceIds: string[]): Promise<Map<string, PingStatus>> {
    const status = new Map<string, PingStatus>();
    for (const id of instanceIds) status.set(id, 'Unknown');
    await forEachLimited(chunks(instanceIds, PING_BATCH), PING_CONCURRENCY, async (batch) => {
      const pages = paginateDescribeInstanceInformation(
        { client: this.client, pageSize: PING_BATCH },
        { Filters: [{ Key: 'InstanceIds', Values: batch }] },
      );
      try {
        for await (const page of pages) {
          for (const info of page.InstanceInformationList ?? []) {
            if (info.InstanceId !== undefined) {
              status.set(info.InstanceId, (info.PingStatus ?? 'Unknown') as PingStatus);
            }
          }
        }
      } catch (err) {
        throw toCloudError(err, 'DescribeInstanceInformation', idList(batch));
      }
    });
    return status;
  }

  /** One GetCommandInvocation; null while SSM does not know the invocation yet. */
  private async invocation(
    commandId: string,
    instanceId: string,
    resource: string,
  ): Promise<GetCommandInvocationCommandOutput | null> {
    try {
      return await this.client.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }));
    } catch (err) {
      const mapped = toCloudError(err, 'GetCommandInvocation', resource);
      // Right after SendCommand the invocation can take a moment to exist.
      if (mapped.code === 'InvocationDoesNotExist') return null;
      throw mapped;
    }
  }
}
