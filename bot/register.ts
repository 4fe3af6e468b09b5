// `register-commands`: upserts this project's slash commands in each configured guild, by
// name. Commands it does not own are left alone (the application may be shared with other
// tools), and nothing is ever deleted. A separate step, never run at gateway start-up.
import { REST, type RESTGetAPIApplicationGuildCommandsResult, Routes } from 'discord.js';

export interface RegisterResult {
  guildId: string;
  created: string[];
  updated: string[];
  unchanged: string[];
  /** Commands in the guild that are not ours: left alone. */
  foreign: string[];
}

const COMPARED_KEYS = ['description', 'options', 'default_member_permissions', 'nsfw'] as const;

/** Drops what Discord omits or defaults (undefined, null, false, empty lists) so equal commands compare equal. */
function normalize(value: unknown): unknown {
  if (isEmpty(value)) return undefined;
  if (Array.isArray(value)) return value.map(normalize);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (isEmpty(v)) continue;
      out[key] = normalize(v);
    }
    return out;
  }
  return value;
}

function isEmpty(v: unknown): boolean {
  return v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0);
}

function differs(ours: Record<string, unknown>, theirs: Record<string, unknown>): boolean {
  return COMPARED_KEYS.some((k) => JSON.stringify(normalize(ours[k])) !== JSON.stringify(normalize(theirs[k])));
}

export async function registerCommands(options: {
  rest: REST;
  appId: string;
  guildIds: string[];
  commands: { name: string; json: Record<string, unknown> }[];
}): Promise<RegisterResult[]> {
  const results: RegisterResult[] = [];
  for (const guildId of options.guildIds) {
    const route = Routes.applicationGuildCommands(options.appId, guildId);
    const existing = (await options.rest.get(route)) as RESTGetAPIApplicationGuildCommandsResult;
    const result: RegisterResult = { guildId, created: [], updated: [], unchanged: [], foreign: [] };
    const ours = new Set(options.commands.map((c) => c.name));
    for (const cmd of options.commands) {
      const found = existing.find((e) => e.name === cmd.name && (e.type ?? 1) === 1);
      if (found === undefined) {
        await options.rest.post(route, { body: cmd.json });
        result.created.push(cmd.name);
      } else if (differs(cmd.json, found as unknown as Record<string, unknown>)) {
        await options.rest.patch(Routes.applicationGuildCommand(options.appId, guildId, found.id), { body: cmd.json });
        result.updated.push(cmd.name);
      } else {
        result.unchanged.push(cmd.name);
      }
    }
    result.foreign = existing.filter((e) => !ours.has(e.name)).map((e) => e.name);
    results.push(result);
  }
  return results;
}

export function createRest(token: string, apiUrl: string): REST {
  return new REST({ api: apiUrl }).setToken(token);
}
