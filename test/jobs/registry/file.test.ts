// The local-file registry backend: optimistic updates by content hash, re-applied on a
// concurrent change, validated before anything is written.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FleetRegistry, RegistryEntry } from '../../../infra/registry.js';
import { FileRegistryStore } from '../../../jobs/registry/file.js';
import { RegistryConflictError } from '../../../jobs/registry/types.js';
import { tempDir } from '../../support/cli.js';

function entry(name: string): RegistryEntry {
  return {
    host: name,
    instanceType: 't3.large',
    bootstrapPrefix: `bootstrap/${name}`,
    discordTokenSecret: `clawdinator/discord-token/${name}`,
  };
}

function fleetFile(registry: FleetRegistry = { 'clawdinator-1': entry('clawdinator-1') }): string {
  const path = join(tempDir('clawdinator-registry-'), 'fleet.json');
  writeFileSync(path, `${JSON.stringify(registry, null, 2)}\n`);
  return path;
}

const add = (name: string) => (r: FleetRegistry) => ({ ...r, [name]: entry(name) });

describe('file registry', () => {
  it('reads the registry with its content hash; an update writes it and its history line', async () => {
    const store = new FileRegistryStore(fleetFile());
    const before = await store.read();
    expect(Object.keys(before.registry)).toEqual(['clawdinator-1']);
    expect(before.version).toMatch(/^[0-9a-f]{64}$/);
    await store.update(add('clawdinator-2'), { message: 'fleet: spawn clawdinator-2 — requested by alice' });
    const after = await store.read();
    expect(Object.keys(after.registry)).toEqual(['clawdinator-1', 'clawdinator-2']);
    expect(after.version).not.toBe(before.version);
    expect(readFileSync(store.historyPath, 'utf8')).toMatch(/ fleet: spawn clawdinator-2 — requested by alice\n$/);
  });

  it('two concurrent updates of different names both land', async () => {
    const store = new FileRegistryStore(fleetFile());
    const other = new FileRegistryStore(store.path);
    await Promise.all([
      store.update(add('clawdinator-2'), { message: 'two' }),
      other.update(add('clawdinator-3'), { message: 'three' }),
      store.update(add('clawdinator-4'), { message: 'four' }),
    ]);
    expect(Object.keys((await store.read()).registry).sort()).toEqual([
      'clawdinator-1',
      'clawdinator-2',
      'clawdinator-3',
      'clawdinator-4',
    ]);
  });

  it('a change made after the read is not overwritten: the mutator is applied again to it', async () => {
    const store = new FileRegistryStore(fleetFile());
    let calls = 0;
    await store.update(
      (r) => {
        calls++;
        // Someone else writes between this update's read and its write.
        if (calls === 1) writeFileSync(store.path, JSON.stringify({ ...r, 'clawdinator-9': entry('clawdinator-9') }));
        return { ...r, 'clawdinator-2': entry('clawdinator-2') };
      },
      { message: 'spawn 2' },
    );
    expect(calls).toBe(2);
    expect(Object.keys((await store.read()).registry)).toEqual(['clawdinator-1', 'clawdinator-9', 'clawdinator-2']);
  });

  it('a conflicting change is the mutator’s clear error; a registry that keeps changing gives up', async () => {
    const store = new FileRegistryStore(fleetFile(), { attempts: 3 });
    await expect(
      store.update(
        (r) => {
          if (r['clawdinator-1']) throw new Error('clawdinator-1 is already in the registry');
          return r;
        },
        { message: 'x' },
      ),
    ).rejects.toThrow('clawdinator-1 is already in the registry');
    let n = 0;
    const racing = store.update(
      (r) => {
        n++;
        writeFileSync(store.path, JSON.stringify({ ...r, [`clawdinator-r${n}`]: entry(`clawdinator-r${n}`) }));
        return { ...r, 'clawdinator-2': entry('clawdinator-2') };
      },
      { message: 'spawn 2' },
    );
    await expect(racing).rejects.toThrow(RegistryConflictError);
    await expect(racing).rejects.toThrow(/changed 3 times during "spawn 2": nothing written/);
    expect((await store.read()).registry['clawdinator-2']).toBeUndefined();
  });

  it('an invalid result is refused before anything is written; no change writes nothing', async () => {
    const store = new FileRegistryStore(fleetFile());
    const text = readFileSync(store.path, 'utf8');
    await expect(
      store.update((r) => ({ ...r, 'clawdinator-2': { ...entry('clawdinator-2'), ami: 'nope' } }), { message: 'bad' }),
    ).rejects.toThrow(/clawdinator-2: ami must be an AMI id/);
    await store.update((r) => r, { message: 'nothing' });
    expect(readFileSync(store.path, 'utf8')).toBe(text);
  });
});
