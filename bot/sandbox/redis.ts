// The sandbox's own Redis, when CLAWDINATOR_REDIS_URL is not set: `redis-server` from PATH on
// a free loopback port (`--port 0` would disable TCP: a free port is picked, and another one
// tried when it was taken in between), no persistence, its files in `<dir>/redis/`.
//
// It runs in a process group of its own, so a Ctrl-C at the terminal reaches the sandbox
// only, and the sandbox stops it last, after the worker and the relay are done with it. Its
// pid is kept in `<dir>/redis/redis-server.pid`: a sandbox killed with SIGKILL leaves its
// redis-server behind, and the next start in the same directory stops that one (only when the
// process is a redis-server working in that directory, so a reused pid is never touched).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { OperationError } from '../../lib/errors.js';

export const REDIS_MISSING =
  'redis-server not found: install it (Debian: apt-get install redis-server) or set CLAWDINATOR_REDIS_URL';

export interface SandboxRedis {
  url: string;
  port: number;
  pid: number;
  /** Stops the server (SIGTERM, SIGKILL after a grace period) and waits for it to exit. */
  stop(): Promise<void>;
}

export interface RedisLaunchOptions {
  /** The sandbox directory; the server's files go to `<dir>/redis/`. */
  dir: string;
  /** The executable; default `redis-server` from PATH. */
  command?: string;
  /** How long to wait for the server to answer PING. */
  readyTimeoutMs?: number;
}

const PID_FILE = 'redis-server.pid';

export async function startSandboxRedis(options: RedisLaunchOptions): Promise<SandboxRedis> {
  const dir = join(options.dir, 'redis');
  await mkdir(dir, { recursive: true });
  await stopLeftover(dir);
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = await launch(options.command ?? 'redis-server', port, dir, options.readyTimeoutMs ?? 10_000);
    if (child === 'port-taken') continue;
    await writeFile(join(dir, PID_FILE), `${child.pid}\n`);
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      pid: child.pid as number,
      async stop() {
        await terminate(child);
        await rm(join(dir, PID_FILE), { force: true });
      },
    };
  }
  throw new OperationError('redis-server: no free loopback port found after 5 tries');
}

/** A free loopback TCP port (`redis-server --port 0` would disable TCP instead). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function launch(
  command: string,
  port: number,
  dir: string,
  readyTimeoutMs: number,
): Promise<ChildProcess | 'port-taken'> {
  const logFile = join(dir, 'redis.log');
  await writeFile(logFile, '');
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'no',
    '--logfile',
    logFile,
  ];
  // Its own process group (detached): a terminal's Ctrl-C must not stop it before the worker.
  const child = spawn(command, args, { stdio: 'ignore', detached: true });
  const exited = new Promise<{ code: number | null; error?: NodeJS.ErrnoException }>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, error }));
    child.once('exit', (code) => resolve({ code }));
  });
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    const early = await Promise.race([exited, delay(25).then(() => undefined)]);
    if (early !== undefined) {
      if (early.error?.code === 'ENOENT') throw new OperationError(REDIS_MISSING);
      if (early.error) throw new OperationError(`redis-server could not be started (${early.error.code ?? 'error'})`);
      const log = await readFile(logFile, 'utf8').catch(() => '');
      if (/Address already in use|Could not create server TCP/.test(log)) return 'port-taken';
      const last = log.trim().split('\n').at(-1)?.trim() ?? '';
      throw new OperationError(`redis-server exited (code ${early.code}) at start${last ? `: ${last}` : ''}`);
    }
    if (await answersPing(port)) return child;
    if (Date.now() > deadline) {
      await terminate(child);
      throw new OperationError(`redis-server did not answer on port ${port} within ${readyTimeoutMs} ms`);
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A bare RESP PING, without a client library: true on +PONG. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let data = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
  });
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Stops a redis-server that a killed sandbox left running in this directory. */
async function stopLeftover(dir: string): Promise<void> {
  const raw = await readFile(join(dir, PID_FILE), 'utf8').catch(() => null);
  if (raw === null) return;
  const pid = Number(raw.trim());
  if (Number.isInteger(pid) && pid > 1 && (await isOurRedis(pid, dir))) {
    try {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 200 && (await alive(pid)); i++) await delay(25);
    } catch {
      // gone already
    }
  }
  await rm(join(dir, PID_FILE), { force: true });
}

async function isOurRedis(pid: number, dir: string): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (!/redis-server/.test(cmdline.split('\0')[0] ?? '')) return false;
    // redis-server changes into its --dir: the process works in this sandbox's folder.
    return (await readlink(`/proc/${pid}/cwd`)) === (await realpath(dir));
  } catch {
    return false;
  }
}

async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
