// The agent's way to the control plane: the ops gateway of each host serves a unix socket
// (CLAWDINATOR_REQUEST_SOCKET) in a directory only the ops user and the agent's group can
// enter; `clawdinator request`, run by the agent, connects there with a request signed with
// its own key (protocol: bot/request-protocol.ts). The agent holds no Redis credential.
//
// The gateway checks the request against this host's agent's public key (a file the
// bootstrap installs, so no registry read is needed), that it asks as this host's agent, that
// it is fresh, and the agent policy (peers only, never itself, the hourly rate) for a fast
// refusal; then it adds the signed request as it is, through the Enqueuer, and the worker
// verifies everything again against the registry. It follows that job itself — its BullMQ
// events, from the stream position read before the job was added, and a slow look at the
// job's state as a backstop — because the fleet's notification stream is read by one group
// across all gateways and this one may never see the job's events there. Progress and the
// result go back on the same connection until the job ends or the agent disconnects.
import type { KeyObject } from 'node:crypto';
import { chmod, lstat, stat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { type Queue, QueueEvents } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { keys } from '../jobs/engine/keys.js';
import { checkPolicy } from '../jobs/engine/policy.js';
import { type Enqueuer, type JobTypes, queueNameFor } from '../jobs/engine/queues.js';
import { verifyPayload } from '../jobs/signing.js';
import { ClawError, ConfigError, errorLine, RefusedError, UsageError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import {
  type AgentMessage,
  type AgentMessageKind,
  agentMessageSchema,
  encode,
  type GatewayMessage,
  inertText,
  issueLine,
  type JobMessage,
  LineSplitter,
  MAX_AGENT_LINE,
  PROTOCOL,
} from './request-protocol.js';

/** The socket's mode, set after listen: the ops user and the directory's (the agent's) group. */
export const SOCKET_MODE = 0o660;

export interface RequestSocketOptions {
  path: string;
  /** This host's fleet name: the only agent this socket takes requests from. */
  host: string;
  /** This host's agent's public key. */
  agentKey: KeyObject;
  enqueuer: Enqueuer;
  types: JobTypes;
  /** For the rate pre-check and the events stream's position. */
  redis: Redis;
  /** For the per-request QueueEvents connection. */
  connection: RedisOptions;
  maxAgeSeconds: number;
  agentRequestsPerHour: number;
  log: Logger;
  /** How often a followed job's state is looked at, in case its end event was missed (ms). */
  pollMs?: number;
  /** How long a connection may take to send its request (ms). */
  requestTimeoutMs?: number;
  /** Connections served at once; more are refused with a line. */
  maxConnections?: number;
}

export interface RequestSocket {
  path: string;
  close(): Promise<void>;
}

interface Connection {
  socket: Socket;
  send(message: GatewayMessage): void;
  /** The job being followed, named when the gateway stops. */
  jobId?: string;
}

type Handlers = {
  [K in AgentMessageKind]: (message: Extract<AgentMessage, { kind: K }>, conn: Connection) => Promise<void>;
};

/** Starts serving; refuses (ConfigError) a directory others could enter or the agent could write. */
export async function startRequestSocket(options: RequestSocketOptions): Promise<RequestSocket> {
  const { path, log } = options;
  const dir = await checkDirectory(dirname(path));
  await removeStaleSocket(path);
  const maxConnections = options.maxConnections ?? 8;
  const open = new Set<Connection>();
  const handlers: Handlers = { job: (message, conn) => handleJob(message, conn, options) };
  const hello: GatewayMessage = {
    kind: 'hello',
    protocol: PROTOCOL,
    host: options.host,
    accepts: Object.keys(handlers),
    jobs: Object.fromEntries(
      options.types
        .all()
        .flatMap((t) => (t.agentAllowed !== undefined && t.agentAllowed !== false ? [[t.name, t.version]] : [])),
    ),
  };

  const server = createServer((socket) => {
    const conn: Connection = {
      socket,
      send(message) {
        if (socket.writable) socket.write(encode(message));
      },
    };
    socket.on('error', (err) => log.debug({ err: errorLine(err) }, 'request socket: connection error'));
    if (open.size >= maxConnections) {
      conn.send({ kind: 'error', message: `the ops gateway is busy (${maxConnections} requests): try again`, exit: 1 });
      socket.end();
      return;
    }
    open.add(conn);
    socket.on('close', () => open.delete(conn));
    conn.send(hello);
    serve(conn, handlers, options);
  });
  await listen(server, path);
  try {
    // listen() made it with the umask's mode; only the directory kept others out meanwhile.
    await chmod(path, SOCKET_MODE);
    const made = await stat(path);
    if (made.gid !== dir.gid) {
      throw new ConfigError(
        `config: the request socket ${path} got group ${made.gid}, not its directory's (${dir.gid}): make the directory setgid (mode 2750) so the agent's group can connect`,
      );
    }
  } catch (err) {
    await new Promise((r) => server.close(r));
    throw err;
  }
  log.info({ path }, 'request socket: serving this host’s agent');

  return {
    path,
    async close() {
      const closed = new Promise((r) => server.close(r));
      for (const conn of open) {
        const still = conn.jobId ? `; ${conn.jobId} continues (its outcome goes to the ops channel)` : '';
        conn.send({ kind: 'error', message: `the ops gateway is stopping${still}`, exit: 1 });
        conn.socket.end();
        conn.socket.destroySoon();
      }
      await closed;
      // Node removes a unix socket it listened on when it closes; a crash leaves it (see removeStaleSocket).
      await unlink(path).catch(() => {});
    },
  };
}

/** Reads one request line (bounded, within the timeout) and hands it to its handler. */
function serve(conn: Connection, handlers: Handlers, options: RequestSocketOptions): void {
  const { socket } = conn;
  const timeoutMs = options.requestTimeoutMs ?? 10_000;
  const splitter = new LineSplitter(MAX_AGENT_LINE);
  let taken = false;
  const refuse = (message: string, exit: 1 | 2 = 1) => {
    taken = true;
    conn.send({ kind: 'error', message, exit });
    socket.end();
  };
  socket.setTimeout(timeoutMs, () => {
    if (!taken) refuse(`no request within ${timeoutMs / 1000} s`);
  });
  socket.on('data', (chunk: Buffer) => {
    // One request per connection: anything after it is ignored.
    if (taken) return;
    const lines = splitter.push(chunk);
    if (lines === 'overflow') return refuse(`malformed request: a line longer than ${MAX_AGENT_LINE} bytes`, 2);
    const [line] = lines;
    if (line === undefined) return;
    taken = true;
    socket.setTimeout(0);
    void handle(line, conn, handlers, options.log);
  });
}

async function handle(line: string, conn: Connection, handlers: Handlers, log: Logger): Promise<void> {
  try {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new UsageError('malformed request: not a JSON line');
    }
    const parsed = agentMessageSchema.safeParse(json);
    if (!parsed.success) throw new UsageError(`malformed request: ${issueLine(parsed.error)}`);
    const message = parsed.data;
    // One entry per kind of request (a later host-local one is one more handler).
    await (handlers[message.kind] as (m: AgentMessage, c: Connection) => Promise<void>)(message, conn);
  } catch (err) {
    const ours = err instanceof ClawError;
    if (!ours) log.error({ err: errorLine(err) }, 'request socket: request failed');
    else log.info({ err: errorLine(err) }, 'request socket: request refused');
    const message = ours ? errorLine(err) : `the ops gateway could not take the request: ${errorLine(err)}`;
    conn.send({ kind: 'error', message: inertText(message), exit: ours && err.exitCode === 2 ? 2 : 1 });
    conn.socket.end();
  }
}

/** A job request: checked, added as signed, then followed until it ends or the agent leaves. */
async function handleJob(message: JobMessage, conn: Connection, options: RequestSocketOptions): Promise<void> {
  const { signed, signature } = message.envelope;
  const { host } = options;
  const principal = signed.principal;
  if (principal.kind !== 'agent' || principal.host !== host || signed.keyId !== `agent:${host}`) {
    throw new RefusedError(`refused: this socket takes requests of ${host}’s agent only`);
  }
  if (!verifyPayload(signed, signature, options.agentKey)) {
    throw new RefusedError(`refused: bad signature (not made with ${host}’s agent key)`);
  }
  const age = Date.now() - signed.issuedAt;
  if (age > options.maxAgeSeconds * 1000 || age < -60_000) {
    throw new RefusedError('refused: expired request (is this host’s clock right?)');
  }
  const type = options.types.get(signed.type);
  if (type === undefined || type.agentAllowed === undefined || type.agentAllowed === false)
    throw new RefusedError(`refused: agents cannot ask for ${signed.type}`);
  // The outcome goes to the ops channel; an agent does not pick where the bot posts.
  if (signed.reply !== undefined) throw new RefusedError('refused: an agent’s request names no reply target');
  const data = type.schema.safeParse(signed.data);
  if (!data.success) throw new UsageError(`${type.name}: invalid ${issueLine(data.error)}`);
  // Fast refusals; the worker decides again (and counts the rate).
  checkPolicy({ policy: {} }, type, data.data, principal);
  const used = Number(await options.redis.get(keys.agentRate(host, Math.floor(Date.now() / 3_600_000))));
  if (used >= options.agentRequestsPerHour) {
    throw new RefusedError(
      `refused: rate limit: ${host} may ask for ${options.agentRequestsPerHour} fleet actions per hour`,
    );
  }

  const queue = options.enqueuer.queue(queueNameFor(type, data.data));
  // Events from this position on: none of the job's can be missed, however fast it runs.
  const last = (await options.redis.xrevrange(queue.toKey('events'), '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
  const events = new QueueEvents(queue.name, { connection: options.connection, lastEventId: last });
  events.on('error', (err) => options.log.warn({ err: errorLine(err) }, 'request socket: job events interrupted'));
  // Listening before the job exists: a fast job's events cannot pass before we listen.
  const follower = follow(signed.jobId, queue, events, conn, options.pollMs ?? 5000);
  try {
    await options.enqueuer.enqueueSigned({ signed, signature });
  } catch (err) {
    follower.cancel();
    throw err;
  }
  conn.jobId = signed.jobId;
  options.log.info({ job: signed.jobId, type: type.name, host }, 'request socket: queued an agent’s request');
  conn.send({ kind: 'queued', jobId: signed.jobId });
  await follower.start();
}

function summaryOf(result: unknown): string {
  const summary = (result as { summary?: unknown } | null)?.summary;
  return typeof summary === 'string' ? summary : 'done';
}

interface Follower {
  /** Relays what was held and what follows; resolves when the job ended or the agent left. */
  start(): Promise<void>;
  /** The job was not added after all: stop listening. */
  cancel(): void;
}

/** Relays the job's progress and its end; stops early when the agent disconnects. */
function follow(jobId: string, queue: Queue, events: QueueEvents, conn: Connection, pollMs: number): Follower {
  const { socket } = conn;
  let held: GatewayMessage[] | null = [];
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  let resolve = () => {};
  const finished = new Promise<void>((r) => {
    resolve = r;
  });
  const send = (message: GatewayMessage) => {
    if (held !== null) held.push(message);
    else conn.send(message);
  };
  const stop = () => {
    if (done) return false;
    done = true;
    clearInterval(timer);
    events.removeAllListeners();
    events.on('error', () => {});
    void events.close().catch(() => {});
    resolve();
    return true;
  };
  const end = (ok: boolean, text: string) => {
    if (done) return;
    send({ kind: 'end', ok, text: inertText(text) });
    if (held === null) {
      stop();
      socket.end();
    }
  };
  // QueueEvents reads the queue's whole event stream: only this job's events count.
  events.on('progress', ({ jobId: id, data }) => {
    if (id !== jobId || done || data === null || typeof data !== 'object') return;
    const { message, percent } = data as { message?: unknown; percent?: unknown };
    if (typeof message !== 'string') return;
    const at = typeof percent === 'number' && percent >= 0 && percent <= 100 ? percent : undefined;
    send({ kind: 'progress', text: inertText(message), percent: at });
  });
  events.on('completed', ({ jobId: id, returnvalue }) => {
    if (id === jobId) end(true, summaryOf(returnvalue));
  });
  events.on('failed', ({ jobId: id, failedReason }) => {
    if (id === jobId) end(false, String(failedReason));
  });
  events.on('removed', ({ jobId: id }) => {
    if (id === jobId) end(false, `${jobId} was removed before it ended`);
  });
  return {
    cancel: () => {
      stop();
    },
    start() {
      const pending = held ?? [];
      held = null;
      for (const message of pending) {
        conn.send(message);
        if (message.kind === 'end') {
          stop();
          socket.end();
          return finished;
        }
      }
      // The backstop: an end whose event was missed (the events connection broke) is seen here.
      timer = setInterval(() => {
        void (async () => {
          const state = await queue.getJobState(jobId);
          if (state === 'unknown') return end(false, `${jobId} was removed before it ended`);
          if (state !== 'completed' && state !== 'failed') return;
          const job = await queue.getJob(jobId);
          if (state === 'completed') end(true, summaryOf(job?.returnvalue));
          else end(false, job?.failedReason ?? 'failed');
        })().catch(() => {});
      }, pollMs);
      // The agent left: the job runs on (its outcome goes to the ops channel).
      socket.once('close', stop);
      if (socket.destroyed) stop();
      return finished;
    },
  };
}

/** The socket's directory: this user's, no write for its group, nothing for others. */
async function checkDirectory(dir: string): Promise<{ gid: number }> {
  const info = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(
      `config: the request socket's directory ${dir} cannot be used (${err.code}): it must exist (the NixOS module makes it)`,
    );
  });
  if (!info.isDirectory()) throw new ConfigError(`config: the request socket's directory ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) {
    throw new ConfigError(`config: the request socket's directory ${dir} must belong to this user (uid ${uid})`);
  }
  if ((info.mode & 0o027) !== 0) {
    throw new ConfigError(
      `config: the request socket's directory ${dir} has mode ${(info.mode & 0o7777).toString(8)}: no write for its group, nothing for others (2750)`,
    );
  }
  return { gid: info.gid };
}

/** A socket left by a gateway that died is removed; one that answers belongs to a running gateway. */
async function removeStaleSocket(path: string): Promise<void> {
  const info = await lstat(path).catch(() => null);
  if (info === null) return;
  if (!info.isSocket()) throw new ConfigError(`config: ${path} exists and is not a socket`);
  const answers = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answers) throw new ConfigError(`config: another process serves the request socket ${path}`);
  await unlink(path);
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
