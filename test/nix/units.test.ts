// The host's unit description (nix/units.json) against what the code expects of it: each unit
// names only the secrets it uses (the worker no bot token, the gateway not the workers' key),
// the files the bootstrap installs are the ones the units read, the boot order holds, and Nix
// reads the file (nix-instantiate --eval, where nix-bin is installed).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HOST_DOCUMENT, HOST_SCRIPT, LOG_UNITS, RUN_PATTERN } from '../../infra/host-document.js';
import { OPS_SECRET_FILES } from '../../jobs/bootstrap/bundle.js';
import { projectPath } from '../../lib/paths.js';
import { readContract, UNITS_FILE } from '../support/units.js';

const contract = readContract();
const units = contract.units;
const HAS_NIX = spawnSync('nix-instantiate', ['--version']).status === 0;

/** The ops secret files a unit's environment names. */
function secretFilesNamed(env: Record<string, string>): string[] {
  const dir = `${contract.paths.opsSecrets}/`;
  return Object.values(env)
    .filter((v) => v.startsWith(dir))
    .map((v) => v.slice(dir.length));
}

describe('nix/units.json', () => {
  it('the host script: its source exists, it answers our document, and its allow-list and checks are the document’s', () => {
    const scripts = Object.entries(contract.hostScripts).filter(([name]) => name !== '$comment');
    expect(scripts.map(([name, s]) => [name, s.document])).toEqual([[basename(HOST_SCRIPT), HOST_DOCUMENT]]);
    const [, script] = scripts[0] as [string, { source: string }];
    const path = projectPath('nix', script.source);
    expect(existsSync(path)).toBe(true);
    const text = readFileSync(path, 'utf8');
    // The journals /logs may read: every unit the module runs, and the same list as the document.
    const listed = /log_units=\(([^)]*)\)/.exec(text)?.[1]?.split(/\s+/).filter(Boolean);
    expect(listed).toEqual([...LOG_UNITS]);
    for (const unit of [...Object.keys(units), 'memory.mount']) expect(LOG_UNITS).toContain(unit);
    // The same value rules as the document's parameters, checked again on the host.
    expect(text).toContain('^[0-9a-f]{40}$');
    expect(text).toContain(RUN_PATTERN.replace('^(', '^').replace(')?$', '$'));
    // Its result files live in a directory the module makes, root's alone.
    expect(contract.directories).toContainEqual({
      $comment: expect.any(String),
      path: contract.paths.deployState,
      mode: '0700',
      user: 'root',
      group: 'root',
    });
    expect(text).toContain('state_dir=$root/var/lib/clawdinator/deploy');
    expect(contract.paths.deployState).toBe('/var/lib/clawdinator/deploy');
  });

  it('the ops secrets are the bootstrap’s: same files, same secret names', () => {
    expect(contract.opsSecrets).toEqual(OPS_SECRET_FILES);
  });

  it('each unit reads only the secrets it lists, and lists only ones the bootstrap installs', () => {
    for (const [name, unit] of Object.entries(units)) {
      const named = secretFilesNamed(unit.environment);
      expect(
        named.filter((f) => !unit.secrets.includes(f)),
        name,
      ).toEqual([]);
      expect(
        unit.secrets.filter((f) => !(f in contract.opsSecrets) && !(f in contract.opsDerived)),
        name,
      ).toEqual([]);
    }
  });

  it('per-unit identity: the gateway signs as gateway with its key, the worker as schedule with the workers’ key', () => {
    const gateway = units['clawdinator-gateway'];
    const worker = units['clawdinator-worker'];
    expect(gateway?.environment.CLAWDINATOR_JOB_KEY_ID).toBe('gateway');
    expect(gateway?.environment.CLAWDINATOR_JOB_SIGNING_KEY_FILE).toBe('/run/clawdinator-ops/gateway-signing-key.pem');
    expect(worker?.environment.CLAWDINATOR_JOB_KEY_ID).toBe('schedule');
    expect(worker?.environment.CLAWDINATOR_JOB_SIGNING_KEY_FILE).toBe('/run/clawdinator-ops/workers-signing-key.pem');
    // The worker never talks to Discord; the gateway verifies (public keys, settings) but never
    // signs as the workers.
    expect(worker?.secrets).not.toContain('discord-token');
    expect(gateway?.secrets).not.toContain('workers-signing-key.pem');
    // Settings cannot choose a key: the module refuses *_KEY_ID and *_FILE settings.
    for (const unit of Object.values(units)) expect(unit.moduleEnvironment).not.toContain('CLAWDINATOR_JOB_KEY_ID');
  });

  it('boot order: bootstrap, then the memory mount and init, then gateway and worker', () => {
    const order = contract.order;
    expect(order[0]).toBe('clawdinator-bootstrap');
    for (const [name, unit] of Object.entries(units)) {
      // Every unit it orders after comes earlier in `order` (or is a system target).
      for (const dep of unit.after.filter((d) => d.startsWith('clawdinator-'))) {
        expect(order.indexOf(dep.replace(/\.service$/, '')), `${name} after ${dep}`).toBeLessThan(order.indexOf(name));
      }
    }
    for (const name of ['clawdinator-memory-init', 'clawdinator-gateway', 'clawdinator-worker']) {
      expect(units[name]?.wantsMountsFor).toEqual([contract.memoryMount.where]);
    }
    expect(contract.memoryMount.after).toContain('clawdinator-bootstrap.service');
    // The tunnel and the mount run only where the bootstrap wrote the tunnel's config.
    expect(units['clawdinator-efs-tunnel']?.conditionPathExists).toBe(contract.paths.efsTunnelConfig);
    expect(contract.memoryMount.conditionPathExists).toBe(contract.paths.efsTunnelConfig);
    expect(units['clawdinator-bootstrap']?.environment.CLAWDINATOR_EFS_TUNNEL_CONFIG).toBe(
      contract.paths.efsTunnelConfig,
    );
  });

  it('fixed ids, the same on every host (a shared NFS compares numbers), and the bootstrap gives files to them', () => {
    const { ops, agent, memory } = contract.ids;
    expect(new Set([ops.uid, agent.uid]).size).toBe(2);
    expect(new Set([ops.gid, agent.gid, memory.gid]).size).toBe(3);
    const boot = units['clawdinator-bootstrap']?.environment;
    expect(boot?.CLAWDINATOR_OPS_OWNER).toBe(`${ops.uid}:${ops.gid}`);
    expect(boot?.CLAWDINATOR_AGENT_OWNER).toBe(`${agent.uid}:${agent.gid}`);
  });

  it.skipIf(!HAS_NIX)('Nix reads it as the module does (builtins.fromJSON)', () => {
    const expr = `let c = builtins.fromJSON (builtins.readFile ${UNITS_FILE}); in { order = c.order; worker = c.units.clawdinator-worker.command; uid = c.ids.ops.uid; }`;
    const result = spawnSync('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      order: contract.order,
      worker: ['clawdinator', 'worker'],
      uid: contract.ids.ops.uid,
    });
  });
});
