// The bootstrap bundle on s3rver (a real S3-protocol server) through the AWS adapter, and on
// the simulated cloud that spawn uses: the first upload writes every file and the manifest,
// a second writes nothing, a changed template goes up alone, a template that left the bundle
// is deleted, the manifest's checksums are those of the stored objects, prepared repo seeds
// are copied in server-side, and config.json names secrets without ever holding a value.
import { cpSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type BundleInput,
  type Manifest,
  REPO_SEEDS_SOURCE_KEY,
  sha256Of,
  uploadBundle,
} from '../../../jobs/bootstrap/bundle.js';
import { createAwsCloud } from '../../../jobs/cloud/aws.js';
import { createSimCloud } from '../../../jobs/cloud/sim.js';
import type { Cloud } from '../../../jobs/cloud/types.js';
import { projectPath } from '../../../lib/paths.js';
import { tempDir } from '../../support/cli.js';
import { s3rverClient, startS3rver, type TestS3 } from '../../support/s3.js';

const BUCKET = 'fleet-bucket';
const PLANTED = 'planted-secret-value-7f3a9c';
let dir: string;
let server: TestS3;
let client: S3Client;
/** Names of the commands the S3 client sent since the last reset. */
const sent: string[] = [];

beforeAll(async () => {
  dir = tempDir('clawdinator-bundle-');
  server = await startS3rver(dir, [BUCKET]);
  client = s3rverClient(server.url, sent);
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A member's bundle input over a fresh copy of the project's workspace templates. */
function input(name: string): BundleInput {
  const workspaceDir = join(dir, `workspace-${name}`);
  rmSync(workspaceDir, { recursive: true, force: true });
  cpSync(projectPath('workspace'), workspaceDir, { recursive: true });
  return {
    name,
    host: name,
    bootstrapPrefix: `bootstrap/${name}`,
    bucket: BUCKET,
    region: 'eu-central-1',
    efsId: 'fs-0123456789abcdef0',
    redisUrl: 'rediss://master.clawdinator.example.cache.amazonaws.com:6379',
    secrets: {
      discordToken: `clawdinator/discord-token/${name}`,
      agentKey: `clawdinator/host/${name}/agent-key`,
    },
    workspaceDir,
  };
}

const templates = readdirSync(projectPath('workspace'), { recursive: true, withFileTypes: true })
  .filter((e) => e.isFile())
  .map((e) =>
    `workspace/${join((e as { parentPath?: string }).parentPath ?? e.path, e.name).slice(projectPath('workspace').length + 1)}`.replaceAll(
      '\\',
      '/',
    ),
  )
  .sort();

async function manifestOf(cloud: Cloud, prefix: string): Promise<Manifest> {
  return JSON.parse(((await cloud.getBytes(BUCKET, `${prefix}/manifest.json`)) as Buffer).toString()) as Manifest;
}

/** Every file the manifest names is stored with that checksum and size. */
async function expectManifestMatchesObjects(cloud: Cloud, prefix: string): Promise<void> {
  const manifest = await manifestOf(cloud, prefix);
  for (const file of manifest.files) {
    const body = (await cloud.getBytes(BUCKET, `${prefix}/${file.path}`)) as Buffer;
    expect({ path: file.path, sha256: sha256Of(body), size: body.length }).toEqual(file);
  }
}

function suite(label: string, makeCloud: () => Cloud, puts: () => number) {
  describe(label, () => {
    let cloud: Cloud;
    beforeEach(() => {
      cloud = makeCloud();
    });

    it('uploads every file, then nothing; a changed template alone; a removed one is deleted', async () => {
      const name = `clawdinator-${label === 's3rver' ? 'a' : 'b'}1`;
      const member = input(name);
      const first = await uploadBundle(cloud, member);
      expect(first.uploaded).toEqual(['config.json', ...templates]);
      expect(first.unchanged).toEqual([]);
      expect((await cloud.listKeys(BUCKET, `bootstrap/${name}/`)).sort()).toEqual(
        ['config.json', 'manifest.json', ...templates].map((p) => `bootstrap/${name}/${p}`).sort(),
      );
      const manifest = await manifestOf(cloud, member.bootstrapPrefix);
      expect(manifest.prefix).toBe(`bootstrap/${name}`);
      expect(manifest.files.map((f) => f.path)).toEqual(['config.json', ...templates]);
      await expectManifestMatchesObjects(cloud, member.bootstrapPrefix);
      expect(first.manifestSha256).toBe(
        sha256Of((await cloud.getBytes(BUCKET, `bootstrap/${name}/manifest.json`)) as Buffer),
      );

      const before = puts();
      const second = await uploadBundle(cloud, member);
      expect(second.uploaded).toEqual([]);
      expect(second.unchanged).toEqual(['config.json', ...templates]);
      expect(second.manifestSha256).toBe(first.manifestSha256);
      expect(puts()).toBe(before);

      writeFileSync(join(member.workspaceDir as string, 'SOUL.md'), 'a changed soul\n');
      const third = await uploadBundle(cloud, member);
      expect(third.uploaded).toEqual(['workspace/SOUL.md']);
      // The file and the manifest.
      expect(puts()).toBe(before + 2);
      expect(((await cloud.getBytes(BUCKET, `bootstrap/${name}/workspace/SOUL.md`)) as Buffer).toString()).toBe(
        'a changed soul\n',
      );
      await expectManifestMatchesObjects(cloud, member.bootstrapPrefix);

      unlinkSync(join(member.workspaceDir as string, 'TOOLS.md'));
      const fourth = await uploadBundle(cloud, member);
      expect(fourth).toMatchObject({ uploaded: [], removed: ['workspace/TOOLS.md'] });
      expect(await cloud.headObject(BUCKET, `bootstrap/${name}/workspace/TOOLS.md`)).toBeNull();
      expect((await manifestOf(cloud, member.bootstrapPrefix)).files.map((f) => f.path)).not.toContain(
        'workspace/TOOLS.md',
      );
    });

    it('an object changed behind the manifest is uploaded again', async () => {
      const name = `clawdinator-${label === 's3rver' ? 'a' : 'b'}2`;
      const member = input(name);
      await uploadBundle(cloud, member);
      await cloud.putBytes(BUCKET, `bootstrap/${name}/workspace/AGENTS.md`, Buffer.from('tampered'));
      const again = await uploadBundle(cloud, member);
      expect(again.uploaded).toEqual(['workspace/AGENTS.md']);
      await expectManifestMatchesObjects(cloud, member.bootstrapPrefix);
    });

    it('copies prepared repo seeds into the bundle, once', async () => {
      const name = `clawdinator-${label === 's3rver' ? 'a' : 'b'}3`;
      const member = input(name);
      const seeds = join(dir, `seeds-${label}.tar.zst`);
      writeFileSync(seeds, `seed archive bytes ${label}`);
      const prepared = await cloud.uploadFile(BUCKET, REPO_SEEDS_SOURCE_KEY, seeds);
      const first = await uploadBundle(cloud, member);
      expect(first.uploaded).toContain('repo-seeds.tar.zst');
      const entry = (await manifestOf(cloud, member.bootstrapPrefix)).files.find(
        (f) => f.path === 'repo-seeds.tar.zst',
      );
      expect(entry).toEqual({ path: 'repo-seeds.tar.zst', sha256: prepared.sha256, size: prepared.size });
      await expectManifestMatchesObjects(cloud, member.bootstrapPrefix);
      expect((await uploadBundle(cloud, member)).uploaded).toEqual([]);
      // Seeds withdrawn: the bundle's copy goes too.
      await cloud.deleteKeys(BUCKET, [REPO_SEEDS_SOURCE_KEY]);
      expect((await uploadBundle(cloud, member)).removed).toEqual(['repo-seeds.tar.zst']);
    });

    it('config.json names the secrets and never holds a value', async () => {
      const name = `clawdinator-${label === 's3rver' ? 'a' : 'b'}4`;
      const member = input(name);
      const result = await uploadBundle(cloud, member);
      const configText = ((await cloud.getBytes(BUCKET, `bootstrap/${name}/config.json`)) as Buffer).toString();
      const config = JSON.parse(configText);
      expect(config).toMatchObject({
        version: 1,
        instance: name,
        host: name,
        region: 'eu-central-1',
        bucket: BUCKET,
        bootstrapPrefix: `bootstrap/${name}`,
        efsId: 'fs-0123456789abcdef0',
        redisUrl: 'rediss://master.clawdinator.example.cache.amazonaws.com:6379',
      });
      expect(config.secrets).toContainEqual({
        name: `clawdinator/discord-token/${name}`,
        file: 'discord-token',
        owner: 'agent',
        required: true,
      });
      expect(config.secrets).toContainEqual({
        name: 'clawdinator/fleet/redis-auth',
        file: 'redis-password',
        owner: 'ops',
        required: true,
      });
      for (const key of await cloud.listKeys(BUCKET, `bootstrap/${name}/`)) {
        expect(((await cloud.getBytes(BUCKET, key)) as Buffer).toString()).not.toContain(PLANTED);
      }
      expect(JSON.stringify(result)).not.toContain(PLANTED);
    });
  });
}

suite(
  's3rver',
  () => createAwsCloud({ clients: { s3: client } }),
  () => sent.filter((c) => c === 'PutObjectCommand' || c === 'CopyObjectCommand').length,
);

let sim = createSimCloud();
suite(
  'sim',
  () => {
    // The secrets exist, with a planted value: nothing of the bundle may carry it.
    sim = createSimCloud({
      buckets: [BUCKET],
      secrets: {
        'clawdinator/discord-token/clawdinator-b4': PLANTED,
        'clawdinator/host/clawdinator-b4/agent-key': PLANTED,
        'clawdinator/fleet/redis-auth': PLANTED,
      },
    });
    sent.length = 0;
    return sim;
  },
  () => (sim.calls.byOperation.PutObject ?? 0) + (sim.calls.byOperation.CopyObject ?? 0),
);
