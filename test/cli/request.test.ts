// `clawdinator request` (the built CLI, as the agent runs it) against the ops gateway's
// request socket (bot/request-socket.ts, in this process) on a real unix socket, the real
// worker and job types on a real redis-server, and the simulated cloud. The agent's
// environment holds its key and the socket path only: no Redis setting at all.
import { spawn } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { encode, LineSplitter } from '../../bot/request-protocol.js';
import { type RequestSocket, startRequestSocket } from '../../bot/request-socket.js';
import type { SignedRequest } from '../../jobs/engine/envelope.js';
import { hostQueue, keys } from '../../jobs/engine/keys.js';
import { JobTypes } from '../../jobs/engine/queues.js';
import { AgentTokens } from '../../jobs/github/agent-token.js';
import { SimOrg } from '../../jobs/github/sim.js';
import { newNonce, signPayload } from '../../jobs/signing.js';
import { githubTokenJob } from '../../jobs/types/github-token.js';
import { DEFAULT_INSTANCE_TYPES } from '../../lib/config.js';
import { ConfigError } from '../../lib/errors.js';
import { createLogger } from '../../lib/log.js';
import { CLI, runCli, tempDir } from '../support/cli.js';
import { DiscordStandIn } from '../support/discord-standin.js';
import { orgWorld } from '../support/github-org.js';
import { keyPair, lifecycleSettings, startWorker, testStepSigner, testWorkersKey } from '../support/jobs.js';
import { type Lifecycle, lifecycleSuite } from '../support/lifecycle.js';

const suite = lifecycleSuite({ tokens: ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'] });
/** What an agent can plant in its environment: it must end up nowhere. */
const PLANTED = 'planted-redis-password-5d1e0c';

interface Gateway {
  h: Lifecycle;
  socket: RequestSocket;
  dir: string;
  /** The agent's environment: its key and the socket, nothing else. */
  agentEnv: Record<string, string>;
}

/** A socket directory as the NixOS module makes it: the ops user's, no write for its group. */
function socketDir(mode = 0o2750): string {
  const dir = join(tempDir('clawdinator-request-'), 'run');
  mkdirSync(dir);
  chmodSync(dir, mode);
  return dir;
}

function keyFile(key: KeyObject): string {
  const path = join(tempDir('clawdinator-agent-'), 'agent-key.pem');
  writeFileSync(path, key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return path;
}

async function gateway(options: { requestsPerHour?: number; requestTimeoutMs?: number } = {}): Promise<Gateway> {
  const h = suite.harness();
  const dir = socketDir();
  const socket = await startRequestSocket({
    path: join(dir, 'request.sock'),
    host: 'clawdinator-1',
    agentKey: h.keys.agent.publicKey,
    enqueuer: h.enqueuer('gateway'),
    types: h.types,
    redis: suite.redis,
    connection: { host: '127.0.0.1', port: suite.server.port, maxRetriesPerRequest: null },
    maxAgeSeconds: 300,
    agentRequestsPerHour: options.requestsPerHour ?? 3,
    requestTimeoutMs: options.requestTimeoutMs,
    log: createLogger('silent'),
  });
  suite.defer(() => socket.close());
  const agentEnv = {
    CLAWDINATOR_JOB_SIGNING_KEY_FILE: keyFile(h.keys.agent.privateKey),
    CLAWDINATOR_JOB_KEY_ID: 'agent:clawdinator-1',
    CLAWDINATOR_REQUEST_SOCKET: socket.path,
  };
  return { h, socket, dir, agentEnv };
}

/** A raw client: sends `data` after the greeting and collects every line until the gateway closes. */
function raw(path: string, data: string | Buffer): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const lines: string[] = [];
    const splitter = new LineSplitter(1 << 20);
    const client = connect(path);
    let sent = false;
    client.on('data', (chunk: Buffer) => {
      const got = splitter.push(chunk);
      if (got === 'overflow') return reject(new Error('overflow'));
      lines.push(...got);
      if (!sent && lines.length > 0) {
        sent = true;
        client.write(data);
      }
    });
    client.on('error', reject);
    client.on('close', () => resolve(lines));
  });
}

function signedRequest(host: string, data: Record<string, unknown>, type = 'spawn'): SignedRequest {
  const requestId = `agent-${newNonce()}`;
  return {
    type,
    jobId: `${type}-${requestId}`,
    schema: 1,
    data,
    principal: { kind: 'agent', host },
    keyId: `agent:${host}`,
    issuedAt: Date.now(),
    nonce: newNonce(),
    requestId,
  };
}

async function queueCounts(h: Lifecycle) {
  return h.queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
}

describe('clawdinator request over the gateway’s socket', () => {
  it('spawns a peer end to end with the agent’s files only, printing the progress the gateway relays', async () => {
    const { h, agentEnv } = await gateway();
    expect(Object.keys(agentEnv).filter((k) => /REDIS/.test(k))).toEqual([]);
    const r = await runCli(['request', 'spawn', 'clawdinator-3'], { env: agentEnv });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^queued spawn-agent-[A-Za-z0-9_-]+$/);
    // Progress from the job, relayed by this gateway (not the notification stream's group).
    expect(lines).toContain('clawdinator-3: ami-00000000000000a11 (clawdinator-nixos), t3.large');
    expect(
      lines.filter((l) => ['checks', 'agent-key', 'registry', 'bundle', 'plan', 'apply', 'record'].includes(l)),
    ).toEqual(['checks', 'agent-key', 'registry', 'bundle', 'plan', 'apply', 'record']);
    expect(lines).toContainEqual(expect.stringMatching(/^plan: 5 to add, 0 to change, 0 to destroy: /));
    expect(lines.at(-1)).toMatch(/^clawdinator-3 online: i-[0-9a-f]+, ami-00000000000000a11, /);
    // The worker ran it as the agent's request.
    const jobId = (lines[0] as string).slice('queued '.length);
    expect((await suite.sim.registry.read()).registry['clawdinator-3']).toBeDefined();
    const queued = await h.queue.getJob(jobId);
    expect(queued?.data.signed.principal).toEqual({ kind: 'agent', host: 'clawdinator-1' });
  });

  it('never reads a Redis setting: a Redis URL and password file in its environment stay unused', async () => {
    const { agentEnv } = await gateway();
    // A TCP listener where the URL points: any connection to it is a failure.
    const trap = createServer((s) => {
      connections++;
      s.destroy();
    });
    let connections = 0;
    await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r));
    suite.defer(() => new Promise<void>((r) => trap.close(() => r())));
    const port = (trap.address() as { port: number }).port;
    const passwordFile = join(tempDir(), 'redis-password');
    writeFileSync(passwordFile, PLANTED);
    const r = await runCli(['request', 'spawn', 'clawdinator-2', '--detach'], {
      env: {
        ...agentEnv,
        CLAWDINATOR_REDIS_URL: `redis://127.0.0.1:${port}`,
        CLAWDINATOR_REDIS_PASSWORD_FILE: passwordFile,
      },
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^queued spawn-agent-\S+\ndetached: the outcome goes to the ops channel\n$/);
    expect(connections).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(PLANTED);
  });

  it('a request signed with another host’s key, or as another host, is refused at the socket; nothing is queued', async () => {
    const { h, socket, agentEnv } = await gateway();
    // The agent's CLI with a key that is not this host's agent's.
    const otherKey = keyPair();
    const forged = await runCli(['request', 'spawn', 'clawdinator-3'], {
      env: { ...agentEnv, CLAWDINATOR_JOB_SIGNING_KEY_FILE: keyFile(otherKey.privateKey) },
    });
    expect(forged).toEqual({
      code: 1,
      stdout: '',
      stderr: 'clawdinator: refused: bad signature (not made with clawdinator-1’s agent key)\n',
    });
    // Another host's agent, with its own key, writing to this socket.
    const asOther = signedRequest('clawdinator-2', { name: 'clawdinator-3' });
    const lines = await raw(
      socket.path,
      encode({ kind: 'job', envelope: { signed: asOther, signature: signPayload(asOther, otherKey.privateKey) } }),
    );
    expect(lines.slice(1).map((l) => JSON.parse(l))).toEqual([
      { kind: 'error', message: 'refused: this socket takes requests of clawdinator-1’s agent only', exit: 1 },
    ]);
    // This host's agent, but the signed data changed after signing.
    const genuine = signedRequest('clawdinator-1', { name: 'clawdinator-3' });
    const signature = signPayload(genuine, h.keys.agent.privateKey);
    const tampered = await raw(
      socket.path,
      encode({ kind: 'job', envelope: { signed: { ...genuine, data: { name: 'clawdinator-2' } }, signature } }),
    );
    expect(JSON.parse(tampered[1] as string)).toMatchObject({ kind: 'error', message: /^refused: bad signature/ });
    expect(Object.values(await queueCounts(h)).every((n) => n === 0)).toBe(true);
    expect(await suite.redis.keys('clawdinator:instance-lock:*')).toEqual([]);
  });

  it('an agent cannot ask for its own host, nor past its hourly rate, nor an unlisted instance type: refused before anything is queued', async () => {
    const { h, agentEnv } = await gateway({ requestsPerHour: 1 });
    const own = await runCli(['request', 'retire', 'clawdinator-1'], { env: agentEnv });
    expect(own).toMatchObject({
      code: 1,
      stderr: 'clawdinator: rejected: not allowed: an agent cannot retire its own host\n',
    });
    const huge = await runCli(['request', 'spawn', 'clawdinator-3', '--instance-type', 'x1e.32xlarge'], {
      env: agentEnv,
    });
    expect(huge).toEqual({
      code: 2,
      stdout: '',
      stderr: `clawdinator: spawn: invalid instanceType: not an allowed instance type (${DEFAULT_INSTANCE_TYPES.join(', ')})\n`,
    });
    await suite.redis.set(keys.agentRate('clawdinator-1', Math.floor(Date.now() / 3_600_000)), '1');
    const limited = await runCli(['request', 'spawn', 'clawdinator-3'], { env: agentEnv });
    expect(limited).toMatchObject({
      code: 1,
      stderr: 'clawdinator: refused: rate limit: clawdinator-1 may ask for 1 fleet actions per hour\n',
    });
    expect(Object.values(await queueCounts(h)).every((n) => n === 0)).toBe(true);
    expect(suite.sim.cloud.calls.byOperation).toEqual({});
  });

  it('gh-refresh: a new GitHub token for this host’s agent, minted by its own worker, for its own host only', async () => {
    const { h, socket, agentEnv } = await gateway();
    const org = new SimOrg('openclaw');
    org.addRepo('openclaw');
    org.addRepo('clawdinators');
    const world = await orgWorld(org);
    suite.defer(() => world.stop());
    const dir = tempDir('clawdinator-gh-refresh-');
    const tokens = new AgentTokens({
      installation: world.installation,
      policy: {
        repositories: [],
        permissions: { contents: 'write', metadata: 'read' },
        registryRepo: 'openclaw/clawdinators',
      },
      targets: { envFile: join(dir, 'github-app.env'), ghConfigDir: dir, gid: process.getgid?.() ?? 0 },
      apiUrl: world.sim.url,
    });
    // This host's worker on its own queue, with the GitHub deps `clawdinator worker` gives it.
    const worker = startWorker(
      hostQueue('clawdinator-1'),
      {
        connection: { host: '127.0.0.1', port: suite.server.port, maxRetriesPerRequest: null },
        redis: suite.redis,
        types: new JobTypes([
          githubTokenJob({ github: { agentToken: { host: 'clawdinator-1', refreshMs: 45 * 60_000, tokens } } }),
        ]),
        publicKey: async (id) => (id === 'agent:clawdinator-1' ? h.keys.agent.publicKey : null),
        policy: { policy: {}, redis: suite.redis, agentRequestsPerHour: 3 },
        log: createLogger('silent'),
        stepSigner: testStepSigner,
      },
      lifecycleSettings,
    );
    suite.defer(() => worker.close());

    const r = await runCli(['request', 'gh-refresh'], { env: agentEnv });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^queued github-token-agent-[A-Za-z0-9_-]+$/);
    expect(lines.at(-1)).toMatch(/^token minted for 1 repositories, expires /);
    const minted = world.sim.mints.filter((m) => m.body.repositories !== undefined);
    expect(minted).toHaveLength(1);
    const token = minted[0]?.token as string;
    expect(readFileSync(join(dir, 'github-app.env'), 'utf8')).toContain(`GITHUB_TOKEN=${token}\n`);
    expect(r.stdout).not.toContain(token);
    // Signed as the agent, run on this host's queue, counted in its hourly rate.
    const own = new Queue(hostQueue('clawdinator-1'), {
      connection: { host: '127.0.0.1', port: suite.server.port },
    });
    suite.defer(() => own.close());
    const job = await own.getJob((lines[0] as string).slice('queued '.length));
    expect(job?.data.signed.principal).toEqual({ kind: 'agent', host: 'clawdinator-1' });
    expect(await suite.redis.get(keys.agentRate('clawdinator-1', Math.floor(Date.now() / 3_600_000)))).toBe('1');

    // Another host's token, asked by this agent: refused at the socket, nothing queued or minted.
    const other = signedRequest('clawdinator-1', { host: 'clawdinator-2' }, 'github-token');
    const refused = await raw(
      socket.path,
      encode({ kind: 'job', envelope: { signed: other, signature: signPayload(other, h.keys.agent.privateKey) } }),
    );
    expect(JSON.parse(refused.at(-1) as string)).toEqual({
      kind: 'error',
      message: 'rejected: not allowed: an agent asks for github-token for its own host only',
      exit: 1,
    });
    expect(world.sim.mints.filter((m) => m.body.repositories !== undefined)).toHaveLength(1);
    // A name is refused before connecting: the refresh is for this host's agent only.
    expect(await runCli(['request', 'gh-refresh', 'clawdinator-2'], { env: agentEnv })).toMatchObject({
      code: 2,
      stderr: 'clawdinator: gh-refresh takes no name: it is for this host’s agent\n',
    });
  });

  it('a malformed, oversized or silent request is refused with one line; the gateway keeps serving', async () => {
    const { socket, agentEnv } = await gateway({ requestTimeoutMs: 300 });
    const hello = JSON.parse((await raw(socket.path, 'not json\n'))[0] as string);
    expect(hello).toEqual({
      kind: 'hello',
      protocol: 1,
      host: 'clawdinator-1',
      accepts: ['job'],
      jobs: { spawn: 1, retire: 1, replace: 1, 'github-token': 1 },
    });
    const answers = async (data: string | Buffer) => (await raw(socket.path, data)).slice(1).map((l) => JSON.parse(l));
    expect(await answers('not json\n')).toEqual([
      { kind: 'error', message: 'malformed request: not a JSON line', exit: 2 },
    ]);
    expect(await answers('{"kind":"shell","command":"id"}\n')).toEqual([
      { kind: 'error', message: expect.stringMatching(/^malformed request: kind: /), exit: 2 },
    ]);
    expect(await answers(Buffer.alloc(40_000, 'a'))).toEqual([
      { kind: 'error', message: 'malformed request: a line longer than 16384 bytes', exit: 2 },
    ]);
    // Connected, greeted, and then nothing (a partial line without its newline).
    expect(await answers('{"kind":"job"')).toEqual([{ kind: 'error', message: 'no request within 0.3 s', exit: 1 }]);
    // Still serving.
    const r = await runCli(['request', 'spawn', 'clawdinator-3', '--detach'], { env: agentEnv });
    expect(r.code).toBe(0);
  });

  it('the gateway down: one clear line, exit 1 (no socket, or a socket nobody listens on)', async () => {
    const dir = socketDir();
    const path = join(dir, 'request.sock');
    const env = {
      CLAWDINATOR_JOB_SIGNING_KEY_FILE: keyFile(keyPair().privateKey),
      CLAWDINATOR_JOB_KEY_ID: 'agent:clawdinator-1',
      CLAWDINATOR_REQUEST_SOCKET: path,
    };
    const absent = await runCli(['request', 'spawn', 'clawdinator-3'], { env });
    expect(absent).toEqual({
      code: 1,
      stdout: '',
      stderr: `clawdinator: the ops gateway on this host is not running (socket ${path})\n`,
    });
    // A gateway that died: its socket file is left, nobody listens.
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [
        '-e',
        `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
      ]);
      child.on('exit', () => resolve());
      child.on('error', reject);
    });
    expect(statSync(path).isSocket()).toBe(true);
    const stale = await runCli(['request', 'spawn', 'clawdinator-3'], { env });
    expect(stale).toEqual(absent);
    // A gateway starting again takes the stale socket's place.
    const h = suite.harness();
    const socket = await startRequestSocket({
      path,
      host: 'clawdinator-1',
      agentKey: h.keys.agent.publicKey,
      enqueuer: h.enqueuer('gateway'),
      types: h.types,
      redis: suite.redis,
      connection: { host: '127.0.0.1', port: suite.server.port },
      maxAgeSeconds: 300,
      agentRequestsPerHour: 3,
      log: createLogger('silent'),
    });
    await socket.close();
    expect(existsSync(path)).toBe(false);
  });

  it('the socket is 0660 in its directory; a directory others could enter or the agent could write is refused', async () => {
    const { h, socket, dir } = await gateway();
    expect(statSync(socket.path).mode & 0o7777).toBe(0o660);
    expect(statSync(dir).mode & 0o7777).toBe(0o2750);
    const start = (path: string) =>
      startRequestSocket({
        path,
        host: 'clawdinator-1',
        agentKey: h.keys.agent.publicKey,
        enqueuer: h.enqueuer('gateway'),
        types: h.types,
        redis: suite.redis,
        connection: { host: '127.0.0.1', port: suite.server.port },
        maxAgeSeconds: 300,
        agentRequestsPerHour: 3,
        log: createLogger('silent'),
      });
    const open = socketDir(0o755);
    await expect(start(join(open, 'request.sock'))).rejects.toThrow(
      new ConfigError(
        `config: the request socket's directory ${open} has mode 755: no write for its group, nothing for others (2750)`,
      ),
    );
    const groupWritable = socketDir(0o2770);
    await expect(start(join(groupWritable, 'request.sock'))).rejects.toThrow(/has mode 2770: no write for its group/);
    const foreign = socketDir();
    chownSync(foreign, 4242, 4242);
    await expect(start(join(foreign, 'request.sock'))).rejects.toThrow(/must belong to this user/);
    for (const d of [open, groupWritable, foreign]) expect(existsSync(join(d, 'request.sock'))).toBe(false);
  });

  it('an agent that disconnects stops the following only: the job runs on to its end', async () => {
    const { h, socket } = await gateway();
    const request = signedRequest('clawdinator-1', { name: 'clawdinator-3' });
    const envelope = { signed: request, signature: signPayload(request, h.keys.agent.privateKey) };
    const lines = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const splitter = new LineSplitter(1 << 20);
      const client = connect(socket.path);
      client.on('data', (chunk: Buffer) => {
        got.push(...(splitter.push(chunk) as string[]));
        if (got.length === 1) client.write(encode({ kind: 'job', envelope }));
        if (got.some((l) => l.includes('"queued"'))) client.destroy();
      });
      client.on('error', reject);
      client.on('close', () => resolve(got));
    });
    expect(JSON.parse(lines[1] as string)).toEqual({ kind: 'queued', jobId: request.jobId });
    const job = await h.finished(request.jobId);
    expect(job.returnvalue.summary).toMatch(/^clawdinator-3 online/);
    expect(await h.queue.getJobState(request.jobId)).toBe('completed');
    expect((await h.queue.getJobs(['completed'])).map((j) => j.id)).toEqual([request.jobId]);
  });

  it('refuses bad arguments and a non-agent key with one line, exit 2, before connecting', async () => {
    const agent = {
      CLAWDINATOR_JOB_SIGNING_KEY_FILE: keyFile(keyPair().privateKey),
      CLAWDINATOR_JOB_KEY_ID: 'agent:clawdinator-2',
    };
    const badAction = await runCli(['request', 'destroy-everything', 'clawdinator-3'], { env: agent });
    expect(badAction).toMatchObject({
      code: 2,
      stderr: 'clawdinator: unknown action "destroy-everything": spawn, replace, retire, gh-refresh\n',
    });
    for (const name of ['evil;rm', 'clawdinator-3-', `clawdinator-${'a'.repeat(29)}`]) {
      const badName = await runCli(['request', 'spawn', name], { env: agent });
      expect(badName).toMatchObject({
        code: 2,
        stderr: `clawdinator: "${name}" is not a fleet name (clawdinator-<a-z0-9>, words joined by single "-", at most 40 characters)\n`,
      });
    }
    const typeOnRetire = await runCli(['request', 'retire', 'clawdinator-3', '--instance-type', 't3.large'], {
      env: agent,
    });
    expect(typeOnRetire).toMatchObject({ code: 2, stderr: 'clawdinator: --instance-type is for spawn only\n' });
    const operator = await runCli(['request', 'spawn', 'clawdinator-3'], {
      env: { ...agent, CLAWDINATOR_JOB_KEY_ID: 'operator:alice' },
    });
    expect(operator.code).toBe(2);
    expect(operator.stderr).toContain('must be agent:<host> for a request');
  });

  it('`clawdinator gateway` serves the socket when it has this host’s agent’s public key, and removes it on SIGTERM', async () => {
    const h = suite.harness();
    const standIn = new DiscordStandIn({ appId: '500000000000000001', token: 'ops-bot-token-3b1f' });
    await standIn.start();
    suite.defer(() => standIn.stop());
    const dir = socketDir();
    const files = tempDir('clawdinator-ops-');
    const write = (name: string, content: string) => {
      writeFileSync(join(files, name), content, { mode: 0o600 });
      return join(files, name);
    };
    const path = join(dir, 'request.sock');
    const gatewayKey = keyPair().privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const agentPublic = h.keys.agent.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const child = spawn(process.execPath, [CLI, 'gateway'], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        CLAWDINATOR_DISCORD_TOKEN_FILE: write('ops-bot-token', 'ops-bot-token-3b1f'),
        CLAWDINATOR_DISCORD_API_URL: standIn.apiUrl,
        CLAWDINATOR_REDIS_URL: suite.server.url,
        CLAWDINATOR_JOB_SIGNING_KEY_FILE: write('gateway.pem', gatewayKey),
        CLAWDINATOR_JOB_KEY_ID: 'gateway',
        // A gateway joined to Redis verifies events and heartbeats with the workers' key.
        CLAWDINATOR_JOB_PUBLIC_KEYS: JSON.stringify({
          schedule: testWorkersKey.export({ type: 'spki', format: 'pem' }).toString(),
        }),
        CLAWDINATOR_FLEET_REGISTRY: suite.sim.registry.path,
        CLAWDINATOR_MEMORY_DIR: join(suite.sim.dir, 'memory'),
        CLAWDINATOR_HOST_NAME: 'clawdinator-1',
        CLAWDINATOR_AGENT_PUBLIC_KEY_FILE: write('agent-public-key.pem', agentPublic),
        CLAWDINATOR_REQUEST_SOCKET: path,
        CLAWDINATOR_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    suite.defer(() => {
      child.kill('SIGKILL');
    });
    for (const deadline = Date.now() + 30_000; !existsSync(path); ) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gateway did not serve: ${output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(statSync(path).mode & 0o777).toBe(0o660);
    const env = {
      CLAWDINATOR_JOB_SIGNING_KEY_FILE: keyFile(h.keys.agent.privateKey),
      CLAWDINATOR_JOB_KEY_ID: 'agent:clawdinator-1',
      CLAWDINATOR_REQUEST_SOCKET: path,
    };
    const r = await runCli(['request', 'spawn', 'clawdinator-3'], { env });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/\nclawdinator-3 online: i-[0-9a-f]+, /);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(existsSync(path)).toBe(false);
    expect(output).not.toContain('ops-bot-token-3b1f');
  });
});
