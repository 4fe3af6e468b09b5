// A real redis-server for tests, on a free loopback port (`--port 0` would disable TCP), in
// a temp directory. `persist` turns on the append-only file so a restart keeps the data.
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { freePort } from '../../bot/sandbox/redis.js';
import { tempDir } from './cli.js';

export interface TestRedis {
  url: string;
  port: number;
  client(): Redis;
  /** Counts what Redis runs from now on (MONITOR): sent by clients, and run inside scripts. */
  monitor(): Promise<Monitor>;
  stop(): Promise<void>;
  restart(): Promise<void>;
}

async function launch(port: number, dir: string, persist: boolean, password?: string): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no'];
  if (password !== undefined) args.push('--requirepass', password);
  args.push('--appendonly', persist ? 'yes' : 'no', '--appendfsync', 'always');
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve();
      if (/Address already in use|Could not create server TCP/.test(out)) reject(new Error('port in use'));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out.slice(-300)}`)));
  });
  return child;
}

/** `password`: AUTH required, as the fleet's ElastiCache requires its auth token. */
export async function startRedis(options: { persist?: boolean; password?: string } = {}): Promise<TestRedis> {
  const dir = tempDir('clawdinator-redis-');
  let port = 0;
  let child: ChildProcess | undefined;
  for (let attempt = 0; attempt < 5 && child === undefined; attempt++) {
    port = await freePort();
    child = await launch(port, dir, options.persist ?? false, options.password).catch((err: Error) => {
      if (err.message === 'port in use') return undefined;
      throw err;
    });
  }
  if (child === undefined) throw new Error('could not start redis-server on a free port');
  const clients: Redis[] = [];
  const stopChild = async () => {
    const c = child as ChildProcess;
    if (c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    client() {
      const r = new Redis({ host: '127.0.0.1', port, password: options.password, maxRetriesPerRequest: null });
      clients.push(r);
      return r;
    },
    monitor: () => monitorCounts(port),
    async stop() {
      for (const c of clients) c.disconnect();
      await stopChild();
    },
    async restart() {
      await stopChild();
      child = await launch(port, dir, options.persist ?? false, options.password);
    },
  };
}

export interface Monitor {
  /** Commands seen while `counting` is true. */
  counts: { client: number; script: number };
  counting: boolean;
  stop(): void;
}

/**
 * MONITOR on a raw socket. ioredis's own `monitor()` marks its connection as monitoring one
 * tick after the OK, so monitor lines that arrive in the same chunk as the OK crash it with
 * "Command queue state error" under load; each MONITOR line is one `+…` line, easy to count.
 */
function monitorCounts(port: number): Promise<Monitor> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const m: Monitor = { counts: { client: 0, script: 0 }, counting: false, stop: () => socket.destroy() };
    let buffer = '';
    let ok = false;
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('connect', () => socket.write('MONITOR\r\n'));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl = buffer.indexOf('\r\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        nl = buffer.indexOf('\r\n');
        if (!ok) {
          if (line !== '+OK') return reject(new Error(`MONITOR refused: ${line}`));
          ok = true;
          resolve(m);
          continue;
        }
        if (!m.counting) continue;
        // "+<time> [<db> <source>] <args>": the source is "lua" inside a script.
        if (/^\+\S+ \[\d+ lua\]/.test(line)) m.counts.script++;
        else m.counts.client++;
      }
    });
  });
}
