// `clawdinator bootstrap` as the real CLI process on a host tree under a temp dir: S3 is
// s3rver (the bundle uploaded by the real bundle module), Secrets Manager a loopback stand-in
// speaking its JSON protocol, IMDS the loopback IMDSv2 stand-in (tokens required). The runs
// build on each other as a host's boots would: install, a no-op, a corrupted object refused
// with nothing installed, a changed prefix that re-initializes, a missing instance.env read
// back from the user data, IMDS refusing a token. No run prints a secret value.
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userData } from '../../infra/instance-stack.js';
import { type BundleInput, REPO_SEEDS_SOURCE_KEY, uploadBundle } from '../../jobs/bootstrap/bundle.js';
import { formatIdentity } from '../../jobs/bootstrap/identity.js';
import { createAwsCloud } from '../../jobs/cloud/aws.js';
import type { Cloud } from '../../jobs/cloud/types.js';
import { generateSigningKeyPair } from '../../jobs/signing.js';
import { projectPath } from '../../lib/paths.js';
import { jsonReply, type Stub, startStub } from '../jobs/cloud/stub.js';
import { type CliResult, runCli, tempDir } from '../support/cli.js';
import { type ImdsStandin, startImds } from '../support/imds.js';
import { s3rverClient, startS3rver, type TestS3 } from '../support/s3.js';

const BUCKET = 'fleet-bucket';
const NAME = 'clawdinator-1';
const V1 = `bootstrap/${NAME}`;
const V2 = `bootstrap/${NAME}-v2`;
/** The host's agent key: a real one, since the bootstrap derives its public half for the gateway. */
const AGENT_KEY = generateSigningKeyPair();
/** Planted secret values: none may show in any output. */
const SECRETS: Record<string, string> = {
  [`clawdinator/discord-token/${NAME}`]: 'planted-agent-discord-token-91c2',
  [`clawdinator/host/${NAME}/agent-key`]: AGENT_KEY.privateKeyPem,
  'clawdinator/fleet/redis-auth': 'planted-redis-auth-0b3f',
  'clawdinator/fleet/ops-bot-token': 'planted-ops-bot-token-77aa',
};

let dir: string;
let s3: TestS3;
let s3Url: string;
let rawS3: S3Client;
let cloud: Cloud;
let secrets: Stub;
let imds: ImdsStandin;
const outputs: CliResult[] = [];

const host = {
  state: '',
  instanceEnv: '',
  workspace: '',
  seeds: '',
  ops: '',
  agent: '',
  switched: '',
  tunnel: '',
};
/** The ids the bootstrap gives files to (nix/units.json ids): real chowns, the tests run as root. */
const OPS = { uid: 2790, gid: 2790 };
const AGENT = { uid: 2791, gid: 2791 };
const AS_ROOT = process.getuid?.() === 0;
/** The switch hand-off's flake for a bundle that pins none: the seeds' root-owned copy. */
const seedsFlake = () => `${join(host.state, 'repo-seeds', 'clawdinators')}#${NAME}`;

beforeAll(async () => {
  dir = tempDir('clawdinator-boot-');
  s3 = await startS3rver(dir, [BUCKET]);
  s3Url = s3.url;
  rawS3 = s3rverClient(s3Url);
  cloud = createAwsCloud({ clients: { s3: rawS3 } });
  secrets = await startStub((req) => {
    const ids = (JSON.parse(req.body) as { SecretIdList: string[] }).SecretIdList;
    return jsonReply({
      SecretValues: ids
        .filter((id) => SECRETS[id] !== undefined)
        .map((id) => ({ Name: id, ARN: `arn:aws:secretsmanager:us-east-1:1:secret:${id}`, SecretString: SECRETS[id] })),
      Errors: ids
        .filter((id) => SECRETS[id] === undefined)
        .map((id) => ({ SecretId: id, ErrorCode: 'ResourceNotFoundException', Message: 'not found' })),
    });
  });
  imds = await startImds({ region: 'us-east-1' });

  const root = join(dir, 'host');
  host.state = join(root, 'var/lib/clawdinator');
  host.instanceEnv = join(host.state, 'instance.env');
  host.workspace = join(root, 'var/lib/clawd/workspace');
  host.seeds = join(root, 'var/lib/clawd/repo-seeds');
  host.ops = join(root, 'run/clawdinator-ops');
  host.agent = join(root, 'run/clawdinator');
  host.switched = join(dir, 'switched');
  host.tunnel = join(host.state, 'efs-stunnel.conf');
  mkdirSync(host.state, { recursive: true });

  // Prepared repo seeds (tar + zstd, as the bootstrap extracts them) and the first bundle.
  const src = join(dir, 'seeds-src');
  mkdirSync(join(src, 'clawdinators'), { recursive: true });
  writeFileSync(join(src, 'clawdinators', 'flake.nix'), '{ }\n');
  const archive = join(dir, 'repo-seeds.tar.zst');
  execFileSync('tar', ['--zstd', '-cf', archive, '-C', src, '.']);
  await cloud.uploadFile(BUCKET, REPO_SEEDS_SOURCE_KEY, archive);
  await uploadBundle(cloud, bundleInput(V1, join(dir, 'ws-v1')));
});

afterAll(async () => {
  for (const o of outputs) {
    for (const value of Object.values(SECRETS)) {
      expect(o.stdout).not.toContain(value);
      expect(o.stderr).not.toContain(value);
    }
  }
  await imds.close();
  await secrets.close();
  await s3.close();
  rmSync(dir, { recursive: true, force: true });
});

function bundleInput(prefix: string, workspaceDir: string, extra: Record<string, string> = {}): BundleInput {
  rmSync(workspaceDir, { recursive: true, force: true });
  execFileSync('cp', ['-r', projectPath('workspace'), workspaceDir]);
  for (const [file, text] of Object.entries(extra)) writeFileSync(join(workspaceDir, file), text);
  return {
    name: NAME,
    host: NAME,
    bootstrapPrefix: prefix,
    bucket: BUCKET,
    region: null,
    efsId: null,
    redisUrl: 'rediss://redis.example:6379',
    secrets: { discordToken: `clawdinator/discord-token/${NAME}`, agentKey: `clawdinator/host/${NAME}/agent-key` },
    workspaceDir,
  };
}

function writeInstanceEnv(prefix: string): void {
  writeFileSync(host.instanceEnv, formatIdentity({ name: NAME, host: NAME, bucket: BUCKET, prefix }));
}

async function boot(): Promise<CliResult> {
  const result = await runCli(['bootstrap'], {
    env: {
      AWS_ENDPOINT_URL_S3: s3Url,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.url,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      // The SDK's notice about Node 20 would be a second stderr line.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      CLAWDINATOR_INSTANCE_ENV: host.instanceEnv,
      CLAWDINATOR_BOOTSTRAP_STATE_DIR: host.state,
      CLAWDINATOR_WORKSPACE_DIR: host.workspace,
      CLAWDINATOR_REPO_SEEDS_DIR: host.seeds,
      CLAWDINATOR_REPO_SEEDS_ARCHIVE: join(host.state, 'repo-seeds.tar.zst'),
      CLAWDINATOR_OPS_SECRETS_DIR: host.ops,
      CLAWDINATOR_AGENT_SECRETS_DIR: host.agent,
      CLAWDINATOR_IMDS_URL: imds.url,
      CLAWDINATOR_BOOTSTRAP_SWITCH: JSON.stringify(['sh', '-c', `echo {flake}#{host} >> ${host.switched}`]),
      CLAWDINATOR_EFS_TUNNEL_CONFIG: host.tunnel,
      CLAWDINATOR_EFS_CA_FILE: '/etc/ssl/certs/ca-certificates.crt',
      ...(AS_ROOT ? { CLAWDINATOR_OPS_OWNER: '2790:2790', CLAWDINATOR_AGENT_OWNER: '2791:2791' } : {}),
    },
  });
  outputs.push(result);
  return result;
}

const sentinel = () => readFileSync(join(host.state, '.bootstrap-ok'), 'utf8');
const switches = () => (existsSync(host.switched) ? readFileSync(host.switched, 'utf8').trim().split('\n') : []);

/** Every file under the host tree with its mtime and content: what "untouched" compares. */
function snapshot(): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[p] = `${statSync(p).mtimeMs} ${readFileSync(p).toString('base64')}`;
    }
  };
  walk(join(dir, 'host'));
  return out;
}

describe('clawdinator bootstrap', () => {
  it('installs the bundle: workspace and seeds for the agent, secrets 0400 for their owners in root-owned 0750 dirs, the switch hand-off to a root-owned flake, the sentinel', async () => {
    writeInstanceEnv(V1);
    const result = await boot();
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`bootstrapped ${NAME} from ${V1}`);
    expect(readFileSync(join(host.workspace, 'SOUL.md'), 'utf8')).toBe(
      readFileSync(projectPath('workspace', 'SOUL.md'), 'utf8'),
    );
    expect(existsSync(join(host.workspace, 'skills', 'README.md'))).toBe(true);
    expect(readFileSync(join(host.seeds, 'clawdinators', 'flake.nix'), 'utf8')).toBe('{ }\n');
    // The archive itself, root's and readable by the agent, for `seed-repos` run as the agent.
    const archive = join(host.state, 'repo-seeds.tar.zst');
    expect(statSync(archive).mode & 0o777).toBe(0o644);
    if (AS_ROOT) expect(statSync(archive).uid).toBe(0);
    const expected: [string, string][] = [
      [join(host.agent, 'discord-token'), `clawdinator/discord-token/${NAME}`],
      [join(host.agent, 'agent-key.pem'), `clawdinator/host/${NAME}/agent-key`],
      [join(host.ops, 'redis-password'), 'clawdinator/fleet/redis-auth'],
      [join(host.ops, 'discord-token'), 'clawdinator/fleet/ops-bot-token'],
    ];
    for (const [path, name] of expected) {
      expect(readFileSync(path, 'utf8')).toBe(SECRETS[name]);
      expect(statSync(path).mode & 0o777).toBe(0o400);
      if (AS_ROOT) expect(statSync(path).uid).toBe(path.startsWith(host.ops) ? OPS.uid : AGENT.uid);
    }
    // The agent's public key, for the ops gateway's request socket, is derived into the ops dir.
    const publicKey = join(host.ops, 'agent-public-key.pem');
    expect(readFileSync(publicKey, 'utf8')).toBe(AGENT_KEY.publicKeyPem);
    if (AS_ROOT) expect(statSync(publicKey).uid).toBe(OPS.uid);
    // Root's dirs, entered by the owner's group only: nobody but root writes there.
    for (const [d, owner] of [
      [host.ops, OPS],
      [host.agent, AGENT],
    ] as const) {
      expect(statSync(d).mode & 0o777).toBe(0o750);
      if (AS_ROOT) expect([statSync(d).uid, statSync(d).gid]).toEqual([0, owner.gid]);
    }
    // The agent's copies are the agent's, down to every file.
    if (AS_ROOT) {
      for (const p of [
        host.workspace,
        join(host.workspace, 'SOUL.md'),
        join(host.seeds, 'clawdinators', 'flake.nix'),
      ]) {
        expect([statSync(p).uid, statSync(p).gid]).toEqual([AGENT.uid, AGENT.gid]);
      }
    }
    // No EFS in this bundle: no tunnel config, so the tunnel and the mount are skipped.
    expect(existsSync(host.tunnel)).toBe(false);
    expect(result.stdout).toContain('memory: no EFS in config.json: /memory stays a local directory');
    // Optional fleet secrets that do not exist are skipped, by name.
    expect(existsSync(join(host.ops, 'github-app.pem'))).toBe(false);
    expect(result.stdout).toContain('not present, skipped (clawdinator/fleet/gateway-signing-key');
    expect(JSON.parse(sentinel())).toMatchObject({ prefix: V1, instance: NAME });
    // The seeds' root-owned extraction, never the agent's copy.
    expect(switches()).toEqual([seedsFlake()]);
    expect(statSync(join(host.state, 'repo-seeds', 'clawdinators')).uid).toBe(process.getuid?.());
    expect(existsSync(join(host.state, '.staging'))).toBe(false);
  });

  it('a second run is a no-op: no file rewritten, no hand-off', async () => {
    const before = snapshot();
    const result = await boot();
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^already bootstrapped from ${V1} \\(manifest [0-9a-f]{12}\\)$`, 'm'));
    expect(snapshot()).toEqual(before);
    expect(switches()).toEqual([seedsFlake()]);
  });

  it('a secret lost from /run (a reboot) is written again, nothing else', async () => {
    const before = snapshot();
    unlinkSync(join(host.ops, 'redis-password'));
    const result = await boot();
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('secrets: 1 written (clawdinator/fleet/redis-auth)');
    expect(snapshot()).toEqual({ ...before, [join(host.ops, 'redis-password')]: expect.any(String) });
  });

  it('a corrupted object: exit 1, one line, nothing installed, the sentinel as it was', async () => {
    await uploadBundle(cloud, bundleInput(V2, join(dir, 'ws-v2'), { 'NEW.md': 'new in v2\n' }));
    // Replaced behind the manifest's back.
    await rawS3.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: `${V2}/workspace/SOUL.md`, Body: Buffer.from('corrupted') }),
    );
    writeInstanceEnv(V2);
    const before = snapshot();
    const result = await boot();
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `^clawdinator: bootstrap: s3://${BUCKET}/${V2}/workspace/SOUL.md does not match the manifest .*: nothing installed\\n$`,
      ),
    );
    expect(snapshot()).toEqual({ ...before, [host.instanceEnv]: expect.any(String) });
    expect(JSON.parse(sentinel()).prefix).toBe(V1);
    expect(existsSync(join(host.state, '.staging'))).toBe(false);
  });

  it('a required secret missing: exit 1, one line naming it, nothing installed', async () => {
    // The re-upload repairs the corrupted object (its stored checksum no longer matches).
    const repaired = await uploadBundle(cloud, bundleInput(V2, join(dir, 'ws-v2'), { 'NEW.md': 'new in v2\n' }));
    expect(repaired.uploaded).toEqual(['workspace/SOUL.md']);
    const redisAuth = SECRETS['clawdinator/fleet/redis-auth'] as string;
    delete SECRETS['clawdinator/fleet/redis-auth'];
    const before = snapshot();
    const result = await boot();
    SECRETS['clawdinator/fleet/redis-auth'] = redisAuth;
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'clawdinator: bootstrap: the secret clawdinator/fleet/redis-auth does not exist: nothing installed\n',
    );
    expect(snapshot()).toEqual(before);
    expect(JSON.parse(sentinel()).prefix).toBe(V1);
  });

  it('a changed prefix re-initializes: the previous install cleaned, the new one installed', async () => {
    const repaired = await uploadBundle(cloud, bundleInput(V2, join(dir, 'ws-v2'), { 'NEW.md': 'new in v2\n' }));
    expect(repaired.uploaded).toEqual([]);
    writeFileSync(join(host.workspace, 'scratch.txt'), 'left by the agent under v1');
    const result = await boot();
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`re-initializing: ${V1} → ${V2}`);
    expect(readFileSync(join(host.workspace, 'NEW.md'), 'utf8')).toBe('new in v2\n');
    expect(existsSync(join(host.workspace, 'scratch.txt'))).toBe(false);
    expect(JSON.parse(sentinel())).toMatchObject({ prefix: V2, manifestSha256: repaired.manifestSha256 });
    expect(readFileSync(join(host.ops, 'redis-password'), 'utf8')).toBe(SECRETS['clawdinator/fleet/redis-auth']);
    expect(switches()).toEqual([seedsFlake(), seedsFlake()]);
  });

  it('without instance.env, reads the user data through IMDSv2 and writes instance.env back', async () => {
    unlinkSync(host.instanceEnv);
    // The very script the instance stack puts in user data, naming the first prefix again.
    imds.userData = userData(
      NAME,
      {
        host: NAME,
        instanceType: 't3.large',
        bootstrapPrefix: V1,
        discordTokenSecret: `clawdinator/discord-token/${NAME}`,
      },
      BUCKET,
    );
    imds.requests.length = 0;
    const result = await boot();
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('instance.env was missing: read the user data from IMDS and wrote it back');
    expect(result.stdout).toContain(`re-initializing: ${V2} → ${V1}`);
    expect(readFileSync(host.instanceEnv, 'utf8')).toBe(
      formatIdentity({ name: NAME, host: NAME, bucket: BUCKET, prefix: V1 }),
    );
    expect(JSON.parse(sentinel()).prefix).toBe(V1);
    // A token first, then every read with it.
    expect(imds.requests[0]).toMatchObject({ method: 'PUT', url: '/latest/api/token' });
    const gets = imds.requests.filter((r) => r.method === 'GET');
    expect(gets.map((r) => r.url)).toEqual(['/latest/user-data', '/latest/meta-data/placement/region']);
    for (const get of gets) expect(get.headers['x-aws-ec2-metadata-token']).toEqual(expect.any(String));
  });

  it('IMDS answers no GET without a token; when it refuses a token, the bootstrap stops, nothing changed', async () => {
    const plain = await fetch(`${imds.url}/latest/user-data`);
    expect(plain.status).toBe(401);

    unlinkSync(host.instanceEnv);
    imds.refuseTokens = true;
    const before = snapshot();
    const result = await boot();
    imds.refuseTokens = false;
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`clawdinator: bootstrap: IMDS ${imds.url} gave no session token (HTTP 403)\n`);
    expect(existsSync(host.instanceEnv)).toBe(false);
    expect(snapshot()).toEqual(before);
  });

  it('no bundle for the prefix: exit 1, one line saying how to upload it', async () => {
    writeInstanceEnv(`bootstrap/${NAME}-none`);
    const sentinelBefore = sentinel();
    const result = await boot();
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `clawdinator: bootstrap: no bundle at s3://${BUCKET}/bootstrap/${NAME}-none/ (no manifest.json): upload it with clawdinator fleet bundle ${NAME}: nothing installed\n`,
    );
    expect(sentinel()).toBe(sentinelBefore);
  });

  it('an agent that planted links in its home: none followed; the switch goes to the bundle’s pinned flake; the EFS tunnel config written', async () => {
    // What the agent can reach outside its home: nothing of it may change.
    const victim = join(dir, 'victim');
    mkdirSync(victim, { recursive: true });
    writeFileSync(join(victim, 'keep.txt'), 'root’s file');
    const victimBefore = () => readdirSync(victim).map((f) => `${f}:${readFileSync(join(victim, f), 'utf8')}`);
    const untouched = victimBefore();
    // The names the old bootstrap worked under, as links; and the workspace itself swapped for one.
    symlinkSync(victim, `${host.workspace}.partial`);
    symlinkSync(victim, `${host.seeds}.partial`);
    rmSync(host.workspace, { recursive: true, force: true });
    symlinkSync(victim, host.workspace);

    const rev = 'a'.repeat(40);
    const V3 = `bootstrap/${NAME}-v3`;
    await uploadBundle(cloud, {
      ...bundleInput(V3, join(dir, 'ws-v3')),
      efsId: 'fs-0123456789abcdef0',
      flake: `github:openclaw/clawdinators/${rev}`,
    });
    writeInstanceEnv(V3);
    const result = await boot();
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);

    expect(victimBefore()).toEqual(untouched);
    expect(statSync(join(victim, 'keep.txt')).uid).toBe(process.getuid?.());
    // The planted links are left as they were, never used.
    for (const link of [`${host.workspace}.partial`, `${host.seeds}.partial`]) {
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link)).toBe(victim);
    }
    // The workspace is a real directory again, holding the templates.
    expect(lstatSync(host.workspace).isDirectory()).toBe(true);
    expect(existsSync(join(host.workspace, 'SOUL.md'))).toBe(true);
    expect(
      readdirSync(join(dir, 'host', 'var/lib/clawd')).filter((f) => f.includes('.partial-') || f.includes('.old-')),
    ).toEqual([]);
    // The hand-off names the pinned revision, not a path the agent could swap.
    expect(switches().at(-1)).toBe(`github:openclaw/clawdinators/${rev}#${NAME}`);
    for (const line of switches()) expect(line.startsWith(join(dir, 'host', 'var/lib/clawd/'))).toBe(false);
    // The tunnel for /memory: the bundle's file system in the host's region, certificate checked.
    const tunnel = readFileSync(host.tunnel, 'utf8');
    expect(tunnel).toContain('accept = 127.0.0.1:2049');
    expect(tunnel).toContain('connect = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com:2049');
    expect(tunnel).toContain('checkHost = fs-0123456789abcdef0.efs.us-east-1.amazonaws.com');
    expect(tunnel).toContain('verifyChain = yes');
    expect(tunnel).toContain('CAfile = /etc/ssl/certs/ca-certificates.crt');
  });
});
