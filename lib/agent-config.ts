// The agent runtime's configuration (openclaw's openclaw.json) as data: the original's
// defaults (its nix/hosts/clawdinator-common.nix), deep-merged with the fleet's settings
// (lib/config.ts: CLAWDINATOR_AGENT_*) and then with the member's own `agent` entry in the
// fleet registry (infra/registry.ts). There is no per-host .nix file: `clawdinator
// agent-config <name>` prints the merged result, and nix/agent.nix runs that same command at
// build time to make the host's /etc/openclaw/openclaw.json.
//
// Merge order, later wins: defaults (built from the typed values: member over role over
// fleet) ← the fleet's raw CLAWDINATOR_AGENT_CONFIG ← the member's raw `agent.config`.
// Objects merge key by key; arrays, scalars and null replace (as the original's
// lib.recursiveUpdate did).
//
// Two rules no override may break, checked where an override is read (registry parse,
// settings) and on the merged result: Discord messages interrupt a running reply
// (`messages.queue.byChannel.discord = "interrupt"`: the original's CLAUDE.md marks it
// CRITICAL, `queue` makes the bot look unresponsive, and openclaw's default for Discord is
// `queue`), and DMs stay off. The gateway also stays on loopback.
//
// Secrets appear as file paths only (openclaw SecretRefs of `file` providers): the agent's
// Discord token, the gateway's auth token. The model keys are not here at all: the runtime
// talks to the local model proxy (jobs/proxy/) with a placeholder key.
//
// No imports from lib/config.ts (which imports this file for its settings' schemas).
import { z } from 'zod';

export const snowflake = z.string().regex(/^\d{17,20}$/, 'a Discord id (17 to 20 digits)');
export const modelRef = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,40}\/[A-Za-z0-9._:-]{1,100}$/, 'a model like anthropic/claude-opus-4-6');
export const thinkingLevel = z.enum(['off', 'minimal', 'low', 'medium', 'high']);
export const AGENT_ROLES = ['coder', 'translator'] as const;

/** What the gateway, the runtime and seed-workspace agree the placeholder model key is. */
export const PROXY_PLACEHOLDER_KEY = 'clawdinator-model-proxy';
/** openclaw's gateway port (the original's `openclaw gateway --port 18789`). */
export const RUNTIME_GATEWAY_PORT = 18789;
/** The model providers the proxy serves, with the path openclaw's adapter appends to the base URL. */
export const PROXY_PROVIDERS = {
  anthropic: { api: 'anthropic-messages', basePath: '/anthropic' },
  openai: { api: 'openai-responses', basePath: '/openai/v1' },
} as const;
export type ProxyProvider = keyof typeof PROXY_PROVIDERS;

/** A raw openclaw config fragment; checked by `agentConfigProblem`. */
export const rawAgentConfig = z.record(z.string(), z.unknown());
export type RawAgentConfig = Record<string, unknown>;

/**
 * A member's `agent` entry in the registry. Typed fields cover what members differ in (the
 * original's translation-only member: its channels, model and role); `config` is any other
 * openclaw setting, merged last.
 */
export const agentOverrideSchema = z
  .object({
    role: z.enum(AGENT_ROLES).optional(),
    guildId: snowflake.optional(),
    channels: z.array(snowflake).max(50).optional(),
    model: z
      .object({ primary: modelRef, fallbacks: z.array(modelRef).max(5).optional() })
      .strict()
      .optional(),
    thinking: thinkingLevel.optional(),
    maxConcurrent: z.number().int().min(1).max(16).optional(),
    config: rawAgentConfig.optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    const problem = o.config === undefined ? null : agentConfigProblem(o.config);
    if (problem !== null) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['config'], message: problem });
  });
export type AgentOverride = z.output<typeof agentOverrideSchema>;

/** The fleet-wide settings (lib/config.ts CLAWDINATOR_AGENT_*, CLAWDINATOR_MODEL_PROXY_PORT). */
export interface AgentFleetSettings {
  guildId?: string;
  channelIds: string[];
  model: string;
  fallbackModels: string[];
  thinking: z.output<typeof thinkingLevel>;
  maxConcurrent: number;
  /** Raw openclaw config for every member, merged over the defaults. */
  config: RawAgentConfig;
  modelProxyPort: number;
  /** Providers whose key the agent holds in a file (the runtime cannot reach them through the proxy). */
  directKeys: Record<string, string>;
}

/** Where things are on a host (nix/units.json paths; the settings' defaults are the host's). */
export interface AgentPaths {
  workspaceDir: string;
  /** The agent's secrets (root-owned dir, files 0400 for the agent): its Discord token. */
  agentSecretsDir: string;
  /** The runtime's own state: logs, the cron store, the gateway's auth token. */
  agentStateDir: string;
}

/** The file the bootstrap writes a direct (non-proxied) model key of `provider` to, in the agent's secrets dir. */
export function directKeyFile(provider: string): string {
  return `model-key-${provider}`;
}

// ── the rules ────────────────────────────────────────────────────────────────────────────

type Lookup = { kind: 'absent' } | { kind: 'value'; value: unknown } | { kind: 'replaced'; at: string };

function lookup(config: RawAgentConfig, path: string[]): Lookup {
  let here: unknown = config;
  for (const [i, key] of path.entries()) {
    if (!isPlainObject(here)) return { kind: 'replaced', at: path.slice(0, i).join('.') };
    if (!(key in here)) return { kind: 'absent' };
    here = here[key];
  }
  return { kind: 'value', value: here };
}

interface Rule {
  path: string[];
  ok: (value: unknown) => boolean;
  /** Whether the merged configuration must carry the key (defaults set it). */
  required: boolean;
  says: string;
}

const INTERRUPT_RULE =
  'must stay "interrupt" (queue mode makes the Discord bot look unresponsive; the original marks this CRITICAL)';

function rulesFor(config: RawAgentConfig): Rule[] {
  const rules: Rule[] = [
    {
      path: ['messages', 'queue', 'byChannel', 'discord'],
      ok: (v) => v === 'interrupt',
      required: true,
      says: INTERRUPT_RULE,
    },
    {
      path: ['channels', 'discord', 'dm', 'enabled'],
      ok: (v) => v === false,
      required: true,
      says: 'must stay false (DMs stay off)',
    },
    {
      path: ['channels', 'discord', 'dmPolicy'],
      ok: (v) => v === 'disabled',
      required: false,
      says: 'must stay "disabled" (DMs stay off)',
    },
    { path: ['gateway', 'bind'], ok: (v) => v === 'loopback', required: true, says: 'must stay "loopback"' },
  ];
  // Extra Discord accounts of one bot token carry their own DM settings.
  const accounts = lookup(config, ['channels', 'discord', 'accounts']);
  if (accounts.kind === 'value' && isPlainObject(accounts.value)) {
    for (const id of Object.keys(accounts.value)) {
      const at = ['channels', 'discord', 'accounts', id];
      rules.push(
        {
          path: [...at, 'dm', 'enabled'],
          ok: (v) => v === false,
          required: false,
          says: 'must stay false (DMs stay off)',
        },
        {
          path: [...at, 'dmPolicy'],
          ok: (v) => v === 'disabled',
          required: false,
          says: 'must stay "disabled" (DMs stay off)',
        },
      );
    }
  }
  return rules;
}

/**
 * What is wrong with an openclaw config (an override, or with `merged` the final result) in
 * one line, or null. An override may leave a rule's key out; the merged result must carry it.
 */
export function agentConfigProblem(config: RawAgentConfig, options: { merged?: boolean } = {}): string | null {
  for (const rule of rulesFor(config)) {
    const found = lookup(config, rule.path);
    const name = rule.path.join('.');
    if (found.kind === 'replaced') return `${found.at} replaces what holds ${name}, which ${rule.says}`;
    if (found.kind === 'absent') {
      if (options.merged && rule.required) return `${name} is missing: it ${rule.says}`;
      continue;
    }
    if (!rule.ok(found.value)) return `${name} ${rule.says}`;
  }
  return null;
}

// ── the merge ────────────────────────────────────────────────────────────────────────────

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `over` merged into `base`: objects key by key, everything else replaced. Neither is changed. */
export function deepMerge(base: RawAgentConfig, over: RawAgentConfig): RawAgentConfig {
  const out: RawAgentConfig = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : clone(value);
  }
  return out;
}

function clone(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clone);
  if (isPlainObject(value)) return deepMerge({}, value);
  return value;
}

/** Aliases the original gave its models (the chat's `/model Opus`). */
const MODEL_ALIASES: Record<string, string> = {
  'anthropic/claude-opus-4-6': 'Opus',
  'openai/gpt-5.2-codex': 'Codex',
  'openai/gpt-5.2': 'gpt',
};

/** The original's translation-only member (clawdinator-babelfish), as a role any member can take. */
const TRANSLATOR_PROMPT = [
  'You are {NAME}. Your only task is translation between Chinese and English for this channel.',
  '',
  'Rules:',
  '- Translate only. Do not answer questions, do not take actions, do not follow requests beyond translation.',
  '- Translate only the newest user message. Ignore context blocks such as "[Thread starter - for context]", "[Replied message - for context]" and lines that are only bracketed tags like [message_id: ...].',
  '- If a line looks like "[Discord ...] username: message", translate only the message after the final ": ".',
  '- If the message is mostly Chinese, reply in English only. If it is mostly English, reply in Chinese only.',
  '- If mixed, reply with both: "EN: ..." and "中文: ...".',
  '- Preserve tone, emojis, formatting, mentions and names.',
  '- For images, translate the extracted text; if there is none, reply "(no translatable text detected)" in the target language.',
].join('\n');

const ROLE_DEFAULTS: Record<
  (typeof AGENT_ROLES)[number],
  { model?: string; fallbacks?: string[]; thinking?: string; maxConcurrent?: number }
> = {
  coder: {},
  translator: { model: 'openai/gpt-5.2', fallbacks: [], thinking: 'medium', maxConcurrent: 2 },
};

export interface MergeInput {
  name: string;
  override?: AgentOverride;
  fleet: AgentFleetSettings;
  paths: AgentPaths;
}

/** The member's merged runtime configuration: see the file comment. Throws nothing; check the result. */
export function mergeAgentConfig(input: MergeInput): RawAgentConfig {
  const { name, fleet, paths } = input;
  const o = input.override ?? {};
  const role = o.role ?? 'coder';
  const roleDefaults = ROLE_DEFAULTS[role];
  const primary = o.model?.primary ?? roleDefaults.model ?? fleet.model;
  const fallbacks = o.model?.fallbacks ?? (o.model ? [] : (roleDefaults.fallbacks ?? fleet.fallbackModels));
  const thinking = o.thinking ?? roleDefaults.thinking ?? fleet.thinking;
  const maxConcurrent = o.maxConcurrent ?? roleDefaults.maxConcurrent ?? fleet.maxConcurrent;
  const guildId = o.guildId ?? fleet.guildId;
  const channelIds = o.channels ?? fleet.channelIds;
  const identity = name.toUpperCase();
  const translator = role === 'translator';

  const models: Record<string, unknown> = {};
  for (const id of [primary, ...fallbacks]) models[id] = MODEL_ALIASES[id] ? { alias: MODEL_ALIASES[id] } : {};

  const channel = translator
    ? {
        allow: true,
        requireMention: false,
        includeThreadStarter: false,
        users: ['*'],
        skills: [],
        systemPrompt: TRANSLATOR_PROMPT.replace('{NAME}', identity),
      }
    : { allow: true, requireMention: true, users: ['*'] };
  const guilds: Record<string, unknown> =
    guildId === undefined
      ? {}
      : {
          [guildId]: {
            requireMention: !translator,
            channels: Object.fromEntries(channelIds.map((id) => [id, channel])),
          },
        };

  const proxy = `http://127.0.0.1:${fleet.modelProxyPort}`;
  const providers: Record<string, unknown> = {};
  for (const [id, p] of Object.entries(PROXY_PROVIDERS)) {
    providers[id] = { baseUrl: `${proxy}${p.basePath}`, api: p.api, apiKey: PROXY_PLACEHOLDER_KEY };
  }
  const secretProviders: Record<string, unknown> = {
    clawdinator_discord: { source: 'file', path: `${paths.agentSecretsDir}/discord-token`, mode: 'singleValue' },
    clawdinator_gateway: { source: 'file', path: gatewayTokenPath(paths), mode: 'singleValue' },
  };
  // The fallback for a provider the runtime cannot reach through the proxy: its key in a file
  // only the agent reads (the bootstrap installs it; see README).
  for (const provider of Object.keys(fleet.directKeys).sort()) {
    const ref = `clawdinator_key_${provider.replaceAll('-', '_')}`;
    secretProviders[ref] = {
      source: 'file',
      path: `${paths.agentSecretsDir}/${directKeyFile(provider)}`,
      mode: 'singleValue',
    };
    providers[provider] = { apiKey: { source: 'file', provider: ref, id: 'value' } };
  }

  const defaults: RawAgentConfig = {
    gateway: {
      mode: 'local',
      bind: 'loopback',
      port: RUNTIME_GATEWAY_PORT,
      auth: { mode: 'token', token: { source: 'file', provider: 'clawdinator_gateway', id: 'value' } },
    },
    agents: {
      defaults: {
        workspace: paths.workspaceDir,
        maxConcurrent,
        skipBootstrap: true,
        models,
        model: { primary, fallbacks },
        thinkingDefault: thinking,
        ...(translator ? { envelopeTimestamp: 'off', envelopeElapsed: 'off' } : {}),
      },
      list: [
        {
          id: 'main',
          default: true,
          identity: { name: identity },
          ...(translator ? { tools: { profile: 'minimal', deny: ['*'] } } : {}),
        },
      ],
    },
    logging: { level: 'info', file: `${paths.agentStateDir}/logs/openclaw.log` },
    session: { sendPolicy: { default: 'allow', rules: [] } },
    messages: {
      groupChat: translator ? { mentionPatterns: [], historyLimit: 1 } : { mentionPatterns: [] },
      // openclaw's default for Discord is `queue`: set explicitly (see the file comment).
      queue: { mode: 'interrupt', byChannel: { discord: 'interrupt', webchat: 'queue' } },
    },
    plugins: { slots: { memory: 'none' }, entries: { discord: { enabled: true } } },
    skills: { allowBundled: translator ? [] : ['github', 'clawdhub', 'coding-agent'] },
    cron: { enabled: !translator, store: cronStorePath(paths) },
    channels: {
      discord: {
        enabled: true,
        token: { source: 'file', provider: 'clawdinator_discord', id: 'value' },
        dm: { enabled: false },
        dmPolicy: 'disabled',
        groupPolicy: 'allowlist',
        guilds,
        ...(translator
          ? {
              configWrites: false,
              commands: { native: false, nativeSkills: false },
              historyLimit: 0,
              replyToMode: 'first',
            }
          : {}),
      },
    },
    ...(translator
      ? {
          commands: {
            native: false,
            nativeSkills: false,
            text: false,
            bash: false,
            config: false,
            debug: false,
            restart: false,
            useAccessGroups: true,
          },
          tools: { profile: 'minimal', deny: ['*'] },
        }
      : {}),
    models: { mode: 'merge', providers },
    secrets: { providers: secretProviders },
  };
  return deepMerge(deepMerge(defaults, fleet.config), o.config ?? {});
}

/** The gateway's auth token: made by seed-workspace at the runtime's start, readable by the agent only. */
export function gatewayTokenPath(paths: Pick<AgentPaths, 'agentStateDir'>): string {
  return `${paths.agentStateDir}/gateway-token`;
}

/** openclaw's cron store: seed-workspace puts the hourly heartbeat (SITREP) in it. */
export function cronStorePath(paths: Pick<AgentPaths, 'agentStateDir'>): string {
  return `${paths.agentStateDir}/cron-jobs.json`;
}

/** The original's hourly heartbeat job (clawdinator/cron-jobs.json). */
export const HEARTBEAT_CRON_JOB = {
  id: 'heartbeat',
  name: 'heartbeat',
  enabled: true,
  schedule: { kind: 'cron', expr: '0 * * * *' },
  sessionTarget: 'main',
  wakeMode: 'now',
  payload: {
    kind: 'systemEvent',
    text: 'Read HEARTBEAT.md and follow it: the hourly SITREP (lurk, then triage). Consider outstanding tasks.',
  },
} as const;
