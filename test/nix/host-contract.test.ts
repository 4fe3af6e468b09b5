// The host contract: a new host's boot sequence run as nix/units.json describes it — the
// bootstrap, the memory tunnel and mount (skipped as systemd would: the bundle names no EFS),
// memory init, the gateway, the worker and the model proxy — with exactly those commands and
// environments, until a spawn reaches "online" through the heartbeat of the worker started as
// the module starts it, its instance id learned from IMDSv2. Then the agent runtime's unit as
// nix/agent.json describes it: its start-up step (seed-workspace) as the agent, its environment
// free of control-plane secrets, and a model request made as the agent through the proxy, which
// adds the key the agent cannot read and whose usage the worker's heartbeat then reports.
//
// Real parts: redis-server with AUTH (the password the bootstrap installs), s3rver for the
// bundle, a Secrets Manager stand-in answering from the simulated cloud's secrets, the loopback
// IMDSv2 stand-in, the Discord stand-in the gateway logs in to, the production CLI (dist/) for
// every unit, the production worker and spawn job (in this process, as the peer clawdinator-1
// whose worker runs the spawn) on the simulated cloud and deployer.
//
// Substitutions, and only these: every absolute host path in the description is re-rooted
// under a temp dir (test/support/units.ts reroot); users are their fixed ids from the
// description, run with setpriv (the tests run as root); the bootstrap's switch hand-off is a
// recorder (the module's is systemd-run nixos-rebuild); the unit's moduleEnvironment values
// are the test's (Redis URL, CA file, a terraform binary); the AWS endpoints point at the
// stand-ins. Then, as an unprivileged uid, the agent's readable files are searched for every
// control-plane secret.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bot/sandbox/redis.js';
import { createAwsCloud } from '../../jobs/cloud/aws.js';
import { createSimCloud, instantSimTimings, type SimCloud, type SimHost } from '../../jobs/cloud/sim.js';
import type { Cloud } from '../../jobs/cloud/types.js';
import { SimDeployer } from '../../jobs/deploy/sim.js';
import { startHeartbeat } from '../../jobs/engine/heartbeat.js';
import { FLEET_QUEUE, keys } from '../../jobs/engine/keys.js';
import { Enqueuer, JobTypes } from '../../jobs/engine/queues.js';
import { startWorker } from '../../jobs/engine/worker.js';
import { FileRegistryStore } from '../../jobs/registry/file.js';
import { generateSigningKeyPair } from '../../jobs/signing.js';
import { jobTypes } from '../../jobs/types/index.js';
import type { FleetDeps } from '../../jobs/types/spawn.js';
import { utcDay } from '../../jobs/usage.js';
import { createLogger } from '../../lib/log.js';
import { projectPath } from '../../lib/paths.js';
import { MemoryStore } from '../../memory/store.js';
import { jsonReply, type Stub, startStub } from '../jobs/cloud/stub.js';
import { CLI, tempDir } from '../support/cli.js';
import { DiscordStandIn } from '../support/discord-standin.js';
import { SIM_AMI, SIM_INFRA_SETTINGS, simMember } from '../support/fleet.js';
import { type ImdsStandin, startImds } from '../support/imds.js';
import { fastSettings } from '../support/jobs.js';
import { type ModelStandin, startModelStandin } from '../support/model-standin.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { s3rverClient, startS3rver, type TestS3 } from '../support/s3.js';
import { type HostContract, idOf, readContract, reroot, type UnitDescription } from '../support/units.js';

const AS_ROOT = process.getuid?.() === 0;
const execFileAsync = promisify(execFile);
const BUCKET = 'clawdinator-contract-bucket';
const NEW = 'clawdinator-2';
const PEER = 'clawdinator-1';
const REV = 'c0ffee'.padEnd(40, '0');
const FLAKE = `github:openclaw/clawdinators/${REV}`;

/** Control-plane secrets: none may be readable by the agent, none may show in any output. */
const workers = generateSigningKeyPair();
const gateway = generateSigningKeyPair();
const operator = generateSigningKeyPair();
const CONTROL: Record<string, string> = {
  'clawdinator/fleet/redis-auth': `planted-redis-auth-${randomBytes(8).toString('hex')}`,
  'clawdinator/fleet/ops-bot-token': `planted.ops-bot-token.${randomBytes(8).toString('hex')}`,
  'clawdinator/fleet/gateway-signing-key': gateway.privateKeyPem,
  'clawdinator/fleet/workers-signing-key': workers.privateKeyPem,
  'clawdinator/fleet/github-app-key': `-----BEGIN RSA PRIVATE KEY-----\nplanted-github-${randomBytes(8).toString('hex')}\n-----END RSA PRIVATE KEY-----`,
  'clawdinator/fleet/anthropic-api-key': `sk-ant-planted-${randomBytes(8).toString('hex')}`,
  'clawdinator/fleet/openai-api-key': `sk-planted-openai-${randomBytes(8).toString('hex')}`,
};
const AGENT_TOKEN = `planted-agent-discord-${randomBytes(8).toString('hex')}`;
/** What "the value of a secret" looks like in a file: the PEM body line, the token itself. */
const needle = (value: string) => (value.includes('-----') ? (value.split('\n')[1] as string) : value);

const contract: HostContract = readContract();
/** nix/agent.json: the agent runtime's unit (its command is openclaw's, which this test does not run). */
const agentUnit = JSON.parse(readFileSync(projectPath('nix', 'agent.json'), 'utf8')).runtime as {
  unit: string;
  user: 'agent';
  group: 'agent';
  supplementaryGroups: ('memory' | 'agent')[];
  command: string[];
  execStartPre: string[];
  stateDir: string;
  environment: Record<string, string>;
  moduleEnvironment: string[];
  environmentFiles: string[];
  after: string[];
  conditionPathExists: string;
};
let models: ModelStandin;
let dir: string;
let root: string;
let redis: TestRedis;
let s3: TestS3;
let secretsStub: Stub;
let imds: ImdsStandin;
let discord: DiscordStandIn;
let sim: SimCloud;
let identified = 0;
const children: { name: string; child: ChildProcess; exited: Promise<number | null>; output: () => string }[] = [];
const cleanups: (() => Promise<unknown> | unknown)[] = [];

describe.skipIf(!AS_ROOT)('host contract (nix/units.json run as the module runs it)', () => {
  beforeAll(async () => {
    dir = tempDir('clawdinator-contract-');
    chmodSync(dir, 0o755);
    root = join(dir, 'host');
    layOut(contract, root);
    redis = await startRedis({ password: CONTROL['clawdinator/fleet/redis-auth'] });
    s3 = await startS3rver(dir, [BUCKET]);
    sim = createSimCloud({
      timings: instantSimTimings,
      secrets: { ...CONTROL, [`clawdinator/discord-token/${NEW}`]: AGENT_TOKEN },
      amis: [{ name: 'clawdinator-nixos', imageId: SIM_AMI }],
      fleet: [{ name: PEER }],
      buckets: [BUCKET],
    });
    // Secrets Manager as the bootstrap's SDK client speaks it, from the simulated cloud's secrets
    // (the spawn job writes the new host's key there).
    secretsStub = await startStub(async (req) => {
      const ids = (JSON.parse(req.body) as { SecretIdList: string[] }).SecretIdList;
      const values = await sim.getSecrets(ids);
      return jsonReply({
        SecretValues: ids
          .filter((id) => values.has(id))
          .map((id) => ({
            Name: id,
            ARN: `arn:aws:secretsmanager:eu-central-1:1:secret:${id}`,
            SecretString: values.get(id),
          })),
        Errors: ids
          .filter((id) => !values.has(id))
          .map((id) => ({ SecretId: id, ErrorCode: 'ResourceNotFoundException', Message: 'not found' })),
      });
    });
    imds = await startImds({ region: 'eu-central-1', instanceId: null });
    discord = new DiscordStandIn({ token: CONTROL['clawdinator/fleet/ops-bot-token'] });
    discord.events.on('identify', () => identified++);
    await discord.start();
    models = await startModelStandin({ input: 120, output: 30, cacheRead: 0, cacheWrite: 0 });
  }, 60_000);

  afterAll(async () => {
    for (const c of children) c.child.kill('SIGTERM');
    await Promise.all(children.map((c) => c.exited));
    for (const cleanup of cleanups.reverse()) await cleanup();
    // No unit printed a secret value.
    for (const c of children) {
      for (const value of [...Object.values(CONTROL), AGENT_TOKEN]) expect(c.output()).not.toContain(needle(value));
    }
    await discord?.stop();
    await models?.close();
    await imds?.close();
    await secretsStub?.close();
    await s3?.close();
    sim?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('bootstrap, memory init, gateway, worker and model proxy as described; the spawn goes online through the new worker’s heartbeat; the agent runtime’s start-up step runs as described and its model request gets a key it cannot read, reported in the heartbeat; the agent can read no control-plane secret', {
    timeout: 240_000,
  }, async () => {
    // ── the fleet that spawns: the peer's worker (this process) on the simulated cloud ──────
    const registryDir = join(dir, 'fleet');
    mkdirSync(registryDir, { mode: 0o755 });
    const registryFile = join(registryDir, 'fleet.json');
    writeFileSync(registryFile, JSON.stringify({ [PEER]: simMember(PEER) }), { mode: 0o644 });
    const registry = new FileRegistryStore(registryFile);
    const connection = {
      host: '127.0.0.1',
      port: redis.port,
      password: CONTROL['clawdinator/fleet/redis-auth'],
      maxRetriesPerRequest: null,
    };
    const client = redis.client();
    const aws = createAwsCloud({ clients: { s3: s3rverClient(s3.url) } });
    const fleet: FleetDeps = {
      // The bundle goes to s3rver, where the new host's bootstrap reads it; the rest is the sim.
      cloud: withS3(sim, aws),
      deployer: new SimDeployer({
        cloud: sim,
        registry,
        settings: SIM_INFRA_SETTINGS,
        outdir: join(dir, 'cdktf.out'),
        bucket: BUCKET,
      }),
      registryStore: registry,
      bucket: BUCKET,
      region: 'eu-central-1',
      efsId: null,
      redisUrl: redis.url,
      flake: FLAKE,
      fleetMaxSize: 5,
      spawnsPerHour: 3,
      defaultInstanceType: 't3.large',
      waits: { pollMs: 200, heartbeatTimeoutMs: 180_000 },
    };
    const memory = new MemoryStore({ root: join(dir, 'peer-memory'), maxBytes: 1 << 20, waitSeconds: 5 });
    mkdirSync(join(dir, 'peer-memory'));
    const types = new JobTypes(
      jobTypes({ redis: client, registry: async () => (await registry.read()).registry, memory, fleet }),
    );
    const publicKeys: Record<string, string> = {
      gateway: gateway.publicKeyPem,
      schedule: workers.publicKeyPem,
      'operator:alice': operator.publicKeyPem,
    };
    const peerWorker = startWorker(
      FLEET_QUEUE,
      {
        connection,
        redis: client,
        types,
        publicKey: async (id) => (publicKeys[id] ? createPublicKey(publicKeys[id] as string) : null),
        policy: { policy: {}, redis: client, agentRequestsPerHour: 3 },
        log: createLogger('silent'),
        host: { name: PEER, peers: async () => Object.keys((await registry.read()).registry) },
        stepSigner: { keyId: 'schedule', key: createPrivateKey(workers.privateKeyPem) },
      },
      { ...fastSettings, lockDurationMs: 10_000, stalledIntervalMs: 5000 },
    );
    cleanups.push(() => peerWorker.close());
    const peerBeat = startHeartbeat({
      redis: client,
      signer: { keyId: 'schedule', key: createPrivateKey(workers.privateKeyPem) },
      host: PEER,
      instanceId: (await sim.listFleetInstances())[0]?.instanceId as string,
      version: 't',
      revision: REV,
      ttlSeconds: 30,
      activeJobs: () => peerWorker.active,
      onError: () => {},
    });
    cleanups.push(() => peerBeat.stop());

    // The new host boots when the simulated instance does: IMDS then knows its id and user data.
    const booted = new Promise<SimHost>((resolve) => {
      sim.onHostOnline((host) => {
        if (host.name === NEW) resolve(host);
      });
    });

    const enqueuer = new Enqueuer(connection, client, types, {
      keyId: 'operator:alice',
      key: createPrivateKey(operator.privateKeyPem),
    });
    cleanups.push(() => enqueuer.close());
    const { jobId } = await enqueuer.enqueue({
      type: 'spawn',
      data: { name: NEW },
      principal: { kind: 'cli', operator: 'alice' },
      requestId: 'contract-spawn',
    });
    const queue = new Queue(FLEET_QUEUE, { connection });
    cleanups.push(() => queue.close());

    const host = await booted;
    imds.instanceId = host.instanceId;
    imds.userData = host.userData;

    // ── the boot sequence, unit by unit, as described ────────────────────────────────────────
    const settings: Record<string, string> = {
      CLAWDINATOR_JOB_PUBLIC_KEYS: JSON.stringify(publicKeys),
      CLAWDINATOR_FLEET_REGISTRY: registryFile,
      CLAWDINATOR_DISCORD_API_URL: discord.apiUrl,
      CLAWDINATOR_HEARTBEAT_TTL: '6',
      CLAWDINATOR_LOG_LEVEL: 'info',
      // The model proxy forwards to the loopback provider stand-in, on a port of its own.
      CLAWDINATOR_MODEL_UPSTREAMS: JSON.stringify({ anthropic: models.url, openai: models.url }),
      CLAWDINATOR_MODEL_PROXY_PORT: String(await freePort()),
    };
    const moduleEnv: Record<string, string> = {
      CLAWDINATOR_HOST_NAME: NEW,
      CLAWDINATOR_REDIS_URL: redis.url,
      CLAWDINATOR_TERRAFORM_BIN: 'terraform',
      CLAWDINATOR_TERRAFORM_CONFIG: join(root, 'nix-store', 'clawdinator-terraform.rc'),
      CLAWDINATOR_EFS_CA_FILE: '/etc/ssl/certs/ca-certificates.crt',
      CLAWDINATOR_BOOTSTRAP_SWITCH: JSON.stringify(['sh', '-c', `echo '{flake}#{host}' >> ${join(dir, 'switched')}`]),
    };
    mkdirSync(join(root, 'nix-store'), { recursive: true, mode: 0o755 });
    writeFileSync(moduleEnv.CLAWDINATOR_TERRAFORM_CONFIG as string, 'disable_checkpoint = true\n', { mode: 0o444 });
    // What the module writes at build time: the worker re-reads it at every heartbeat.
    const buildInfo = reroot(root, contract.paths.buildInfo as string);
    mkdirSync(join(buildInfo, '..'), { recursive: true, mode: 0o755 });
    writeFileSync(buildInfo, JSON.stringify({ revision: REV, locked: false, version: '0.1.0' }), { mode: 0o444 });
    // The SDK talks to the stand-ins; IMDS through the SDK's own standard variable.
    const awsEnv = {
      AWS_ENDPOINT_URL_S3: s3.url,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsStub.url,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    const envOf = (unit: UnitDescription): Record<string, string> => {
      const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...awsEnv };
      for (const [k, v] of Object.entries(unit.environment)) env[k] = reroot(root, v);
      if (unit.settings) Object.assign(env, settings);
      for (const name of unit.moduleEnvironment) {
        expect(moduleEnv[name], `${name} (moduleEnvironment)`).toBeDefined();
        env[name] = moduleEnv[name] as string;
      }
      return env;
    };

    const ran: string[] = [];
    for (const name of contract.order) {
      const unit = contract.units[name] as UnitDescription;
      if (unit.conditionPathExists !== undefined && !exists(reroot(root, unit.conditionPathExists))) {
        ran.push(`${name}: skipped (ConditionPathExists)`);
        continue;
      }
      if (unit.command[0] !== 'clawdinator')
        throw new Error(`${name}: runs ${unit.command[0]}, which this test cannot`);
      const started = startUnit(contract, name, unit, envOf(unit));
      if (unit.type === 'oneshot') {
        const code = await started.exited;
        expect(code, `${name} exit: ${started.output()}`).toBe(0);
        ran.push(`${name}: exited 0`);
      } else {
        ran.push(`${name}: running`);
      }
    }
    // The memory mount follows its tunnel: no config, no mount (as systemd would skip it).
    expect(exists(reroot(root, contract.memoryMount.conditionPathExists))).toBe(false);
    expect(ran).toEqual([
      'clawdinator-bootstrap: exited 0',
      'clawdinator-efs-tunnel: skipped (ConditionPathExists)',
      'clawdinator-memory-init: exited 0',
      // This bundle carries no repo seeds: nothing staged for the agent to seed from.
      'clawdinator-seed-repos: skipped (ConditionPathExists)',
      'clawdinator-gateway: running',
      'clawdinator-worker: running',
      'clawdinator-model-proxy: running',
    ]);

    // ── the spawn reaches "online" through this worker's heartbeat ───────────────────────────
    const result = await until(async () => {
      const job = await Job.fromId(queue, jobId);
      const state = await job?.getState();
      if (state === 'failed') throw new Error(`spawn failed: ${job?.failedReason}`);
      return state === 'completed' ? (job?.returnvalue as { summary: string; instanceId: string }) : undefined;
    }, 180_000);
    expect(result.instanceId).toBe(host.instanceId);
    expect(result.summary).toMatch(new RegExp(`^${NEW} online: ${host.instanceId}`));
    // The record the worker signed (heartbeat.ts): what every reader verifies.
    const beat = JSON.parse((await client.get(keys.heartbeat(NEW))) as string).heartbeat;
    expect(beat).toMatchObject({
      host: NEW,
      instanceId: host.instanceId,
      revision: REV,
      locked: false,
      memoryShared: false,
    });
    // The gateway logged in with the ops bot token the bootstrap installed (the stand-in takes no other).
    await until(async () => (identified > 0 ? true : undefined), 30_000);
    // Every long-running unit is still up: none exited on a missing or wrong setting.
    for (const c of children.filter((x) => contract.units[x.name]?.type === 'simple')) {
      expect(c.child.exitCode, `${c.name}: ${c.output()}`).toBeNull();
    }
    // The first-boot switch went to the bundle's pinned flake, never into the agent's home.
    expect(readFileSync(join(dir, 'switched'), 'utf8').trim()).toBe(`${FLAKE}#${NEW}`);

    // ── the agent runtime's unit (nix/agent.json) ────────────────────────────────────────────
    // Ordered after the bootstrap, the memory init and the model proxy, all of which ran above.
    for (const dep of agentUnit.after.filter((d) => d.startsWith('clawdinator-'))) {
      expect(contract.order, `${agentUnit.unit} after ${dep}`).toContain(dep.replace(/\.service$/, ''));
    }
    expect(exists(reroot(root, agentUnit.conditionPathExists)), 'the agent’s Discord token').toBe(true);
    // What the module puts in /etc: the workspace templates (the package's) and the tool list.
    const templates = reroot(root, agentUnit.environment.CLAWDINATOR_WORKSPACE_TEMPLATES as string);
    mkdirSync(join(templates, '..'), { recursive: true, mode: 0o755 });
    cpSync(projectPath('workspace'), templates, { recursive: true });
    writeFileSync(
      reroot(root, agentUnit.environment.CLAWDINATOR_TOOLS_FILE as string),
      '## Installed toolchain\n- **gh** — GitHub CLI\n',
    );
    // The runtime's state dir, as nix-openclaw's module makes it (tmpfiles, the agent's).
    const stateDir = reroot(root, agentUnit.stateDir);
    mkdirSync(stateDir, { recursive: true, mode: 0o750 });
    chownSync(stateDir, contract.ids.agent.uid, contract.ids.agent.gid);
    const proxyUrl = `http://127.0.0.1:${settings.CLAWDINATOR_MODEL_PROXY_PORT}`;
    const agentModuleEnv: Record<string, string> = {
      CLAWDINATOR_HOST_NAME: NEW,
      CLAWDINATOR_JOB_KEY_ID: `agent:${NEW}`,
      ANTHROPIC_BASE_URL: `${proxyUrl}/anthropic`,
      OPENAI_BASE_URL: `${proxyUrl}/openai/v1`,
    };
    const runtimeEnv: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    for (const [k, v] of Object.entries(agentUnit.environment)) runtimeEnv[k] = reroot(root, v);
    for (const name of agentUnit.moduleEnvironment) {
      expect(agentModuleEnv[name], `${name} (moduleEnvironment)`).toBeDefined();
      runtimeEnv[name] = agentModuleEnv[name] as string;
    }
    // No control-plane secret in the runtime's environment: no ops secret file named, no value.
    for (const [k, v] of Object.entries({ ...agentUnit.environment, ...agentModuleEnv })) {
      expect(v.startsWith(`${contract.paths.opsSecrets}/`), k).toBe(false);
      for (const secret of Object.values(CONTROL)) expect(v, k).not.toContain(needle(secret));
    }
    for (const f of agentUnit.environmentFiles) {
      expect(f.replace(/^-/, '').startsWith(contract.paths.opsSecrets as string)).toBe(false);
    }
    // Its start-up step, as the agent, as the unit runs it before openclaw.
    const preStart: UnitDescription = {
      description: `${agentUnit.unit} ExecStartPre`,
      user: agentUnit.user,
      group: agentUnit.group,
      supplementaryGroups: agentUnit.supplementaryGroups,
      type: 'oneshot',
      command: agentUnit.execStartPre,
      environment: agentUnit.environment,
      moduleEnvironment: agentUnit.moduleEnvironment,
      settings: false,
      secrets: [],
      after: agentUnit.after,
      wants: [],
      wantsMountsFor: [],
    };
    const pre = startUnit(contract, preStart.description, preStart, runtimeEnv);
    expect(await pre.exited, pre.output()).toBe(0);
    const workspace = reroot(root, agentUnit.environment.CLAWDINATOR_WORKSPACE_DIR as string);
    expect(readFileSync(join(workspace, 'skills', 'fleet', 'SKILL.md'), 'utf8')).toContain('clawdinator request');
    expect(readFileSync(join(workspace, 'TOOLS.md'), 'utf8')).toContain('- **gh** — GitHub CLI');
    expect(exists(join(stateDir, 'cron-jobs.json'))).toBe(true);

    // A model request as the agent (its uid, the placeholder key from its environment): the
    // proxy adds the key only ops can read; the worker's heartbeat then reports the usage.
    // (Not execFileSync: the provider stand-in answers from this process.)
    const { stdout: asked } = await execFileAsync(
      'setpriv',
      [
        `--reuid=${contract.ids.agent.uid}`,
        `--regid=${contract.ids.agent.gid}`,
        '--clear-groups',
        process.execPath,
        '-e',
        `fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', { method: 'POST', headers: { 'x-api-key': process.env.ANTHROPIC_API_KEY, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify({ model: 'claude-opus-4-6', max_tokens: 10, messages: [] }) }).then(async (r) => process.stdout.write(r.status + ' ' + await r.text()))`,
      ],
      { encoding: 'utf8', env: runtimeEnv },
    );
    expect(asked).toMatch(/^200 /);
    expect(models.requests.at(-1)?.headers['x-api-key']).toBe(CONTROL['clawdinator/fleet/anthropic-api-key']);
    expect(asked).not.toContain(CONTROL['clawdinator/fleet/anthropic-api-key'] as string);
    const reported = await until(async () => {
      const hb = JSON.parse((await client.get(keys.heartbeat(NEW))) ?? '{}').heartbeat;
      return hb?.usage?.models?.['claude-opus-4-6'] ? hb.usage : undefined;
    }, 30_000);
    expect(reported).toEqual({
      day: utcDay(Date.now()),
      models: { 'claude-opus-4-6': { input: 120, output: 30, cacheRead: 0, cacheWrite: 0, requests: 1 } },
    });

    // ── what the agent can read, as the agent ────────────────────────────────────────────────
    const agentReads = readableAs(root, contract.ids.agent.uid, contract.ids.agent.gid, [contract.ids.memory.gid]);
    // The walk reads what the agent should (its own token): it can find secrets when they are there.
    expect(agentReads).toContain(AGENT_TOKEN);
    for (const [name, value] of Object.entries(CONTROL)) expect(agentReads, name).not.toContain(needle(value));
    // And root, walking the same tree, does find them: the check is not blind.
    const rootReads = readableAs(root, 0, 0, []);
    for (const value of Object.values(CONTROL).slice(0, 4)) expect(rootReads).toContain(needle(value));
  });
});

// ── helpers ──────────────────────────────────────────────────────────────────────────────────

/** The directories the module creates (tmpfiles), re-rooted, with their owners and modes. */
function layOut(c: HostContract, at: string): void {
  mkdirSync(at, { recursive: true, mode: 0o755 });
  for (const d of c.directories) {
    const path = reroot(at, d.path);
    mkdirSync(path, { recursive: true, mode: 0o755 });
    chownSync(path, idOf(c, d.user, 'uid'), idOf(c, d.group, 'gid'));
    chmodSync(path, Number.parseInt(d.mode, 8));
  }
}

/** Starts a unit's command as its user (setpriv), its output kept for the checks. */
function startUnit(c: HostContract, name: string, unit: UnitDescription, env: Record<string, string>) {
  const argv = [process.execPath, CLI, ...unit.command.slice(1)];
  const asUser =
    unit.user === 'root'
      ? argv
      : [
          'setpriv',
          `--reuid=${idOf(c, unit.user as 'ops', 'uid')}`,
          `--regid=${idOf(c, unit.group as 'ops', 'gid')}`,
          (unit.supplementaryGroups ?? []).length > 0
            ? `--groups=${(unit.supplementaryGroups ?? []).map((g) => idOf(c, g, 'gid')).join(',')}`
            : '--clear-groups',
          ...argv,
        ];
  const child = spawn(asUser[0] as string, asUser.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => chunks.push(d));
  child.stderr?.on('data', (d: Buffer) => chunks.push(d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const entry = { name, child, exited, output: () => Buffer.concat(chunks).toString() };
  children.push(entry);
  return entry;
}

/** Everything `uid` can read under `dir`, concatenated (a node walk run as that uid). */
function readableAs(dir: string, uid: number, gid: number, groups: number[]): string {
  const walk = `
    const fs = require('node:fs'); const path = require('node:path'); const out = [];
    const visit = (p) => {
      let st; try { st = fs.lstatSync(p); } catch { return; }
      if (st.isDirectory()) { let names = []; try { names = fs.readdirSync(p); } catch { return; } for (const n of names) visit(path.join(p, n)); }
      else if (st.isFile()) { try { out.push(fs.readFileSync(p, 'utf8')); } catch {} }
    };
    visit(process.argv[1]); process.stdout.write(out.join('\\n'));`;
  const ids = [
    `--reuid=${uid}`,
    `--regid=${gid}`,
    groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups',
  ];
  return execFileSync('setpriv', [...ids, process.execPath, '-e', walk, dir], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
}

function exists(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The simulated cloud with its S3 calls sent to the AWS adapter instead (s3rver). */
function withS3(base: SimCloud, s3Cloud: Cloud): Cloud {
  const s3Methods = new Set([
    'uploadFile',
    'downloadFile',
    'putJson',
    'putBytes',
    'getBytes',
    'copyObject',
    'deleteKeys',
    'getJson',
    'listKeys',
    'deletePrefix',
    'headObject',
    'createBucketIfMissing',
  ]);
  return new Proxy(base as unknown as Cloud, {
    get(target, method, receiver) {
      if (typeof method === 'string' && s3Methods.has(method)) {
        const fn = (s3Cloud as unknown as Record<string, (...a: unknown[]) => unknown>)[method] as (
          ...a: unknown[]
        ) => unknown;
        return fn.bind(s3Cloud);
      }
      const value = Reflect.get(target, method, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}
