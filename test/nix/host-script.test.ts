// The host script (nix/host/clawdinator-host.sh) run for real by bash, with its paths
// re-rooted under a temp dir and the host's tools (systemctl, systemd-run, nixos-rebuild,
// journalctl, findmnt, timedatectl) stand-ins on PATH that record what they were asked;
// jq, coreutils and the built `clawdinator host redact` are the real ones. Its answers are
// parsed with the control plane's own parsers (jobs/host/command.ts).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InvocationResult } from '../../jobs/cloud/types.js';
import { lastJson, parseDoctor, switchStartSchema, switchStatusSchema } from '../../jobs/host/command.js';
import { projectPath } from '../../lib/paths.js';
import { CLI, tempDir } from '../support/cli.js';

const SCRIPT = projectPath('nix', 'host', 'clawdinator-host.sh');
const SHA = '5a4dbeef0c1a3d5a4d0b0e0015a4dbeef0c1a3d5';
const BEFORE = 'ba5eba5eba5eba5eba5eba5eba5eba5eba5eba5e';
const SECRET = 'planted-redis-password-0b8e1f44';
const TOKEN = 'ghs_plantedflaketoken000000000000000001';
// The flake token the deploy stored for the switch: shaped like no known secret, so only its
// value gives it away.
const FLAKE_TOKEN = 'FlakeTokenPlanted7c1e9a04b2d6f3e8';

const STANDINS: Record<string, string> = {
  // Units: root/units/<unit> holds its state (default active); a switch may flip the worker.
  systemctl: `#!/usr/bin/env bash
case $1 in
is-active) s=$(cat "$ROOT/units/$2" 2>/dev/null || { [ "$2" = clawdinator-agent ] && echo inactive; } || echo active)
  echo "$s"; [ "$s" = active ] ;;
show) echo 'Thu 2026-11-26 10:00:00 UTC' ;;
cat) [ -f "$ROOT/units/$2" ] ;;
esac`,
  // Detached for real (systemd-run), run at once here: the test reads the result after.
  'systemd-run': `#!/usr/bin/env bash
echo "$*" >>"$ROOT/calls/systemd-run"
while [[ $1 == --* ]]; do shift; done
"$@" </dev/null >/dev/null 2>&1 || true`,
  // A build prints a secret it should not; a switch moves the revision (and may break the worker).
  'nixos-rebuild': `#!/usr/bin/env bash
echo "$*" >>"$ROOT/calls/nixos-rebuild"
conf=\${NIX_USER_CONF_FILES:-}
echo "conf=\${conf:+set} token=$(cat "$conf" 2>/dev/null | wc -c)" >>"$ROOT/calls/nixos-rebuild"
rev="$ROOT/run/current-system/configurationRevision"
case $1 in
build) echo "building ... redis password is ${SECRET}"; echo "fetching with ${FLAKE_TOKEN}: 200" ;;
switch)
  if [ "\${2:-}" = --rollback ]; then cp "$ROOT/previous-generation" "$rev"; echo 'rolled back'; exit 0; fi
  cp "$rev" "$ROOT/previous-generation"
  echo "$3" | sed 's|.*/\\([0-9a-f]*\\)#.*|\\1|' >"$rev"
  if [ -f "$ROOT/break-worker" ]; then echo failed >"$ROOT/units/clawdinator-worker"; fi ;;
esac`,
  journalctl: `#!/usr/bin/env bash
echo "$*" >>"$ROOT/calls/journalctl"
echo "2026-11-26T10:00:00+0000 host clawdinator-worker[1]: redis AUTH ${SECRET} refused"
echo "2026-11-26T10:00:01+0000 host clawdinator-worker[1]: github Authorization: token ${TOKEN}"
echo "2026-11-26T10:00:02+0000 host clawdinator-worker[1]: worker ready"`,
  findmnt: `#!/usr/bin/env bash
echo '127.0.0.1:/ nfs4'`,
  timedatectl: `#!/usr/bin/env bash
echo yes`,
  // The real CLI, except the token fetch (AWS): a stored token, as the instance role reads it.
  clawdinator: `#!/usr/bin/env bash
if [ "$1 $2" = 'host deploy-token' ]; then
  [ -f "$ROOT/no-token" ] && { echo 'deploy-token: none stored'; exit 0; }
  printf 'access-tokens = github.com=%s\\n' "${FLAKE_TOKEN}" >"$4"; chmod 400 "$4"; echo 'deploy-token: written'; exit 0
fi
if [ -f "$ROOT/redact-fails" ]; then echo 'cannot read secrets' >&2; exit 1; fi
exec "${process.execPath}" "${CLI}" "$@"`,
};

function host() {
  const root = tempDir('clawdinator-host-script-');
  const bin = join(root, 'bin');
  for (const d of [
    'bin',
    'calls',
    'units',
    'run/current-system',
    'run/clawdinator-ops',
    'var/lib/clawdinator',
    'etc/clawdinator',
    'memory',
  ]) {
    mkdirSync(join(root, d), { recursive: true });
  }
  for (const [name, body] of Object.entries(STANDINS)) {
    writeFileSync(join(bin, name), `${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  writeFileSync(join(root, 'run/current-system/configurationRevision'), BEFORE);
  writeFileSync(join(root, 'run/clawdinator-ops/redis-password'), SECRET, { mode: 0o400 });
  writeFileSync(
    join(root, 'var/lib/clawdinator/instance.env'),
    'CLAWDINATOR_INSTANCE_NAME=clawdinator-2\nCLAWDINATOR_HOST=clawdinator-2\n',
  );
  writeFileSync(join(root, 'etc/clawdinator/host.env'), 'CLAWDINATOR_HOST_FLAKE=github:openclaw/clawdinators\n');
  const run = (...args: string[]): InvocationResult => {
    const r = spawnSync('bash', [SCRIPT, ...args], {
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        ROOT: root,
        CLAWDINATOR_HOST_ROOT: root,
        CLAWDINATOR_HEALTH_SECONDS: '1',
        HOME: root,
      },
      encoding: 'utf8',
    });
    return {
      commandId: 'c',
      instanceId: 'i',
      status: r.status === 0 ? 'Success' : 'Failed',
      exitCode: r.status,
      stdout: r.stdout,
      stderr: r.stderr,
    };
  };
  const calls = (tool: string) =>
    existsSync(join(root, 'calls', tool))
      ? readFileSync(join(root, 'calls', tool), 'utf8')
          .trim()
          .split('\n')
      : [];
  return { root, run, calls };
}

describe('the host script', () => {
  it('switch: the revision recorded first, started detached, built and switched with the token in a file, healthy', () => {
    const h = host();
    const start = lastJson(h.run('switch-start', SHA, 'd1-up', '', ''), switchStartSchema, 'start');
    expect(start).toEqual({ run: 'd1-up', sha: SHA, previous: BEFORE, state: 'started' });
    expect(h.calls('systemd-run')[0]).toMatch(/^--unit=clawdinator-deploy --collect --no-block .* switch-run 5a4dbeef/);
    const status = lastJson(h.run('switch-status', '', 'd1-up', '', ''), switchStatusSchema, 'status');
    expect(status).toMatchObject({
      state: 'done',
      ok: true,
      phase: 'done',
      revision: SHA,
      rolledBack: false,
      previous: BEFORE,
    });
    expect(h.calls('nixos-rebuild')).toEqual([
      `build --flake github:openclaw/clawdinators/${SHA}#clawdinator-2`,
      `conf=set token=${`access-tokens = github.com=${FLAKE_TOKEN}\n`.length}`,
      `switch --flake github:openclaw/clawdinators/${SHA}#clawdinator-2`,
      `conf=set token=${`access-tokens = github.com=${FLAKE_TOKEN}\n`.length}`,
    ]);
    // The token was in a file for nix alone, gone after; never on a command line or in the result.
    expect(JSON.stringify(h.calls('systemd-run'))).not.toContain(FLAKE_TOKEN);
    expect(readFileSync(join(h.root, 'calls/nixos-rebuild'), 'utf8')).not.toContain(FLAKE_TOKEN);
    expect(spawnSync('sh', ['-c', `ls -d ${h.root}/run/clawdinator-switch.* 2>/dev/null`]).stdout.toString()).toBe('');
    // The build's output leaked a secret: the result's tail has it redacted.
    if (status.state !== 'done') throw new Error('not done');
    expect(status.tail).toContain('redis password is [redacted]');
    // nix printed the token it was given, bare: redacted by its value, read from the switch's own file.
    expect(status.tail).toContain('fetching with [redacted]: 200');
    const result = readFileSync(join(h.root, 'var/lib/clawdinator/deploy/d1-up/result.json'), 'utf8');
    expect(result).not.toContain(SECRET);
    expect(result).not.toContain(FLAKE_TOKEN);

    // Asked again (a resumed job): the same answer, no second switch; the same sha again: nothing to do.
    expect(lastJson(h.run('switch-start', SHA, 'd1-up', '', ''), switchStartSchema, 'again').state).toBe('done');
    expect(lastJson(h.run('switch-start', SHA, 'd2-up', '', ''), switchStartSchema, 'same').state).toBe('already');
    expect(h.calls('systemd-run')).toHaveLength(1);
  });

  it('a switch whose worker does not come back is rolled back to the previous generation, locally', () => {
    const h = host();
    writeFileSync(join(h.root, 'break-worker'), '');
    lastJson(h.run('switch-start', SHA, 'd3-up', '', ''), switchStartSchema, 'start');
    const status = lastJson(h.run('switch-status', '', 'd3-up', '', ''), switchStatusSchema, 'status');
    expect(status).toMatchObject({ state: 'done', ok: false, phase: 'health', rolledBack: true, revision: BEFORE });
    if (status.state !== 'done') throw new Error('not done');
    // The units that ran before the switch (the agent did not here), each as it is now.
    expect(status.units).toEqual({
      'clawdinator-worker': 'failed',
      'clawdinator-gateway': 'active',
      'clawdinator-model-proxy': 'active',
    });
    expect(status.tail).toMatch(/health check failed after 1s: clawdinator-worker not back/);
    expect(h.calls('nixos-rebuild').at(-2)).toBe('switch --rollback');
  });

  it('refuses a hostile sha, run, unit or line count before running anything', () => {
    const h = host();
    for (const args of [
      ['switch-start', '$(reboot)', 'd1-up'],
      ['switch-start', SHA, '../../etc'],
      ['switch-start', `${SHA};reboot`, 'd1-up'],
      ['switch-status', '', 'x y'],
      ['logs', '', '', 'sshd', '10'],
      ['logs', '', '', 'clawdinator-worker', '501'],
      ['logs', '', '', 'clawdinator-worker', '1;reboot'],
      ['reboot'],
    ]) {
      const r = h.run(...args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stdout, args.join(' ')).toBe('');
    }
    expect(h.calls('systemd-run')).toEqual([]);
    expect(h.calls('journalctl')).toEqual([]);
  });

  it('logs: the journal redacted on the host, by value and by pattern; nothing at all when redaction fails', () => {
    const h = host();
    const r = h.run('logs', '', '', 'clawdinator-worker', '50');
    expect(r.exitCode).toBe(0);
    expect(h.calls('journalctl')).toEqual([
      '--unit=clawdinator-worker --lines=50 --no-pager --output=short-iso --quiet',
    ]);
    expect(r.stdout).toContain('redis AUTH [redacted] refused');
    expect(r.stdout).toContain('Authorization: token [redacted]');
    expect(r.stdout).not.toContain(SECRET);
    expect(r.stdout).not.toContain(TOKEN);
    writeFileSync(join(h.root, 'redact-fails'), '');
    const failed = h.run('logs', '', '', 'clawdinator-worker', '50');
    expect(failed.exitCode).not.toBe(0);
    expect(failed.stdout).toBe('');
  });

  it('doctor: one line of evidence per check, secrets by name and mode only', () => {
    const h = host();
    const checks = parseDoctor(h.run('doctor', '', '', '', ''));
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(Object.keys(byName)).toEqual([
      'bootstrap',
      'memory tunnel',
      'memory mount',
      'memory init',
      'secrets',
      'gateway',
      'worker',
      'agent runtime',
      '/memory shared',
      'repos seeded',
      'disk',
      'memory pressure',
      'clock',
      'revision',
    ]);
    expect(byName.secrets).toMatchObject({ state: 'ok' });
    expect(byName.secrets?.evidence).toMatch(/^redis-password 400 \S+$/);
    expect(byName['memory mount']).toMatchObject({ state: 'ok', evidence: '127.0.0.1:/ nfs4 on /memory' });
    expect(byName['agent runtime']?.state).toBe('skip');
    // A temp dir is not EFS, and no repos were seeded here: both said, each in a line.
    expect(byName['/memory shared']?.state).toBe('fail');
    expect(byName['repos seeded']?.state).toBe('fail');
    expect(byName.revision?.evidence).toMatch(new RegExp(`^${BEFORE} since \\d{4}-`));
    expect(JSON.stringify(checks)).not.toContain(SECRET);
  });
});
