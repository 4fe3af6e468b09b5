// `clawdinator agent-config <name>` through the built CLI: a registry of three members (the
// original's two coders and its translation-only member with overrides) merged with the
// fleet's settings, compared with the expected openclaw configurations in
// test/fixtures/agent-config/; the Discord interrupt rule present in each; an override that
// turns it off, or opens DMs, refused with one line at registry parse and in the fleet's
// settings, nothing printed; the sandbox's registry read with --sandbox.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRegistry } from '../../infra/registry.js';
import { projectPath } from '../../lib/paths.js';
import { runCli, tempDir } from '../support/cli.js';

const FIXTURES = projectPath('test', 'fixtures', 'agent-config');
const GUILD = '1456350064065904867';
const CHANNEL = '1458426982579830908';
let dir: string;
let registry: string;
let env: Record<string, string>;

const expected = (name: string) => JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), 'utf8')) as unknown;

/** A copy of the fixture registry with `agent` set on clawdinator-2. */
function registryWith(agent: unknown): string {
  const data = JSON.parse(readFileSync(join(FIXTURES, 'registry.json'), 'utf8'));
  data['clawdinator-2'].agent = agent;
  const path = join(dir, `fleet-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(data));
  return path;
}

beforeAll(() => {
  dir = tempDir('clawdinator-agent-config-');
  registry = join(dir, 'fleet.json');
  cpSync(join(FIXTURES, 'registry.json'), registry);
  env = {
    CLAWDINATOR_FLEET_REGISTRY: registry,
    CLAWDINATOR_AGENT_GUILD_ID: GUILD,
    CLAWDINATOR_AGENT_CHANNEL_IDS: JSON.stringify([CHANNEL]),
  };
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('clawdinator agent-config', () => {
  it('merges defaults, fleet settings and the registry entry: three members as expected', async () => {
    for (const name of ['clawdinator-1', 'clawdinator-babelfish']) {
      const r = await runCli(['agent-config', name], { env });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const config = JSON.parse(r.stdout);
      expect(config, name).toEqual(expected(name));
      // The rule the original calls CRITICAL, for every member, whatever its role.
      expect(config.messages.queue.byChannel.discord).toBe('interrupt');
      expect(config.channels.discord.dm.enabled).toBe(false);
    }
    // The second coder differs from the first by its name only.
    const two = await runCli(['agent-config', 'clawdinator-2'], { env });
    expect(two.code).toBe(0);
    const one = expected('clawdinator-1') as { agents: { list: { identity: { name: string } }[] } };
    (one.agents.list[0] as { identity: { name: string } }).identity.name = 'CLAWDINATOR-2';
    expect(JSON.parse(two.stdout)).toEqual(one);
  });

  it('secrets appear as file paths: no token, no key, only where to read them', async () => {
    const r = await runCli(['agent-config', 'clawdinator-1'], { env });
    const config = JSON.parse(r.stdout);
    expect(config.channels.discord.token).toEqual({ source: 'file', provider: 'clawdinator_discord', id: 'value' });
    expect(config.secrets.providers.clawdinator_discord.path).toBe('/run/clawdinator/discord-token');
    // The model providers go through the proxy with a placeholder, never a key.
    for (const p of Object.values(config.models.providers) as { apiKey: string; baseUrl: string }[]) {
      expect(p.apiKey).toBe('clawdinator-model-proxy');
      expect(p.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:18780\//);
    }
  });

  it('fleet settings change every member; the port moves the proxy URLs', async () => {
    const r = await runCli(['agent-config', 'clawdinator-1'], {
      env: {
        ...env,
        CLAWDINATOR_AGENT_MODEL: 'anthropic/claude-opus-4-6',
        CLAWDINATOR_AGENT_FALLBACK_MODELS: '[]',
        CLAWDINATOR_MODEL_PROXY_PORT: '19999',
        CLAWDINATOR_AGENT_CONFIG: JSON.stringify({ logging: { level: 'debug' } }),
      },
    });
    expect(r.code).toBe(0);
    const config = JSON.parse(r.stdout);
    expect(config.agents.defaults.model).toEqual({ primary: 'anthropic/claude-opus-4-6', fallbacks: [] });
    expect(config.agents.defaults.models).toEqual({ 'anthropic/claude-opus-4-6': { alias: 'Opus' } });
    expect(config.models.providers.anthropic.baseUrl).toBe('http://127.0.0.1:19999/anthropic');
    // Deep-merged: the level changed, the log file stayed.
    expect(config.logging).toEqual({ level: 'debug', file: '/var/lib/clawdinator-agent/logs/openclaw.log' });
  });

  it.each([
    [
      'the interrupt rule turned off',
      { config: { messages: { queue: { byChannel: { discord: 'queue' } } } } },
      /messages\.queue\.byChannel\.discord must stay "interrupt"/,
    ],
    [
      'the queue replaced wholesale',
      { config: { messages: { queue: null } } },
      /messages\.queue replaces what holds messages\.queue\.byChannel\.discord/,
    ],
    [
      'DMs opened',
      { config: { channels: { discord: { dm: { enabled: true } } } } },
      /channels\.discord\.dm\.enabled must stay false/,
    ],
    [
      'DMs opened by policy',
      { config: { channels: { discord: { dmPolicy: 'open' } } } },
      /channels\.discord\.dmPolicy must stay "disabled"/,
    ],
    [
      'DMs opened on a second account',
      { config: { channels: { discord: { accounts: { alt: { dm: { enabled: true } } } } } } },
      /accounts\.alt\.dm\.enabled must stay false/,
    ],
    ['the gateway off loopback', { config: { gateway: { bind: 'lan' } } }, /gateway\.bind must stay "loopback"/],
  ])('refuses a member override with %s: one line, exit 2, nothing printed', async (_what, agent, message) => {
    const r = await runCli(['agent-config', 'clawdinator-1'], {
      env: { ...env, CLAWDINATOR_FLEET_REGISTRY: registryWith(agent) },
    });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/clawdinator-2: agent\.config /);
    expect(r.stderr).toMatch(message);
  });

  it('the registry parse itself refuses it (what every reader of the registry uses)', () => {
    const path = registryWith({ config: { messages: { queue: { byChannel: { discord: 'queue' } } } } });
    expect(() => readRegistry(path)).toThrow(
      /clawdinator-2: agent\.config messages\.queue\.byChannel\.discord must stay "interrupt"/,
    );
    // An unknown field inside `agent` is named with its path.
    expect(() => readRegistry(registryWith({ colour: 'blue' }))).toThrow(/unknown field "agent\.colour"/);
  });

  it('refuses the same in the fleet-wide setting', async () => {
    const r = await runCli(['agent-config', 'clawdinator-1'], {
      env: {
        ...env,
        CLAWDINATOR_AGENT_CONFIG: JSON.stringify({ messages: { queue: { byChannel: { discord: 'queue' } } } }),
      },
    });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^clawdinator: config: CLAWDINATOR_AGENT_CONFIG is invalid: .*must stay "interrupt"/);
  });

  it('a provider the runtime cannot reach through the proxy reads its key from a file only the agent reads', async () => {
    const r = await runCli(['agent-config', 'clawdinator-1'], {
      env: { ...env, CLAWDINATOR_AGENT_DIRECT_KEYS: JSON.stringify({ brave: 'clawdinator/fleet/brave-api-key' }) },
    });
    expect(r.code).toBe(0);
    const config = JSON.parse(r.stdout);
    expect(config.models.providers.brave).toEqual({
      apiKey: { source: 'file', provider: 'clawdinator_key_brave', id: 'value' },
    });
    expect(config.secrets.providers.clawdinator_key_brave.path).toBe('/run/clawdinator/model-key-brave');
    // A provider the proxy serves keeps its key with the proxy.
    const refused = await runCli(['agent-config', 'clawdinator-1'], {
      env: {
        ...env,
        CLAWDINATOR_AGENT_DIRECT_KEYS: JSON.stringify({ anthropic: 'clawdinator/fleet/anthropic-api-key' }),
      },
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/CLAWDINATOR_AGENT_DIRECT_KEYS is invalid: .*keeps its key with the proxy/);
  });

  it('an unknown member is one line; the sandbox’s registry is read with --sandbox', async () => {
    const missing = await runCli(['agent-config', 'clawdinator-9'], { env });
    expect(missing).toMatchObject({ code: 2, stdout: '' });
    expect(missing.stderr).toBe('clawdinator: clawdinator-9 is not in the fleet registry\n');

    const sandbox = join(dir, 'sandbox');
    mkdirSync(sandbox);
    cpSync(join(FIXTURES, 'registry.json'), join(sandbox, 'fleet.json'));
    const r = await runCli(['agent-config', 'clawdinator-babelfish', '--sandbox', sandbox], {
      env: { CLAWDINATOR_AGENT_GUILD_ID: GUILD, CLAWDINATOR_AGENT_CHANNEL_IDS: JSON.stringify([CHANNEL]) },
    });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(expected('clawdinator-babelfish'));
  });
});
