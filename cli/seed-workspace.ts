// `clawdinator seed-workspace`: run by the agent runtime's unit before each start, as the
// agent's user (jobs/workspace/seed.ts): the workspace templates without clobbering the agent's
// edits, the tool list appended to TOOLS.md, the runtime's gateway token and cron store.
import { Command } from 'commander';
import { cronStorePath, gatewayTokenPath } from '../lib/agent-config.js';
import { loadConfig } from '../lib/config.js';
import { UsageError } from '../lib/errors.js';

export function command(): Command {
  return new Command('seed-workspace')
    .description('refresh the agent’s workspace from the templates, keeping what the agent changed')
    .action(async () => {
      // Root never works inside the agent's home (its files would become root's, and a link
      // planted there would be followed).
      if (process.getuid?.() === 0) throw new UsageError('seed-workspace runs as the agent’s user, not as root');
      const config = loadConfig([
        'workspaceTemplatesDir',
        'workspaceDir',
        'workspaceManifest',
        'toolsFile',
        'agentStateDir',
      ]);
      const { prepareRuntimeFiles, seedWorkspace } = await import('../jobs/workspace/seed.js');
      const result = await seedWorkspace({
        templates: config.workspaceTemplatesDir,
        workspace: config.workspaceDir,
        manifest: config.workspaceManifest,
        toolsFile: config.toolsFile,
      });
      const kept = Object.entries(result.kept);
      const lines = [
        `workspace ${config.workspaceDir}: ${result.added.length} added, ${result.updated.length} updated, ${result.unchanged.length} unchanged, ${kept.length} kept, ${result.removed.length} removed; TOOLS.md: ${result.toolList === 'appended' ? 'tool list appended' : result.toolList}`,
        ...kept.map(
          ([rel, why]) => `kept ${rel}: ${why} (the current template: ${config.workspaceTemplatesDir}/${rel})`,
        ),
        ...(await prepareRuntimeFiles({
          stateDir: config.agentStateDir,
          gatewayToken: gatewayTokenPath(config),
          cronStore: cronStorePath(config),
        })),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
