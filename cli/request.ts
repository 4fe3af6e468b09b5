// `clawdinator request <action> <name>`: an agent's way to ask for a fleet action. It signs
// with the host's agent key (CLAWDINATOR_JOB_KEY_ID=agent:<host>) and hands the request to
// the ops gateway of this host over its unix socket (CLAWDINATOR_REQUEST_SOCKET; protocol in
// bot/request-protocol.ts), then prints the job's progress as the gateway relays it, until
// the job ends (exit 0, or 1 when it failed or was refused) or this command is interrupted
// (the job runs on; its outcome goes to the ops channel). The agent holds no Redis
// credential and this command reads no Redis setting: the workers apply the agent policy
// (peers only, never itself, within the hourly rate), and a replace or retire asked by an
// agent waits for a human's confirmation in the ops channel. `clawdinator request gh-refresh`
// asks the same way for an early GitHub token for this host's agent (the github-token job on
// this host's own queue, for its own host only; the agent's `clawdinator-gh-refresh`).
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Command } from 'commander';
import {
  encode,
  type GatewayMessage,
  gatewayMessageSchema,
  inertText,
  issueLine,
  LineSplitter,
  MAX_GATEWAY_LINE,
} from '../bot/request-protocol.js';
import type { SignedRequest } from '../jobs/engine/envelope.js';
import { loadPrivateKey, newNonce, signPayload } from '../jobs/signing.js';
import { instanceName, instanceTypeShape, loadConfig, NAME_RULE } from '../lib/config.js';
import { ClawError, ConfigError, errorLine, OperationError, UsageError } from '../lib/errors.js';

const ACTIONS = ['spawn', 'replace', 'retire', 'gh-refresh'] as const;
/** The host-local request: its job type, about this host. */
const GH_REFRESH = { action: 'gh-refresh', type: 'github-token' } as const;

interface RequestOptions {
  instanceType?: string;
  detach?: boolean;
}

export function command(): Command {
  return new Command('request')
    .description(
      'ask the fleet for an action on a peer, as this host’s agent (spawn, replace, retire), or a new GitHub token for this host’s agent (gh-refresh)',
    )
    .argument('<action>', ACTIONS.join(' | '))
    .argument('[name]', 'the peer, e.g. clawdinator-3 (none for gh-refresh: always this host)')
    .option('--instance-type <type>', 'spawn only: an allowed EC2 instance type (default: the fleet’s)')
    .option('--detach', 'return once the job is queued (its outcome goes to the ops channel)')
    .action(async (action: string, name: string | undefined, opts: RequestOptions) => {
      if (!(ACTIONS as readonly string[]).includes(action))
        throw new UsageError(`unknown action "${action}": ${ACTIONS.join(', ')}`);
      const ghRefresh = action === GH_REFRESH.action;
      if (ghRefresh && name !== undefined)
        throw new UsageError('gh-refresh takes no name: it is for this host’s agent');
      if (!ghRefresh && name === undefined) throw new UsageError(`${action} needs the peer's name, e.g. clawdinator-3`);
      if (name !== undefined && !instanceName.safeParse(name).success)
        throw new UsageError(`"${name}" is not a fleet name (${NAME_RULE})`);
      if (opts.instanceType !== undefined) {
        if (action !== 'spawn') throw new UsageError('--instance-type is for spawn only');
        if (!instanceTypeShape.safeParse(opts.instanceType).success)
          throw new UsageError(`--instance-type: "${opts.instanceType}" is not an EC2 instance type like t3.large`);
      }
      // The agent's own files only: its key and the socket. No Redis setting is read.
      const config = loadConfig(['jobSigningKeyFile', 'jobKeyId', 'requestSocket']);
      if (!config.jobKeyId.startsWith('agent:')) {
        throw new ConfigError(
          'config: CLAWDINATOR_JOB_KEY_ID must be agent:<host> for a request (it is signed as this host’s agent)',
        );
      }
      const host = config.jobKeyId.slice('agent:'.length);
      const key = loadPrivateKey(config.jobSigningKeyFile, 'CLAWDINATOR_JOB_SIGNING_KEY_FILE');
      const type = ghRefresh ? GH_REFRESH.type : action;
      const data = ghRefresh
        ? { host }
        : opts.instanceType === undefined
          ? { name }
          : { name, instanceType: opts.instanceType };

      const socket = await reach(config.requestSocket);
      let jobId: string | undefined;
      try {
        const lines = messages(socket);
        const hello = (await lines.next()).value;
        if (hello?.kind === 'error') throw new ClawError(hello.message, hello.exit);
        if (hello?.kind !== 'hello') throw new OperationError('the ops gateway did not greet: is it this project’s?');
        if (hello.host !== host) {
          throw new OperationError(`the ops gateway at ${config.requestSocket} serves ${hello.host}, not ${host}`);
        }
        const schema = hello.jobs[type];
        if (schema === undefined)
          throw new OperationError(`the ops gateway on this host does not take ${action} requests`);
        const requestId = `agent-${randomBytes(9).toString('base64url')}`;
        const signed: SignedRequest = {
          type,
          // The engine's job id: `<type>-<request id>` (jobs/engine/queues.ts jobIdFor).
          jobId: `${type}-${requestId}`,
          schema,
          data,
          principal: { kind: 'agent', host },
          keyId: config.jobKeyId,
          issuedAt: Date.now(),
          nonce: newNonce(),
          requestId,
        };
        socket.write(encode({ kind: 'job', envelope: { signed, signature: signPayload(signed, key) } }));
        for await (const message of lines) {
          switch (message.kind) {
            case 'queued': {
              jobId = message.jobId;
              const asks =
                action === 'spawn' || ghRefresh ? '' : ' — it waits for a human’s confirmation in the ops channel';
              say(`queued ${inertText(jobId)}${asks}`);
              if (opts.detach) {
                say('detached: the outcome goes to the ops channel');
                return;
              }
              break;
            }
            case 'progress':
              say(message.percent === undefined ? message.text : `${message.text} (${Math.round(message.percent)}%)`);
              break;
            case 'end':
              if (!message.ok) throw new OperationError(inertText(message.text));
              say(message.text);
              return;
            case 'error':
              throw new ClawError(inertText(message.message), message.exit);
            case 'hello':
              throw new OperationError('the ops gateway sent a second greeting');
          }
        }
        const still = jobId === undefined ? '' : `; ${jobId} continues (its outcome goes to the ops channel)`;
        throw new OperationError(`the ops gateway closed the connection before the request ended${still}`);
      } finally {
        socket.destroy();
      }
    });
}

function say(line: string): void {
  process.stdout.write(`${inertText(line)}\n`);
}

/** Connects to the gateway's socket; a gateway that is not there is one clear line. */
async function reach(path: string): Promise<Socket> {
  const socket = connect(path);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
  } catch (err) {
    socket.destroy();
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      throw new OperationError(`the ops gateway on this host is not running (socket ${path})`);
    }
    if (code === 'EACCES') {
      throw new OperationError(`cannot connect to the ops gateway’s socket ${path} (EACCES): run this as the agent`);
    }
    throw new OperationError(`cannot connect to the ops gateway’s socket ${path} (${code})`);
  }
  return socket;
}

/** The gateway's lines, parsed and bounded; a broken connection is one clear line. */
async function* messages(socket: Socket): AsyncGenerator<GatewayMessage, void> {
  const splitter = new LineSplitter(MAX_GATEWAY_LINE);
  try {
    for await (const chunk of socket) {
      const lines = splitter.push(chunk as Buffer);
      if (lines === 'overflow') throw new OperationError('the ops gateway sent a line too long');
      for (const line of lines) {
        let json: unknown;
        try {
          json = JSON.parse(line);
        } catch {
          throw new OperationError('the ops gateway sent a line that is not JSON');
        }
        const parsed = gatewayMessageSchema.safeParse(json);
        if (!parsed.success)
          throw new OperationError(`the ops gateway sent an unknown line (${issueLine(parsed.error)})`);
        yield parsed.data;
      }
    }
  } catch (err) {
    if (err instanceof ClawError) throw err;
    throw new OperationError(`the connection to the ops gateway broke: ${errorLine(err)}`);
  }
}
