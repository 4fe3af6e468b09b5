// `clawdinator register-commands`: upserts the ops bot's slash commands in the configured
// guilds and prints what it created, updated and left alone.
import { Command } from 'commander';
import { commands } from '../bot/commands/index.js';
import { createRest, registerCommands } from '../bot/register.js';
import { loadConfig, readSecretFile } from '../lib/config.js';

export function command(): Command {
  return new Command('register-commands')
    .description('create or update this project’s slash commands in the configured guilds (never deletes others)')
    .action(async () => {
      const config = loadConfig([
        'discordTokenFile',
        'discordApiUrl',
        'discordAppId',
        'discordGuildIds',
        'instanceTypes',
      ]);
      const token = readSecretFile(config.discordTokenFile, 'CLAWDINATOR_DISCORD_TOKEN_FILE');
      const results = await registerCommands({
        rest: createRest(token, config.discordApiUrl),
        appId: config.discordAppId,
        guildIds: config.discordGuildIds,
        commands: commands.map((c) => {
          const definition = c.definitionFor?.({ instanceTypes: config.instanceTypes }) ?? c.data;
          return { name: definition.name, json: definition.toJSON() as Record<string, unknown> };
        }),
      });
      for (const r of results) {
        const line = (label: string, names: string[]) =>
          names.length > 0 ? `  ${label}: ${names.map((n) => `/${n}`).join(', ')}\n` : '';
        process.stdout.write(
          `guild ${r.guildId}\n${line('created', r.created)}${line('updated', r.updated)}${line('unchanged', r.unchanged)}${line('left alone (not ours)', r.foreign)}`,
        );
      }
    });
}
