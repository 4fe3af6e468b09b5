// `clawdinator seed-workspace` through the built CLI, as the agent's unit runs it before each
// start of the runtime: as the agent's uid (setpriv, when the tests run as root — and root
// itself is refused). Across three "deploys" of new templates: a file the agent edited is kept
// and reported, an untouched one follows the templates, a template that left the set takes its
// untouched file with it, the agent's own files are never touched, and the tool list is
// appended to TOOLS.md below its marker (rewritten each time, also in an edited TOOLS.md). The
// runtime's gateway token and its cron store with the hourly heartbeat are made once and kept.
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOOLS_MARKER } from '../../jobs/workspace/seed.js';
import { CLI, tempDir } from '../support/cli.js';
import { readContract } from '../support/units.js';

const AS_ROOT = process.getuid?.() === 0;
const { agent } = readContract().ids;
let dir: string;
let env: Record<string, string>;

const path = (...p: string[]) => join(dir, ...p);
const read = (...p: string[]) => readFileSync(path(...p), 'utf8');

function write(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  if (AS_ROOT) chownTree(file);
}

/** The test's files belong to the agent's uid, as the agent's home does on a host. */
function chownTree(file: string): void {
  for (let p = file; p.startsWith(dir) && p !== dir; p = dirname(p)) chownSync(p, agent.uid, agent.gid);
  chownSync(dir, agent.uid, agent.gid);
}

function seed(asRoot = false): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = [process.execPath, CLI, 'seed-workspace'];
  const cmd =
    AS_ROOT && !asRoot ? ['setpriv', `--reuid=${agent.uid}`, `--regid=${agent.gid}`, '--clear-groups', ...argv] : argv;
  return new Promise((resolve) => {
    const child = spawn(cmd[0] as string, cmd.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

beforeAll(() => {
  dir = tempDir('clawdinator-seed-');
  for (const d of ['templates', 'home/workspace', 'state', 'etc']) mkdirSync(path(d), { recursive: true });
  if (AS_ROOT) chownTree(path('home/workspace'));
  if (AS_ROOT) chownTree(path('state'));
  env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    CLAWDINATOR_WORKSPACE_TEMPLATES: path('templates'),
    CLAWDINATOR_WORKSPACE_DIR: path('home/workspace'),
    CLAWDINATOR_WORKSPACE_MANIFEST: path('state/workspace-seed.json'),
    CLAWDINATOR_TOOLS_FILE: path('etc/tools.md'),
    CLAWDINATOR_AGENT_STATE_DIR: path('state'),
  };
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('clawdinator seed-workspace', () => {
  it('keeps what the agent edited, updates what it did not, appends the tool list', async () => {
    // ── first start: an empty workspace ───────────────────────────────────────────────────
    write(path('templates/SOUL.md'), 'soul v1\n');
    write(path('templates/USER.md'), 'user v1\n');
    write(path('templates/skills/lurk/SKILL.md'), 'lurk v1\n');
    write(path('templates/OLD.md'), 'old v1\n');
    write(path('templates/TOOLS.md'), '# TOOLS.md\n\ntools v1\n');
    write(path('etc/tools.md'), '## Installed toolchain\n- **gh** — GitHub CLI\n');
    const first = await seed();
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(
      /: 5 added, 0 updated, 0 unchanged, 0 kept, 0 removed; TOOLS\.md: tool list appended\n/,
    );
    expect(read('home/workspace/skills/lurk/SKILL.md')).toBe('lurk v1\n');
    expect(read('home/workspace/TOOLS.md')).toBe(
      `# TOOLS.md\n\ntools v1\n\n${TOOLS_MARKER}\n\n## Installed toolchain\n- **gh** — GitHub CLI\n`,
    );
    // The runtime's files: a private gateway token, the hourly heartbeat in the cron store.
    const token = read('state/gateway-token');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(statSync(path('state/gateway-token')).mode & 0o077).toBe(0);
    const store = JSON.parse(read('state/cron-jobs.json'));
    expect(store.jobs).toEqual([
      expect.objectContaining({ id: 'heartbeat', schedule: { kind: 'cron', expr: '0 * * * *' } }),
    ]);

    // ── the agent works: edits USER.md, adds its own notes ────────────────────────────────
    write(path('home/workspace/USER.md'), 'user v1\n- alice owns the CI\n');
    write(path('home/workspace/NOTES.md'), 'mine\n');
    write(path('home/workspace/skills/mine/SKILL.md'), 'my skill\n');

    // ── a deploy brings new templates and tools; OLD.md left the set ──────────────────────
    write(path('templates/USER.md'), 'user v2\n');
    write(path('templates/skills/lurk/SKILL.md'), 'lurk v2\n');
    write(path('templates/TOOLS.md'), '# TOOLS.md\n\ntools v2\n');
    rmSync(path('templates/OLD.md'));
    write(path('etc/tools.md'), '## Installed toolchain\n- **gh** — GitHub CLI\n- **rg** — ripgrep\n');
    const second = await seed();
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(
      /: 0 added, 2 updated, 1 unchanged, 1 kept, 1 removed; TOOLS\.md: tool list appended\n/,
    );
    expect(second.stdout).toContain(
      `kept USER.md: changed here since it was seeded (the current template: ${path('templates')}/USER.md)\n`,
    );
    expect(read('home/workspace/USER.md')).toBe('user v1\n- alice owns the CI\n');
    expect(read('home/workspace/skills/lurk/SKILL.md')).toBe('lurk v2\n');
    expect(existsSync(path('home/workspace/OLD.md'))).toBe(false);
    expect(read('home/workspace/NOTES.md')).toBe('mine\n');
    expect(read('home/workspace/skills/mine/SKILL.md')).toBe('my skill\n');
    expect(read('home/workspace/TOOLS.md')).toBe(
      `# TOOLS.md\n\ntools v2\n\n${TOOLS_MARKER}\n\n## Installed toolchain\n- **gh** — GitHub CLI\n- **rg** — ripgrep\n`,
    );
    // Made once: a restart keeps the gateway's token.
    expect(read('state/gateway-token')).toBe(token);

    // ── the agent edits TOOLS.md above the marker; a third deploy ─────────────────────────
    write(
      path('home/workspace/TOOLS.md'),
      `# TOOLS.md\n\ntools v2\n- my alias: ll\n\n${TOOLS_MARKER}\n\n(stale list)\n`,
    );
    write(path('templates/TOOLS.md'), '# TOOLS.md\n\ntools v3\n');
    write(path('etc/tools.md'), '## Installed toolchain\n- **jq** — JSON\n');
    const third = await seed();
    expect(third.code).toBe(0);
    expect(third.stdout).toContain('kept TOOLS.md: changed here since it was seeded');
    expect(read('home/workspace/TOOLS.md')).toBe(
      `# TOOLS.md\n\ntools v2\n- my alias: ll\n\n${TOOLS_MARKER}\n\n## Installed toolchain\n- **jq** — JSON\n`,
    );
    // Still kept on the next start, and still reported.
    const fourth = (await seed()).stdout;
    expect(fourth).toContain('kept USER.md: changed here since it was seeded');
    expect(fourth).toContain('kept TOOLS.md: changed here since it was seeded');
  });

  it.runIf(AS_ROOT)('refuses to run as root in the agent’s home', async () => {
    const r = await seed(true);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('clawdinator: seed-workspace runs as the agent’s user, not as root\n');
  });
});
