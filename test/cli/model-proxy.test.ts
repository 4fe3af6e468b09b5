// `clawdinator model-proxy` as the host runs it (the built CLI, a real redis-server) in front
// of a loopback provider stand-in (test/support/model-standin.ts), the agent's side played by
// plain HTTP clients on its loopback port:
//   - the key from the ops-only file is what reaches the provider; the agent's own credential
//     headers never do, and nothing the agent side receives (bodies, headers, errors) holds a key
//   - anything but the allowed paths of the known providers is answered 403 with one line and
//     never reaches a provider (other paths and methods, other providers, absolute-form URLs
//     naming another host, CONNECT, upgrades)
//   - streams pass through byte for byte; token counts of JSON and SSE responses (Anthropic,
//     OpenAI chat with the proxy asking for the usage chunk, OpenAI responses) are summed per
//     member and day in Redis, carried by the member's worker heartbeat and priced by /status
//   - crossing the daily budget posts one alert for the day, however many requests follow
import { type ChildProcess, spawn } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bot/sandbox/redis.js';
import { createSimCloud, instantSimTimings } from '../../jobs/cloud/sim.js';
import { keys } from '../../jobs/engine/keys.js';
import { generateSigningKeyPair } from '../../jobs/signing.js';
import { fleetStatus, formatMember } from '../../jobs/status.js';
import { crossedBudget, readUsage, recordUsage, utcDay } from '../../jobs/usage.js';
import { CLI, tempDir } from '../support/cli.js';
import { type ModelStandin, startModelStandin } from '../support/model-standin.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const MEMBER = 'clawdinator-2';
const OPS_CHANNEL = '123456789012345678';
const ANTHROPIC_KEY = `sk-ant-planted-${randomBytes(12).toString('hex')}`;
const OPENAI_KEY = `sk-planted-openai-${randomBytes(12).toString('hex')}`;
const PRICES = {
  'anthropic/claude-opus-4-6*': { input: 5, output: 25, cacheRead: 0.5, cacheWrite: 6.25 },
  'openai/gpt-5.2*': { input: 1.25, output: 10 },
};
const USAGE = { input: 1000, output: 200, cacheRead: 300, cacheWrite: 50 };

let dir: string;
let server: TestRedis;
let redis: Redis;
let standin: ModelStandin;
let proxy: { child: ChildProcess; output: () => string };
let base: string;
/** Everything the agent's side received from the proxy: searched for the keys at the end. */
const seenByAgent: string[] = [];
const children: ChildProcess[] = [];

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  seenByAgent.push(text, JSON.stringify([...res.headers]));
  return { status: res.status, text, headers: res.headers };
}

/** A raw request on a socket (request lines fetch would never send). */
function raw(request: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      seenByAgent.push(text);
      resolve(text);
    });
    socket.on('error', reject);
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer')));
  });
}

async function until<T>(check: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function start(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => chunks.push(d));
  child.stderr?.on('data', (d: Buffer) => chunks.push(d));
  children.push(child);
  return { child, output: () => Buffer.concat(chunks).toString() };
}

beforeAll(async () => {
  dir = tempDir('clawdinator-model-proxy-');
  server = await startRedis();
  redis = server.client();
  standin = await startModelStandin(USAGE);
  writeFileSync(join(dir, 'anthropic-api-key'), `${ANTHROPIC_KEY}\n`, { mode: 0o400 });
  writeFileSync(join(dir, 'openai-api-key'), `${OPENAI_KEY}\n`, { mode: 0o400 });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  proxy = start(['model-proxy'], {
    CLAWDINATOR_HOST_NAME: MEMBER,
    CLAWDINATOR_REDIS_URL: server.url,
    CLAWDINATOR_MODEL_PROXY_PORT: String(port),
    CLAWDINATOR_ANTHROPIC_API_KEY_FILE: join(dir, 'anthropic-api-key'),
    CLAWDINATOR_OPENAI_API_KEY_FILE: join(dir, 'openai-api-key'),
    CLAWDINATOR_MODEL_UPSTREAMS: JSON.stringify({ anthropic: standin.url, openai: standin.url }),
    CLAWDINATOR_LOG_LEVEL: 'info',
  });
  await until(async () => proxy.output().includes('model proxy ready'));
});

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
  await standin?.close();
  await server?.stop();
});

describe('clawdinator model-proxy', () => {
  it('adds the key upstream and drops the agent’s own credentials; the agent side never sees a key', async () => {
    const a = await post(
      '/anthropic/v1/messages',
      { model: 'claude-opus-4-6', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] },
      {
        'anthropic-version': '2023-06-01',
        'x-api-key': 'clawdinator-model-proxy',
        authorization: 'Bearer agent',
        cookie: 'c=1',
      },
    );
    expect(a.status).toBe(200);
    const up = standin.requests.at(-1);
    expect(up?.path).toBe('/v1/messages');
    expect(up?.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(up?.headers['anthropic-version']).toBe('2023-06-01');
    expect(up?.headers.authorization).toBeUndefined();
    expect(up?.headers.cookie).toBeUndefined();

    const o = await post(
      '/openai/v1/responses',
      { model: 'gpt-5.2-codex', input: 'hi' },
      { authorization: 'Bearer clawdinator-model-proxy', 'x-api-key': 'agent' },
    );
    expect(o.status).toBe(200);
    expect(standin.requests.at(-1)?.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(standin.requests.at(-1)?.headers['x-api-key']).toBeUndefined();
  });

  it('answers anything else 403 with one line, and none of it reaches a provider', async () => {
    const before = standin.requests.length;
    const refused: [string, Promise<{ status: number; text: string }>][] = [
      [
        'a GET of an allowed path',
        fetch(`${base}/anthropic/v1/messages`).then(async (r) => ({ status: r.status, text: await r.text() })),
      ],
      ['another path of a known provider', post('/anthropic/v1/files', {})],
      ['a path walking out of the allowed one', post('/anthropic/v1/messages/../files', {})],
      ['another provider', post('/google/v1beta/models/gemini:generateContent', {})],
      ['the provider root', post('/openai', {})],
      ['a query with a path in it', post('/anthropic/v1/messages?next=/v1/files', {})],
    ];
    for (const [what, pending] of refused) {
      const r = await pending;
      expect(r.status, what).toBe(403);
      expect(r.text, what).toMatch(/^model proxy: [^\n]+\n$/);
    }
    const port = Number(new URL(base).port);
    const absolute = await raw(
      'POST http://169.254.169.254/latest/api/token HTTP/1.1\r\nhost: 169.254.169.254\r\ncontent-length: 0\r\n\r\n',
      port,
    );
    expect(absolute).toMatch(/^HTTP\/1\.1 403 /);
    expect(absolute).toMatch(/\r\n\r\nmodel proxy: POST to another host is not allowed\n$/);
    const tunnel = await raw('CONNECT api.anthropic.com:443 HTTP/1.1\r\nhost: api.anthropic.com:443\r\n\r\n', port);
    expect(tunnel).toMatch(
      /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*\r\n\r\nmodel proxy: tunnels and upgrades are not allowed\n$/,
    );
    const upgrade = await raw(
      'GET /openai/v1/responses HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n',
      port,
    );
    expect(upgrade).toMatch(/^HTTP\/1\.1 403 Forbidden/);
    expect(standin.requests.length).toBe(before);
  });

  it('streams pass through unchanged; JSON and SSE token counts are summed per member and day', async () => {
    // The first test's two responses are written in the proxy's next batch: once they are in,
    // start this count from zero.
    await until(async () => {
      const u = await readUsage(redis, MEMBER, utcDay(Date.now()));
      return u.models['claude-opus-4-6']?.requests === 1 && u.models['gpt-5.2-codex']?.requests === 1;
    });
    await redis.del(`clawdinator:usage:${utcDay(Date.now())}:${MEMBER}`);
    const claude = { model: 'claude-opus-4-6', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
    const gpt = { model: 'gpt-5.2-codex', messages: [{ role: 'user', content: 'hi' }] };
    standin.deltas = 50;
    // Byte for byte what the provider sent, long streams included.
    const direct = await fetch(`${standin.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...claude, stream: true }),
    }).then((r) => r.text());
    const streamed = await post('/anthropic/v1/messages', { ...claude, stream: true });
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(streamed.text).toBe(direct);

    await post('/anthropic/v1/messages', claude);
    await post('/openai/v1/chat/completions', gpt);
    // A stream that did not ask for its usage: the proxy asks, so it is counted anyway.
    const chat = await post('/openai/v1/chat/completions', { ...gpt, stream: true });
    expect(JSON.parse(standin.requests.at(-1)?.body ?? '{}').stream_options).toEqual({ include_usage: true });
    expect(chat.text).toContain('"usage":{"prompt_tokens":1300');
    await post('/openai/v1/responses', { model: 'gpt-5.2-codex', input: 'hi' });
    await post('/openai/v1/responses', { model: 'gpt-5.2-codex', input: 'hi', stream: true });

    const day = utcDay(Date.now());
    const each = { input: USAGE.input, output: USAGE.output, cacheRead: USAGE.cacheRead };
    const usage = await until(async () => {
      const u = await readUsage(redis, MEMBER, day);
      return u.models['gpt-5.2-codex']?.requests === 4 && u.models['claude-opus-4-6']?.requests === 2 ? u : undefined;
    });
    expect(usage.models).toEqual({
      'claude-opus-4-6': {
        input: 2 * each.input,
        output: 2 * each.output,
        cacheRead: 2 * each.cacheRead,
        cacheWrite: 2 * USAGE.cacheWrite,
        requests: 2,
      },
      // OpenAI reports cached input inside the input: counted apart, never twice.
      'gpt-5.2-codex': {
        input: 4 * each.input,
        output: 4 * each.output,
        cacheRead: 4 * each.cacheRead,
        cacheWrite: 0,
        requests: 4,
      },
    });
  });

  it('the member’s worker carries today’s usage in its heartbeat; /status prices it', async () => {
    const schedule = generateSigningKeyPair();
    writeFileSync(join(dir, 'schedule.pem'), schedule.privateKeyPem, { mode: 0o600 });
    const entry = {
      host: MEMBER,
      instanceType: 't3.large',
      bootstrapPrefix: `bootstrap/${MEMBER}`,
      discordTokenSecret: `clawdinator/discord-token/${MEMBER}`,
    };
    writeFileSync(join(dir, 'fleet.json'), JSON.stringify({ [MEMBER]: entry }));
    writeFileSync(
      join(dir, 'build-info.json'),
      JSON.stringify({
        revision: 'c0ffee',
        locked: true,
        version: '0.1.0',
        runtime: {
          name: 'openclaw',
          version: '2026.6.11',
          rev: 'e085fa1a3ffd',
          nixOpenclaw: { rev: '910c1ce89e6a', lastModified: 1_782_864_339 },
        },
        nixpkgs: { rev: 'abcdef123456', lastModified: 1_782_000_000 },
      }),
    );
    start(['worker', '--instance-id', 'i-2'], {
      CLAWDINATOR_HOST_NAME: MEMBER,
      CLAWDINATOR_REDIS_URL: server.url,
      CLAWDINATOR_JOB_SIGNING_KEY_FILE: join(dir, 'schedule.pem'),
      CLAWDINATOR_JOB_KEY_ID: 'schedule',
      CLAWDINATOR_JOB_PUBLIC_KEYS: JSON.stringify({ schedule: schedule.publicKeyPem }),
      CLAWDINATOR_FLEET_REGISTRY: join(dir, 'fleet.json'),
      CLAWDINATOR_BUILD_INFO_FILE: join(dir, 'build-info.json'),
      CLAWDINATOR_MEMORY_DIR: dir,
      CLAWDINATOR_LOG_LEVEL: 'warn',
      // A beat a second: the budget alert below is the worker's, checked at each beat.
      CLAWDINATOR_HEARTBEAT_TTL: '3',
      CLAWDINATOR_MODEL_PRICES: JSON.stringify(PRICES),
      // One Anthropic response of USAGE costs about 0.01 USD: the third request crosses it.
      CLAWDINATOR_MODEL_DAILY_BUDGET_USD: '0.025',
      CLAWDINATOR_OPS_CHANNEL_ID: OPS_CHANNEL,
    });
    const day = utcDay(Date.now());
    const counted = await readUsage(redis, MEMBER, day);
    const beat = await until(async () => {
      const raw = await redis.get(keys.heartbeat(MEMBER));
      return raw === null ? undefined : JSON.parse(raw).heartbeat;
    });
    expect(beat.usage).toEqual(counted);

    const status = await fleetStatus({
      registry: async () => ({ [MEMBER]: entry }),
      cloud: createSimCloud({ timings: instantSimTimings }),
      redis,
      queues: [],
      workersKey: createPublicKey(schedule.publicKeyPem),
      prices: PRICES,
      detail: MEMBER,
    });
    // By hand: 2 × (1000 × 5 + 200 × 25 + 300 × 0.5 + 50 × 6.25) + 4 × (1000 × 1.25 + 200 × 10 + 300 × 1.25), per million.
    const cost = (2 * (5000 + 5000 + 150 + 312.5) + 4 * (1250 + 2000 + 375)) / 1e6;
    expect(status.members[0]?.usage?.costUsd).toBeCloseTo(cost, 10);
    const detail = formatMember(status, MEMBER) ?? '';
    expect(detail).toContain(
      `models today (${day} UTC): 6.0k in (+1.9k cached) / 1.2k out, 6 requests, ~$${cost.toFixed(2)}`,
    );
    // And what the host runs, from its worker's copy of the build info.
    expect(detail).toContain('openclaw: 2026.6.11 (rev e085fa1a3ffd) from nix-openclaw 910c1ce89e6a');
    expect(detail).toMatch(/clawdinators: c0ffee \(v0\.1\.0, flake\.lock pinned\)/);
  });

  it('crossing the daily budget: the member’s worker posts one alert for the day in the ops channel, however many requests follow', async () => {
    for (let i = 0; i < 3; i++) await post('/anthropic/v1/messages', { model: 'claude-opus-4-6', messages: [] });
    const alerts = async () =>
      ((await redis.xrange('clawdinator:events', '-', '+')) as [string, string[]][])
        .map(([, fields]) => JSON.parse(fields[1] as string))
        // Signed by the member's worker (the proxy faces the agent and holds no signing key).
        .filter((e) => e.keyId === 'schedule')
        .map((e) => e.event)
        .filter((e) => e.kind === 'alert' && e.type === 'model-usage');
    const [alert] = await until(async () => {
      const a = await alerts();
      return a.length > 0 ? a : undefined;
    });
    expect(alert.reply).toEqual({ channelId: OPS_CHANNEL });
    expect(alert.text).toMatch(
      new RegExp(
        `^${MEMBER} spent an estimated \\$\\d+\\.\\d\\d on models today \\(\\d{4}-\\d\\d-\\d\\d UTC\\), over the daily budget of \\$0\\.03$`,
      ),
    );
    await until(
      async () => (await readUsage(redis, MEMBER, utcDay(Date.now()))).models['claude-opus-4-6']?.requests === 5,
    );
    expect(await alerts()).toHaveLength(1);

    // The next day starts over: the first crossing then alerts again, once.
    const tomorrow = Date.now() + 86_400_000;
    const next = await recordUsage(
      redis,
      MEMBER,
      [{ model: 'claude-opus-4-6', input: 10_000, output: 0, cacheRead: 0, cacheWrite: 0 }],
      utcDay(tomorrow),
    );
    expect(await crossedBudget(redis, MEMBER, next, PRICES, 0.025)).not.toBeNull();
    expect(await crossedBudget(redis, MEMBER, next, PRICES, 0.025)).toBeNull();
  });

  it('the proxy printed no key', () => {
    const out = proxy.output();
    expect(out).toContain('model proxy ready');
    for (const text of [out, ...seenByAgent]) {
      expect(text).not.toContain(ANTHROPIC_KEY);
      expect(text).not.toContain(OPENAI_KEY);
    }
  });
});
