import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cloudSeed,
  ensureRegistry,
  memberActor,
  operatorActor,
  registryEntry,
  SANDBOX_AMI,
  sandboxPolicy,
  writeSigningKeys,
} from '../../../bot/sandbox/world.js';
import { createSimCloud } from '../../../jobs/cloud/sim.js';
import { principalSchema } from '../../../jobs/engine/envelope.js';
import { parsePublicKey } from '../../../jobs/signing.js';
import { authorize } from '../../../lib/authorize.js';
import { tempDir } from '../../support/cli.js';

describe('sandbox world', () => {
  it('the console user is an operator allowed everything; --as is a member who may only read and look', () => {
    const operator = operatorActor();
    const bob = memberActor('bob');
    for (const permission of ['spawn', 'retire', 'memory write', 'memory read', 'status', 'deploy', 'jobs']) {
      expect(authorize(sandboxPolicy, permission, operator)).toEqual({ allowed: true });
    }
    for (const permission of ['memory read', 'memory list', 'status']) {
      expect(authorize(sandboxPolicy, permission, bob)).toEqual({ allowed: true });
    }
    for (const permission of ['spawn', 'memory write', 'deploy']) {
      expect(authorize(sandboxPolicy, permission, bob).allowed).toBe(false);
    }
  });

  it('--as takes a user id or a name; a name gets a stable id a signed job accepts', () => {
    expect(memberActor('bob')).toEqual(memberActor('bob'));
    expect(memberActor('bob').userId).not.toBe(memberActor('carol').userId);
    expect(memberActor('123456789012345678')).toMatchObject({ userId: '123456789012345678' });
    for (const actor of [operatorActor(), memberActor('bob'), memberActor('123456789012345678')]) {
      const principal = { kind: 'discord', ...actor };
      expect(principalSchema.safeParse(principal).success).toBe(true);
    }
    expect(() => memberActor('bob smith')).toThrow(/--as: expected a Discord user id/);
  });

  it('makes the registry once with clawdinator-1 and keeps it afterwards', async () => {
    const path = join(tempDir(), 'fleet.json');
    expect(await ensureRegistry(path)).toEqual({ 'clawdinator-1': registryEntry('clawdinator-1') });
    const changed = { 'clawdinator-2': registryEntry('clawdinator-2') };
    writeFileSync(path, JSON.stringify(changed));
    expect(await ensureRegistry(path)).toEqual(changed);
    writeFileSync(path, '{');
    await expect(ensureRegistry(path)).rejects.toThrow(/is not valid JSON/);
  });

  it('seeds the simulated cloud from the registry', async () => {
    const other = 'ami-0aaaaaaaaaaaaaaa1';
    const cloud = createSimCloud(
      cloudSeed({
        'clawdinator-1': registryEntry('clawdinator-1'),
        'clawdinator-7': registryEntry('clawdinator-7', other),
      }),
    );
    try {
      const instances = await cloud.listFleetInstances();
      expect(instances.map((i) => [i.name, i.state, i.imageId])).toEqual([
        ['clawdinator-1', 'running', SANDBOX_AMI],
        ['clawdinator-7', 'running', other],
      ]);
      expect((await cloud.findLatestAmi())?.imageId).toBe(SANDBOX_AMI);
      expect(await cloud.secretExists('clawdinator/discord-token/clawdinator-5')).toBe(true);
      expect(await cloud.secretExists('clawdinator/discord-token/clawdinator-6')).toBe(false);
      expect(await cloud.secretExists('clawdinator/discord-token/clawdinator-7')).toBe(true);
    } finally {
      cloud.close();
    }
  });

  it('writes fresh Ed25519 keys, readable by the owner only', async () => {
    const dir = tempDir();
    const first = await writeSigningKeys(dir);
    const second = await writeSigningKeys(dir);
    for (const id of ['gateway', 'schedule'] as const) {
      expect(statSync(second[id].path).mode & 0o777).toBe(0o600);
      expect(readFileSync(second[id].path, 'utf8')).toBe(second[id].privateKeyPem);
      expect(second[id].privateKeyPem).not.toBe(first[id].privateKeyPem);
      expect(parsePublicKey(second[id].publicKeyPem)).not.toBeNull();
    }
    expect(statSync(join(dir, 'keys')).mode & 0o777).toBe(0o700);
  });
});
