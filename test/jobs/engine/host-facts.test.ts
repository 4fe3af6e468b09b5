// What the heartbeat says about the host: the memory dir's file system type (statfs), the
// flags overriding what is learned, and /status showing what a host says is wrong with it.
import { lutimesSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hostFacts, NFS_SUPER_MAGIC } from '../../../jobs/engine/host-facts.js';
import { type FleetStatus, formatMember, formatStatus, type MemberStatus, SOURCES } from '../../../jobs/status.js';

const dir = mkdtempSync(join(tmpdir(), 'clawdinator-facts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const noImds = { instanceId: async () => Promise.reject(new Error('not asked')) };

describe('host facts', () => {
  it('switchedAt: when the current system link last changed (a switch replaces it); absent without one', async () => {
    const link = join(dir, 'current-system');
    symlinkSync('/nix/store/none-nixos-system', link);
    const at = new Date('2026-11-24T20:41:00Z');
    lutimesSync(link, at, at);
    const facts = hostFacts({
      instanceId: 'i-1',
      imds: noImds,
      buildInfoFile: join(dir, 'none'),
      currentSystem: link,
      memoryDir: dir,
    });
    expect((await facts()).switchedAt).toBe(at.getTime());
    const none = hostFacts({
      instanceId: 'i-1',
      imds: noImds,
      buildInfoFile: join(dir, 'none'),
      currentSystem: join(dir, 'no-link'),
      memoryDir: dir,
    });
    expect((await none()).switchedAt).toBeUndefined();
  });

  it('memoryShared: true only when the memory dir is NFS (statfs f_type), false for a local dir or none', async () => {
    const local = hostFacts({ instanceId: 'i-1', imds: noImds, buildInfoFile: join(dir, 'none'), memoryDir: dir });
    expect((await local()).memoryShared).toBe(false);
    const missing = hostFacts({
      instanceId: 'i-1',
      imds: noImds,
      buildInfoFile: join(dir, 'none'),
      memoryDir: join(dir, 'gone'),
    });
    expect((await missing()).memoryShared).toBe(false);
    const seen: string[] = [];
    const nfs = hostFacts({
      instanceId: 'i-1',
      imds: noImds,
      buildInfoFile: join(dir, 'none'),
      memoryDir: '/memory',
      fsType: async (path) => {
        seen.push(path);
        return NFS_SUPER_MAGIC;
      },
    });
    expect((await nfs()).memoryShared).toBe(true);
    expect(seen).toEqual(['/memory']);
  });

  it('flags override IMDS and the build info; without any, the revision is unknown and the build unlocked-or-not unknown', async () => {
    const given = hostFacts({
      instanceId: 'i-0feedbeef0000000',
      revision: 'cafe',
      imds: noImds,
      buildInfoFile: join(dir, 'none'),
      revisionFile: join(dir, 'none'),
      memoryDir: dir,
    });
    expect(await given()).toMatchObject({ instanceId: 'i-0feedbeef0000000', revision: 'cafe', locked: null });
    const bare = hostFacts({
      instanceId: 'i-1',
      imds: noImds,
      buildInfoFile: join(dir, 'none'),
      revisionFile: join(dir, 'none'),
      memoryDir: dir,
    });
    expect((await bare()).revision).toBe('unknown');
  });
});

describe('/status shows what a host says is wrong with it', () => {
  const member = (heartbeat: Partial<NonNullable<MemberStatus['heartbeat']>>): MemberStatus => ({
    name: 'clawdinator-2',
    state: 'online',
    instanceType: 't3.large',
    registryAmi: null,
    instanceId: 'i-2',
    ec2State: 'running',
    ami: null,
    launchTime: null,
    privateIp: null,
    ssm: 'Online',
    heartbeat: {
      at: '2026-01-01T00:00:00.000Z',
      version: '0.1.0',
      revision: 'abc',
      activeJobs: 0,
      startedAt: '2026-01-01T00:00:00.000Z',
      instanceId: 'i-2',
      instanceIdError: null,
      memoryShared: true,
      locked: true,
      switchedAt: null,
      ...heartbeat,
    },
    olderImage: false,
    notOnLastDeploy: false,
  });
  const status = (m: MemberStatus): FleetStatus => ({
    generatedAt: '2026-01-01T00:00:00.000Z',
    sources: Object.fromEntries(SOURCES.map((n) => [n, { ok: true, error: null }])) as FleetStatus['sources'],
    lastDeploy: null,
    newestAmi: null,
    members: [m],
    strays: [],
    queues: [],
    schedules: [],
  });

  it('a healthy host: no warning', () => {
    expect(formatStatus(status(member({})))).not.toContain('⚠️');
  });

  it('the revision and since when; a member not on the last successful deploy is flagged', () => {
    const sha = 'a'.repeat(40);
    const on = member({ revision: sha, switchedAt: '2026-11-24T20:41:00.000Z' });
    const last = { sha, ok: true, at: '2026-11-24T20:42:00.000Z', jobId: 'deploy-1', target: 'all' };
    const fine = { ...status(on), lastDeploy: last };
    expect(formatStatus(fine)).toContain('rev aaaaaaaa since 2026-11-24 20:41');
    expect(formatStatus(fine)).toContain('last deploy: aaaaaaaa succeeded at 2026-11-24T20:42:00.000Z (job deploy-1)');
    expect(formatStatus(fine)).not.toContain('⚠️');
    const behind = { ...status({ ...member({ revision: 'b'.repeat(40) }), notOnLastDeploy: true }), lastDeploy: last };
    expect(formatStatus(behind)).toContain("⚠️ not on the last deploy's aaaaaaaa");
    expect(formatMember(behind, 'clawdinator-2')).toContain("⚠️ not on the last deploy's aaaaaaaa");
  });

  it('/memory not shared, no instance id, built without flake.lock: each named', () => {
    const bad = status(member({ memoryShared: false, instanceIdError: 'IMDS unreachable', locked: false }));
    for (const text of [formatStatus(bad), formatMember(bad, 'clawdinator-2') as string]) {
      expect(text).toContain('⚠️ /memory is not the shared file system');
      expect(text).toContain('⚠️ instance id unavailable (IMDS unreachable)');
      expect(text).toContain('⚠️ built without flake.lock');
    }
  });
});
