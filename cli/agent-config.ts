// `clawdinator agent-config <name>`: a member's merged agent runtime configuration (openclaw's
// openclaw.json) as JSON on stdout — what its host runs with. Secrets appear as file paths.
// The registry is the configured one (CLAWDINATOR_FLEET_REGISTRY[_BACKEND]), a file given with
// --registry, or a sandbox's (--sandbox). nix/agent.nix runs this at build time with the
// flake's infra/fleet.json to make the host's /etc/openclaw/openclaw.json.
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import type { FleetRegistry } from '../infra/registry.js';
import { type AgentFleetSettings, agentConfigProblem, mergeAgentConfig } from '../lib/agent-config.js';
import { loadConfig } from '../lib/config.js';
import { ConfigError, UsageError } from '../lib/errors.js';

/** The settings every member's configuration starts from. */
export function fleetAgentSettings(): {
  fleet: AgentFleetSettings;
  paths: Parameters<typeof mergeAgentConfig>[0]['paths'];
} {
  const c = loadConfig([
    'agentGuildId',
    'agentChannelIds',
    'agentModel',
    'agentFallbackModels',
    'agentThinking',
    'agentMaxConcurrent',
    'agentConfig',
    'agentDirectKeys',
    'agentStateDir',
    'modelProxyPort',
    'workspaceDir',
    'agentSecretsDir',
  ]);
  return {
    fleet: {
      guildId: c.agentGuildId,
      channelIds: c.agentChannelIds,
      model: c.agentModel,
      fallbackModels: c.agentFallbackModels,
      thinking: c.agentThinking,
      maxConcurrent: c.agentMaxConcurrent,
      config: c.agentConfig,
      modelProxyPort: c.modelProxyPort,
      directKeys: c.agentDirectKeys,
    },
    paths: { workspaceDir: c.workspaceDir, agentSecretsDir: c.agentSecretsDir, agentStateDir: c.agentStateDir },
  };
}

async function readRegistry(opts: { registry?: string; sandbox?: string | true }): Promise<FleetRegistry> {
  const { readRegistry: readFile } = await import('../infra/registry.js');
  if (opts.registry !== undefined && opts.sandbox !== undefined)
    throw new UsageError('give --registry or --sandbox, not both');
  if (opts.registry !== undefined) return readFile(resolve(opts.registry));
  if (opts.sandbox !== undefined) {
    const dir = opts.sandbox === true ? './.sandbox' : opts.sandbox;
    return readFile(join(resolve(dir), 'fleet.json'));
  }
  const { registryReader } = await import('../jobs/engine/setup.js');
  return registryReader(loadConfig(['fleetRegistryBackend', 'fleetRegistryPath']))();
}

export function command(): Command {
  return new Command('agent-config')
    .description('print a member’s merged agent runtime configuration (openclaw.json) as JSON')
    .argument('<name>', 'the member, e.g. clawdinator-2')
    .option('--registry <file>', 'read the registry from this file')
    .option('--sandbox [dir]', 'read the sandbox’s registry (default ./.sandbox)')
    .action(async (name: string, opts: { registry?: string; sandbox?: string | true }) => {
      const { fleet, paths } = fleetAgentSettings();
      const registry = await readRegistry(opts);
      const entry = registry[name];
      if (entry === undefined) throw new UsageError(`${name} is not in the fleet registry`);
      const merged = mergeAgentConfig({ name, override: entry.agent, fleet, paths });
      // The overrides were checked one by one; together they must still hold the rules.
      const problem = agentConfigProblem(merged, { merged: true });
      if (problem !== null) throw new ConfigError(`agent-config: ${name}: ${problem}`);
      process.stdout.write(`${JSON.stringify(merged, null, 2)}\n`);
    });
}
