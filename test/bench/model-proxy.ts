// Bench rows of the model proxy: the latency it adds to a model request, against the same
// request sent straight to the same loopback provider stand-in in the same run (interleaved,
// one at a time, keep-alive on both paths), and its idle RSS beside a bare Node process holding
// what it must (an HTTP server and a Redis connection). The proxy runs as hosts run it: the
// built CLI in its own process, metering each response into a real redis-server.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { freePort } from '../../bot/sandbox/redis.js';
import { projectPath } from '../../lib/paths.js';
import { tempDir } from '../support/cli.js';
import { startRedis } from '../support/redis.js';
import { idleRss } from './rss.js';
import { median, ms, percentile, type Row } from './table.js';

const WARMUP = 300;
const ROUNDS = 10000;
const BODY = JSON.stringify({
  model: 'claude-opus-4-6',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'ping' }],
});

/** The stand-in in its own process, so both paths cross to another process to reach it. */
async function startStandinProcess(): Promise<{ url: string; close(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      projectPath('dist', 'test', 'support', 'model-standin-process.js'),
      JSON.stringify({ input: 100, output: 20, cacheRead: 0, cacheWrite: 0 }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^ready (\S+)\n/.exec(out);
      if (m) resolve(m[1] as string);
    });
    void exited.then(() => reject(new Error('the model stand-in exited before it was ready')));
  });
  return {
    url,
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One POST, resolved when the whole response arrived; its duration in ms. */
function timed(agent: http.Agent, port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(BODY),
          'anthropic-version': '2023-06-01',
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`${path}: HTTP ${res.statusCode}`));
          else resolve(Number(process.hrtime.bigint() - start) / 1e6);
        });
      },
    );
    req.on('error', reject);
    req.end(BODY);
  });
}

export async function modelProxyOverhead(): Promise<Row[]> {
  const dir = tempDir('clawdinator-bench-proxy-');
  const redis = await startRedis();
  const standin = await startStandinProcess();
  writeFileSync(join(dir, 'anthropic-api-key'), 'sk-ant-bench\n', { mode: 0o400 });
  const port = await freePort();
  const env = {
    CLAWDINATOR_HOST_NAME: 'clawdinator-bench',
    CLAWDINATOR_REDIS_URL: redis.url,
    CLAWDINATOR_MODEL_PROXY_PORT: String(port),
    CLAWDINATOR_ANTHROPIC_API_KEY_FILE: join(dir, 'anthropic-api-key'),
    CLAWDINATOR_MODEL_UPSTREAMS: JSON.stringify({ anthropic: standin.url }),
    CLAWDINATOR_LOG_LEVEL: 'info',
  };
  const proxy = spawn(process.execPath, [projectPath('dist', 'cli', 'main.js'), 'model-proxy'], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((r) => proxy.once('exit', r));
  const direct: number[] = [];
  const proxied: number[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      proxy.stderr.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('model proxy ready')) resolve();
      });
      void exited.then(() => reject(new Error(`model-proxy exited: ${out.slice(-300)}`)));
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const standinPort = Number(new URL(standin.url).port);
    for (let i = 0; i < WARMUP + ROUNDS; i++) {
      const d = await timed(agent, standinPort, '/v1/messages');
      const p = await timed(agent, port, '/anthropic/v1/messages');
      if (i >= WARMUP) {
        direct.push(d);
        proxied.push(p);
      }
    }
    agent.destroy();
  } finally {
    proxy.kill('SIGTERM');
    await exited;
  }

  const projectRss: number[] = [];
  const floorRss: number[] = [];
  const bare = `const { Redis } = require('ioredis'); const r = new Redis(${redis.port}, '127.0.0.1'); require('node:http').createServer((q, s) => s.end()).listen(0, '127.0.0.1', () => console.log('ready'));`;
  try {
    for (let i = 0; i < 3; i++) {
      floorRss.push(await idleRss(['-e', bare], 'ready', { PATH: process.env.PATH ?? '' }));
      projectRss.push(
        await idleRss([projectPath('dist', 'cli', 'main.js'), 'model-proxy'], 'model proxy ready', {
          PATH: process.env.PATH ?? '',
          ...env,
        }),
      );
    }
  } finally {
    await standin.close();
    await redis.stop();
  }

  const added50 = percentile(proxied, 50) - percentile(direct, 50);
  const added99 = percentile(proxied, 99) - percentile(direct, 99);
  const rssRatio = median(projectRss) / median(floorRss);
  return [
    {
      what: `model proxy, one request at a time (${ROUNDS} each, interleaved): latency added`,
      project: `via the proxy p50 ${ms(percentile(proxied, 50))}, p99 ${ms(percentile(proxied, 99))}; added p50 ${ms(added50)}, p99 ${ms(added99)}`,
      floor: `straight to the stand-in p50 ${ms(percentile(direct, 50))}, p99 ${ms(percentile(direct, 99))}`,
      ratio: null,
      budget: '≤ 2 ms p99 added',
      ok: added99 <= 2,
    },
    {
      what: 'model proxy idle RSS (median of 3)',
      project: `clawdinator model-proxy: ${median(projectRss).toFixed(0)} MiB`,
      floor: `node: http server + ioredis client: ${median(floorRss).toFixed(0)} MiB`,
      ratio: rssRatio,
      budget: '— (none in DESIGN.md)',
      ok: null,
    },
  ];
}
