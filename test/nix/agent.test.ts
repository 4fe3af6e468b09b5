// The agent runtime's description (nix/agent.json) and the model proxy's unit (nix/units.json)
// against what the code expects of them, and the tool list nix/agent-tools.nix renders at
// build time (nix-instantiate --eval with stand-in packages, where nix-bin is installed).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PROXY_PLACEHOLDER_KEY, RUNTIME_GATEWAY_PORT } from '../../lib/agent-config.js';
import { loadConfig, settings } from '../../lib/config.js';
import { projectPath } from '../../lib/paths.js';
import { readContract } from '../support/units.js';

const HAS_NIX = spawnSync('nix-instantiate', ['--version']).status === 0;
const contract = readContract();
const runtime = JSON.parse(readFileSync(projectPath('nix', 'agent.json'), 'utf8')).runtime;
const proxy = contract.units['clawdinator-model-proxy'];
const knownEnv = new Set(Object.values(settings).map((s) => s.env));

describe('nix/agent.json and the model proxy unit', () => {
  it('the runtime runs as the agent, after the bootstrap, the memory init and the model proxy, seeding first', () => {
    expect(runtime).toMatchObject({ user: 'agent', group: 'agent', supplementaryGroups: ['memory'] });
    expect(runtime.command).toEqual(['openclaw', 'gateway', '--port', String(RUNTIME_GATEWAY_PORT)]);
    expect(runtime.execStartPre).toEqual(['clawdinator', 'seed-workspace']);
    expect(runtime.after).toEqual(
      expect.arrayContaining([
        'clawdinator-bootstrap.service',
        'clawdinator-memory-init.service',
        'clawdinator-model-proxy.service',
      ]),
    );
    expect(runtime.wantsMountsFor).toEqual([contract.paths.memory]);
  });

  it('the runtime holds no control-plane secret; its model keys are the proxy’s placeholder', () => {
    const opsDir = `${contract.paths.opsSecrets}/`;
    for (const [name, value] of Object.entries(runtime.environment as Record<string, string>)) {
      expect(value.startsWith(opsDir), name).toBe(false);
    }
    for (const f of runtime.environmentFiles as string[]) expect(f.replace(/^-/, '').startsWith(opsDir)).toBe(false);
    expect(runtime.environment.ANTHROPIC_API_KEY).toBe(PROXY_PLACEHOLDER_KEY);
    expect(runtime.environment.OPENAI_API_KEY).toBe(PROXY_PLACEHOLDER_KEY);
    // The agent's own key signs its requests; it is in the agent's secrets dir.
    expect(runtime.environment.CLAWDINATOR_JOB_SIGNING_KEY_FILE.startsWith(`${contract.paths.agentSecrets}/`)).toBe(
      true,
    );
  });

  it('its settings are ones the CLI knows, and its paths are the host layout’s and the settings’ defaults', () => {
    const names = [...Object.keys(runtime.environment), ...runtime.moduleEnvironment].filter((n: string) =>
      n.startsWith('CLAWDINATOR_'),
    );
    expect(names.filter((n) => !knownEnv.has(n))).toEqual([]);
    expect(runtime.environment.HOME).toBe(contract.paths.agentHome);
    expect(runtime.environment.CLAWDINATOR_WORKSPACE_DIR).toBe(contract.paths.workspace);
    expect(runtime.environment.CLAWDINATOR_AGENT_SECRETS_DIR).toBe(contract.paths.agentSecrets);
    expect(runtime.environment.CLAWDINATOR_BUILD_INFO_FILE).toBe(contract.paths.buildInfo);
    expect(runtime.conditionPathExists).toBe(`${contract.paths.agentSecrets}/discord-token`);
    // `clawdinator agent-config` run with no settings (the Nix build passes only these) renders
    // the same paths the unit uses.
    const defaults = loadConfig(['workspaceDir', 'agentSecretsDir', 'agentStateDir', 'workspaceManifest'], { env: {} });
    expect(defaults.workspaceDir).toBe(runtime.environment.CLAWDINATOR_WORKSPACE_DIR);
    expect(defaults.agentSecretsDir).toBe(runtime.environment.CLAWDINATOR_AGENT_SECRETS_DIR);
    expect(defaults.agentStateDir).toBe(runtime.stateDir);
    expect(defaults.workspaceManifest.startsWith(`${runtime.stateDir}/`)).toBe(true);
  });

  it('the model proxy runs as ops and alone reads the model keys; the other units never see them', () => {
    expect(proxy).toMatchObject({ user: 'ops', group: 'ops', command: ['clawdinator', 'model-proxy'], settings: true });
    expect([...(proxy?.secrets ?? [])].sort()).toEqual(['anthropic-api-key', 'openai-api-key', 'redis-password']);
    for (const [name, unit] of Object.entries(contract.units)) {
      if (name === 'clawdinator-model-proxy') continue;
      expect(unit.secrets, name).not.toContain('anthropic-api-key');
      expect(unit.secrets, name).not.toContain('openai-api-key');
    }
    expect(proxy?.environment.CLAWDINATOR_ANTHROPIC_API_KEY_FILE).toBe(
      `${contract.paths.opsSecrets}/anthropic-api-key`,
    );
    // The default port the runtime's configuration names is the one nix/agent.nix closes to others.
    const port = loadConfig(['modelProxyPort'], { env: {} }).modelProxyPort;
    expect(readFileSync(projectPath('nix', 'agent.nix'), 'utf8')).toContain(`CLAWDINATOR_MODEL_PROXY_PORT or ${port}`);
  });
});

describe.skipIf(!HAS_NIX)('nix/agent-tools.nix (rendered at build time)', () => {
  const render = (extraPkgs: string) => {
    const expr = `let t = import ${projectPath('nix', 'agent-tools.nix')} { pkgs = { gh = "gh"; git = "git"; curl = "curl"; jq = "jq"; python3 = "python3"; ripgrep = "rg"; nodejs_22 = "node"; pnpm_10 = "pnpm"; util-linux = "ul"; ${extraPkgs} }; extra = [ { name = "memory-read / memory-write / memory-append / memory-edit"; description = "the hive mind"; package = null; } ]; }; in { inherit (t) markdown packages; }`;
    const r = spawnSync('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { markdown: string; packages: string[] };
  };

  it('lists the original’s toolchain, and the pi coding agent only where nixpkgs packages it', () => {
    const without = render('');
    for (const tool of [
      'gh',
      'git',
      'curl',
      'jq',
      'python3',
      'rg',
      'node',
      'pnpm',
      'memory-read / memory-write / memory-append / memory-edit',
    ]) {
      expect(without.markdown).toContain(`- **${tool}** — `);
    }
    expect(without.markdown).not.toContain('**pi**');
    expect(without.packages).toEqual(['gh', 'git', 'curl', 'jq', 'python3', 'rg', 'node', 'pnpm', 'ul']);
    const withPi = render('pi-coding-agent = "pi";');
    expect(withPi.markdown).toContain('- **pi** — ');
    expect(withPi.packages).toContain('pi');
  });
});
