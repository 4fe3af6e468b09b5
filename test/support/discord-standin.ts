// A loopback stand-in for Discord's REST API and gateway that the real discord.js 14 `Client`
// logs into (`new Client({ rest: { api: standIn.apiUrl } })`). Tests inject interactions over the
// gateway and assert the REST calls the bot made. It is also the far end of `npm run bench`, so
// everything is event-driven: no sleeps, no polling, one JSON.stringify per dispatch.
// Protocol facts it relies on: /work/shared/discord-stand-in-notes.md.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createDeflate, type Deflate, constants as zlibConstants } from 'node:zlib';
import { type WebSocket, WebSocketServer } from 'ws';

// Numbers from discord-api-types v10, written out so the stand-in depends only on `ws`.
const InteractionType = { ApplicationCommand: 2, MessageComponent: 3, Autocomplete: 4, ModalSubmit: 5 } as const;
const CallbackType = {
  ChannelMessage: 4,
  DeferredChannelMessage: 5,
  DeferredUpdate: 6,
  UpdateMessage: 7,
  AutocompleteResult: 8,
  Modal: 9,
} as const;
const MessageFlag = { Ephemeral: 64, Loading: 128 } as const;
const Intent = { Guilds: 1, GuildMembers: 2 } as const;
const Op = {
  Dispatch: 0,
  Heartbeat: 1,
  Identify: 2,
  Resume: 6,
  Reconnect: 7,
  RequestGuildMembers: 8,
  InvalidSession: 9,
  Hello: 10,
  HeartbeatAck: 11,
} as const;
const ChannelType = { GuildText: 0, DM: 1 } as const;
const ComponentType = { ActionRow: 1, Button: 2, TextInput: 4, Label: 18 } as const;

// ViewChannel | SendMessages | ReadMessageHistory | UseApplicationCommands: an ordinary member.
const DEFAULT_MEMBER_PERMISSIONS = String(1024 + 2048 + 65536 + 2147483648);
// Everything but Administrator, as a bot invited with broad permissions would have.
const BOT_PERMISSIONS = String((1n << 51n) - 1n - 8n);
const HEARTBEAT_INTERVAL_MS = 41_250;
// Bounded so a long bench run does not grow memory; a resume only needs the recent tail.
const RESUME_BACKLOG = 1000;
// Discord checks a nonce's uniqueness "in the past few minutes".
const NONCE_WINDOW_MS = 5 * 60_000;

export interface StandInUser {
  id: string;
  username: string;
}

export interface StandInGuild {
  id: string;
  name?: string;
  channels: { id: string; name?: string; type?: number }[];
  roles: { id: string; name?: string }[];
  members?: { user: StandInUser; roles: string[] }[];
}

export interface UploadedFile {
  /** Form field name, e.g. `files[0]`. */
  name: string;
  filename: string;
  data: Buffer;
}

export interface MultipartBody {
  payload_json: unknown;
  files: UploadedFile[];
}

export interface RestCall {
  seq: number;
  method: string;
  /** Decoded, without the /api/v10 prefix, e.g. /interactions/123/tok/callback. */
  path: string;
  query: Record<string, string>;
  /** Parsed JSON, a MultipartBody for uploads, undefined when empty. */
  body: unknown;
  /** The Authorization header (interaction callbacks and webhooks carry none). */
  auth: string | undefined;
  /** The status the stand-in answered. */
  status: number;
  /** performance.now() when the request arrived (for the bench). */
  receivedAt: number;
}

export interface AttachmentRecord {
  id: string;
  filename: string;
  data: Buffer;
  contentType?: string;
}

export interface MessageRecord {
  id: string;
  channelId: string;
  content: string;
  embeds: unknown[];
  components: unknown[];
  attachments: AttachmentRecord[];
  flags: number;
  /** Emoji the bot reacted with. */
  reactions: string[];
  deleted: boolean;
  timestamp: string;
  editedTimestamp: string | null;
  /** Message type: 0 for channel messages, 20 for interaction responses. */
  type: number;
  /** The application id for interaction responses (sent through the interaction webhook). */
  webhookId: string | null;
}

export interface ApplicationCommandRecord {
  id: string;
  application_id: string;
  guild_id?: string;
  name: string;
  description: string;
  type: number;
  options?: unknown[];
  default_member_permissions: string | null;
  version: string;
  [field: string]: unknown;
}

export interface InteractionCallbackRecord {
  type: number;
  data?: unknown;
}

export interface InteractionResponses {
  callbacks: InteractionCallbackRecord[];
  /** The reply (or, for a component after type 6/7, the message it was on). A follow-up that
   * replaced a deferred "thinking" message is this message, not a follow-up. */
  original?: MessageRecord;
  followUps: MessageRecord[];
}

export interface InjectBase {
  user: StandInUser;
  /** Role ids of the member; stored as the member's roles in the guild. */
  roles?: string[];
  /** Defaults to the guild that has channelId, else the first guild; null means a DM. */
  guildId?: string | null;
  channelId: string;
  /** The member's permissions in the channel (a bitfield string). */
  permissions?: string;
  locale?: string;
  /**
   * Arrives already expired, as one the bot answers after Discord's 3 s: its callback gets
   * 404 (10062 Unknown interaction), a real DiscordAPIError whose URL holds the token.
   */
  expired?: boolean;
}

export interface InjectCommandOptions extends InjectBase {
  name: string;
  /** Raw API option objects, subcommands included; for autocomplete one has `focused: true`. */
  options?: unknown[];
  /** Raw API resolved data, e.g. `{ attachments: { [id]: standIn.attachment(...) } }`. */
  resolved?: unknown;
}

export interface InjectComponentOptions extends InjectBase {
  customId: string;
  /** 2 (button) unless given: 3 string select, 5 user select, 6 role select, ... */
  componentType?: number;
  values?: string[];
  /** The message the component is on; a known message id (a reply, a channel message) is used as is. */
  messageId?: string;
}

export interface InjectModalSubmitOptions extends InjectBase {
  customId: string;
  /** Text input custom id → value. */
  fields: Record<string, string>;
  /** Set when the modal was opened from a component on this message. */
  messageId?: string;
}

export interface InjectedInteraction {
  id: string;
  token: string;
}

export interface DiscordStandInOptions {
  appId?: string;
  botUser?: StandInUser;
  guilds?: StandInGuild[];
  /** The bot token it accepts; others get 401 (REST) or close 4004 (gateway). Any token when unset. */
  token?: string;
}

export interface IdentifyEvent {
  sessionId: string;
  intents: number;
  shard: unknown;
}

// --- internal state ---------------------------------------------------------------------------

interface ChannelState {
  id: string;
  name: string;
  type: number;
  guildId: string | null;
  recipient: StandInUser | null;
  topic: string | null;
  parentId: string | null;
  position: number;
}

interface RoleState {
  id: string;
  name: string;
  position: number;
  permissions: string;
  color: number;
  hoist: boolean;
  mentionable: boolean;
}

interface MemberState {
  user: StandInUser;
  roles: string[];
  nick: string | null;
  joinedAt: string;
}

interface GuildState {
  id: string;
  name: string;
  channels: Map<string, ChannelState>;
  roles: Map<string, RoleState>;
  members: Map<string, MemberState>;
  joinedAt: string;
}

interface InteractionState {
  id: string;
  token: string;
  type: number;
  channelId: string;
  /** The message a component (or a modal opened from one) is on. */
  messageId: string | null;
  callbacks: InteractionCallbackRecord[];
  original?: MessageRecord;
  followUps: MessageRecord[];
  expired: boolean;
}

interface Session {
  id: string;
  seq: number;
  intents: number;
  connection: Connection | null;
  backlog: { seq: number; frame: string }[];
}

interface Connection {
  ws: WebSocket;
  /** Set for `compress=zlib-stream`: one deflate context for the whole connection. */
  deflate: Deflate | null;
  session: Session | null;
}

interface HandlerInput {
  call: RestCall;
  params: Record<string, string>;
  /** The JSON body, or payload_json of a multipart body. */
  payload: Record<string, unknown>;
  rawPayload: unknown;
  files: UploadedFile[];
}

interface Reply {
  status: number;
  body?: unknown;
}

interface Route {
  method: string;
  segments: string[];
  /** Bot-token routes; interaction callbacks and webhooks are sent without Authorization. */
  auth: boolean;
  handle: (input: HandlerInput) => Reply;
}

/** Discord's JSON error, thrown by handlers and answered as is. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly errors?: unknown,
  ) {
    super(message);
  }
}

// Snowflakes that are real (timestamp in the top bits, as discord.js decodes them) and unique
// across every stand-in in the process.
const DISCORD_EPOCH = 1420070400000n;
let lastSnowflake = 0n;
function snowflake(): string {
  const now = (BigInt(Date.now()) - DISCORD_EPOCH) << 22n;
  lastSnowflake = now > lastSnowflake ? now : lastSnowflake + 1n;
  return lastSnowflake.toString();
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function apiUser(user: StandInUser, bot = false): Record<string, unknown> {
  return {
    id: user.id,
    username: user.username,
    discriminator: '0',
    global_name: null,
    avatar: null,
    public_flags: 0,
    ...(bot ? { bot: true } : {}),
  };
}

const COMMAND_NAME = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;

/** Discord's 400 Invalid Form Body checks for a command, the part a wrong definition trips. */
function commandError(body: Record<string, unknown>, path = ''): string | null {
  const name = body.name;
  const chatInput = body.type === undefined || body.type === 1 || path !== '';
  if (typeof name !== 'string' || !COMMAND_NAME.test(name) || (chatInput && name !== name.toLowerCase())) {
    return `${path}name: invalid command name ${JSON.stringify(name)}`;
  }
  if (chatInput) {
    const d = body.description;
    if (typeof d !== 'string' || d.length < 1 || d.length > 100) {
      return `${path}description: must be 1-100 characters`;
    }
  }
  if (body.options !== undefined) {
    if (!Array.isArray(body.options) || body.options.length > 25) return `${path}options: at most 25`;
    for (const [i, option] of body.options.entries()) {
      const error = commandError(record(option), `${path}options.${i}.`);
      if (error !== null) return error;
    }
  }
  return null;
}

export class DiscordStandIn {
  readonly appId: string;
  readonly botUser: StandInUser;
  readonly token: string | undefined;
  readonly calls: RestCall[] = [];
  readonly unknownRoutes: RestCall[] = [];
  /** Emits 'call' (RestCall), 'identify' (IdentifyEvent), 'resume' ({ sessionId }). */
  readonly events = new EventEmitter();

  private server: Server | null = null;
  private wss: WebSocketServer | null = null;
  private port = 0;
  private readonly connections = new Set<Connection>();
  private readonly sessions = new Map<string, Session>();
  private readonly routes: Route[] = [];

  private readonly guilds = new Map<string, GuildState>();
  private readonly channels = new Map<string, ChannelState>();
  private readonly dmChannels = new Map<string, ChannelState>();
  private readonly users = new Map<string, StandInUser>();
  private readonly commands = new Map<string, ApplicationCommandRecord[]>();
  /** Stable ids for commands injected without being registered. */
  private readonly unregisteredCommandIds = new Map<string, string>();
  /** Modal custom id → how the bot laid it out, from its type 9 callbacks. */
  private readonly modalLayouts = new Map<string, 'label' | 'row'>();
  private readonly interactions = new Map<string, InteractionState>();
  private readonly interactionsByToken = new Map<string, InteractionState>();
  private readonly messages = new Map<string, MessageRecord>();
  private readonly messagesByChannel = new Map<string, MessageRecord[]>();
  private readonly attachmentData = new Map<string, AttachmentRecord>();
  /** `channel:author:nonce` → the message created with it, for `enforce_nonce`. */
  private readonly nonces = new Map<string, { messageId: string; at: number }>();

  constructor(options: DiscordStandInOptions = {}) {
    this.appId = options.appId ?? snowflake();
    // A bot user's id is its application's id on Discord.
    this.botUser = options.botUser ?? { id: this.appId, username: 'standin-bot' };
    this.token = options.token;
    this.users.set(this.botUser.id, this.botUser);
    // Many tests wait for calls at once (the bench: 200).
    this.events.setMaxListeners(0);
    const joinedAt = new Date().toISOString();
    for (const g of options.guilds ?? []) {
      const guild: GuildState = {
        id: g.id,
        name: g.name ?? `guild-${g.id}`,
        channels: new Map(),
        roles: new Map(),
        members: new Map(),
        joinedAt,
      };
      // @everyone has the guild's id; discord.js expects it in every guild.
      guild.roles.set(g.id, this.makeRole(g.id, '@everyone', 0, DEFAULT_MEMBER_PERMISSIONS));
      g.roles.forEach((r, i) => {
        guild.roles.set(r.id, this.makeRole(r.id, r.name ?? `role-${r.id}`, i + 1, '0'));
      });
      g.channels.forEach((c, i) => {
        this.addChannel(guild, { id: c.id, name: c.name ?? `channel-${c.id}`, type: c.type ?? 0, position: i });
      });
      guild.members.set(this.botUser.id, { user: this.botUser, roles: [], nick: null, joinedAt });
      for (const m of g.members ?? []) {
        this.users.set(m.user.id, m.user);
        guild.members.set(m.user.id, { user: m.user, roles: [...m.roles], nick: null, joinedAt });
      }
      this.guilds.set(guild.id, guild);
    }
    this.defineRoutes();
  }

  // --- lifecycle ------------------------------------------------------------------------------

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.handleHttp(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: String(error), code: 0 }));
      });
    });
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => {
      if (new URL(req.url ?? '/', 'http://x').pathname !== '/gateway') {
        socket.destroy();
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.wss = wss;
    this.port = (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const c of this.connections) c.ws.terminate();
    this.connections.clear();
    this.sessions.clear();
    this.wss?.close();
    const server = this.server;
    this.server = null;
    this.wss = null;
    if (server === null) return;
    // The REST client keeps connections alive; close() alone would wait for them.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  get apiUrl(): string {
    return `${this.httpBase}/api`;
  }

  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.requirePort()}/gateway`;
  }

  /** Gateway sessions with an open connection. */
  get connectedSessions(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.connection !== null) n++;
    return n;
  }

  private get httpBase(): string {
    return `http://127.0.0.1:${this.requirePort()}`;
  }

  private requirePort(): number {
    if (this.port === 0) throw new Error('DiscordStandIn: call start() first');
    return this.port;
  }

  // --- store inspection -----------------------------------------------------------------------

  get globalCommands(): ApplicationCommandRecord[] {
    return this.commandList(null);
  }

  guildCommands(guildId: string): ApplicationCommandRecord[] {
    return this.commandList(guildId);
  }

  seedCommand(
    scope: 'global' | string,
    cmd: { name: string; description: string; options?: unknown[]; [field: string]: unknown },
  ): ApplicationCommandRecord {
    const guildId = scope === 'global' ? null : scope;
    const list = this.commandList(guildId);
    const created = this.makeCommand(cmd, guildId, undefined);
    list.push(created);
    return created;
  }

  responsesFor(interactionId: string): InteractionResponses {
    const it = this.interactions.get(interactionId);
    if (it === undefined) throw new Error(`DiscordStandIn: no interaction ${interactionId}`);
    return { callbacks: it.callbacks, original: it.original, followUps: it.followUps };
  }

  /** Messages posted with POST /channels/:id/messages (interaction replies are in responsesFor). */
  channelMessages(channelId: string): MessageRecord[] {
    return this.messagesByChannel.get(channelId) ?? [];
  }

  message(id: string): MessageRecord | undefined {
    return this.messages.get(id);
  }

  /** Roles the member has now in the stand-in's guild (after the bot's role changes). */
  memberRoles(guildId: string, userId: string): string[] | undefined {
    return this.guilds.get(guildId)?.members.get(userId)?.roles;
  }

  guildChannels(guildId: string): { id: string; name: string; type: number }[] {
    return [...(this.guilds.get(guildId)?.channels.values() ?? [])].map((c) => ({
      id: c.id,
      name: c.name,
      type: c.type,
    }));
  }

  guildRoles(guildId: string): { id: string; name: string }[] {
    return [...(this.guilds.get(guildId)?.roles.values() ?? [])].map((r) => ({ id: r.id, name: r.name }));
  }

  /** Resolves on an existing or future call matching the predicate. */
  waitForCall(predicate: (c: RestCall) => boolean, timeoutMs = 5000): Promise<RestCall> {
    const existing = this.calls.find(predicate);
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const onCall = (c: RestCall) => {
        if (!predicate(c)) return;
        clearTimeout(timer);
        this.events.off('call', onCall);
        resolve(c);
      };
      const timer = setTimeout(() => {
        this.events.off('call', onCall);
        const seen = this.calls.map((c) => `${c.method} ${c.path} ${c.status}`).join('\n  ');
        reject(new Error(`DiscordStandIn: no matching REST call within ${timeoutMs} ms; calls:\n  ${seen}`));
      }, timeoutMs);
      this.events.on('call', onCall);
    });
  }

  // --- test controls ---------------------------------------------------------------------------

  /** Registers a file as Discord would host it (served by the stand-in) and returns the API
   * attachment object, for `resolved.attachments` of an injected command. */
  attachment(filename: string, data: Buffer, contentType = 'application/octet-stream'): Record<string, unknown> {
    const att: AttachmentRecord = { id: snowflake(), filename, data, contentType };
    this.attachmentData.set(att.id, att);
    return this.apiAttachment(att);
  }

  /** As after the 15-minute token lifetime: webhook calls with its token get 401 (50027). */
  expireInteraction(interactionId: string): void {
    const it = this.interactions.get(interactionId);
    if (it === undefined) throw new Error(`DiscordStandIn: no interaction ${interactionId}`);
    it.expired = true;
  }

  /** Closes every gateway connection as Discord does on trouble; sessions stay resumable, and
   * what is dispatched meanwhile is replayed on RESUME. */
  dropConnections(code = 4000): void {
    for (const c of this.connections) c.ws.close(code, 'stand-in dropped the connection');
  }

  /** Sends op 7 (reconnect) to every connection; clients close and resume. */
  requestReconnect(): void {
    for (const c of this.connections)
      this.sendFrame(c, JSON.stringify({ op: Op.Reconnect, d: null, s: null, t: null }));
  }

  /** Dispatches any gateway event to every session (filtered by intent when given). */
  dispatchEvent(t: string, d: unknown, intent?: number): void {
    const data = JSON.stringify(d);
    for (const s of this.sessions.values()) {
      if (intent === undefined || (s.intents & intent) !== 0) this.dispatch(s, t, data);
    }
  }

  // --- interaction injection -------------------------------------------------------------------

  injectCommand(opts: InjectCommandOptions): InjectedInteraction {
    return this.inject(InteractionType.ApplicationCommand, opts, this.commandData(opts), {});
  }

  injectAutocomplete(opts: InjectCommandOptions): InjectedInteraction {
    return this.inject(InteractionType.Autocomplete, opts, this.commandData(opts), {});
  }

  injectButton(opts: Omit<InjectComponentOptions, 'componentType' | 'values'>): InjectedInteraction {
    return this.injectComponent({ ...opts, componentType: ComponentType.Button });
  }

  injectComponent(opts: InjectComponentOptions): InjectedInteraction {
    const componentType = opts.componentType ?? ComponentType.Button;
    const data: Record<string, unknown> = { custom_id: opts.customId, component_type: componentType };
    if (componentType !== ComponentType.Button) data.values = opts.values ?? [];
    const message = this.componentMessage(opts.channelId, opts.messageId);
    return this.inject(InteractionType.MessageComponent, opts, data, { message: this.apiMessage(message) }, message.id);
  }

  injectModalSubmit(opts: InjectModalSubmitOptions): InjectedInteraction {
    // Discord answers in the modal's own layout: labels (type 18) for a modal built with labels,
    // action rows for a classic one (and for a modal the bot never showed).
    const labels = this.modalLayouts.get(opts.customId) === 'label';
    const components = Object.entries(opts.fields).map(([customId, value], i) => {
      // Component ids number the layout depth-first from 1, as Discord assigns them.
      const id = 2 * i + 1;
      const input = { type: ComponentType.TextInput, id: id + 1, custom_id: customId, value };
      return labels
        ? { type: ComponentType.Label, id, component: input }
        : { type: ComponentType.ActionRow, id, components: [input] };
    });
    const data = { custom_id: opts.customId, components };
    if (opts.messageId === undefined) return this.inject(InteractionType.ModalSubmit, opts, data, {});
    const message = this.componentMessage(opts.channelId, opts.messageId);
    return this.inject(InteractionType.ModalSubmit, opts, data, { message: this.apiMessage(message) }, message.id);
  }

  private commandData(opts: InjectCommandOptions): Record<string, unknown> {
    const guildId = this.resolveGuildId(opts);
    const registered =
      (guildId !== null ? this.commandList(guildId).find((c) => c.name === opts.name && c.type === 1) : undefined) ??
      this.commandList(null).find((c) => c.name === opts.name && c.type === 1);
    let id = registered?.id ?? this.unregisteredCommandIds.get(opts.name);
    if (id === undefined) {
      id = snowflake();
      this.unregisteredCommandIds.set(opts.name, id);
    }
    return {
      id,
      name: opts.name,
      type: 1,
      options: opts.options ?? [],
      resolved: opts.resolved ?? {},
      ...(registered?.guild_id !== undefined ? { guild_id: registered.guild_id } : {}),
    };
  }

  private resolveGuildId(opts: InjectBase): string | null {
    if (opts.guildId === null) return null;
    if (opts.guildId !== undefined) return opts.guildId;
    const byChannel = this.channels.get(opts.channelId)?.guildId;
    if (byChannel) return byChannel;
    const first = this.guilds.keys().next();
    if (first.done) throw new Error('DiscordStandIn: no guild configured; pass guildId: null for a DM');
    return first.value;
  }

  private inject(
    type: number,
    opts: InjectBase,
    data: Record<string, unknown>,
    extra: Record<string, unknown>,
    messageId: string | null = null,
  ): InjectedInteraction {
    if (this.sessions.size === 0) throw new Error('DiscordStandIn: no gateway session to deliver the interaction to');
    const id = snowflake();
    const token = randomBytes(36).toString('base64url');
    this.users.set(opts.user.id, opts.user);
    const guildId = this.resolveGuildId(opts);
    const payload: Record<string, unknown> = {
      id,
      application_id: this.appId,
      type,
      data,
      token,
      version: 1,
      app_permissions: BOT_PERMISSIONS,
      locale: opts.locale ?? 'en-US',
      entitlements: [],
      attachment_size_limit: 10 * 1024 * 1024,
      channel_id: opts.channelId,
      ...extra,
    };
    if (guildId === null) {
      const channel = this.dmChannelFor(opts.user, opts.channelId);
      payload.channel = this.apiDmChannel(channel);
      payload.user = apiUser(opts.user);
      // A guild-installed app in its bot's DM: the owner id is "0", context BOT_DM.
      payload.authorizing_integration_owners = { '0': '0' };
      payload.context = 1;
    } else {
      const guild = this.guilds.get(guildId);
      if (guild === undefined) throw new Error(`DiscordStandIn: unknown guild ${guildId}`);
      const channel = guild.channels.get(opts.channelId);
      if (channel === undefined)
        throw new Error(`DiscordStandIn: channel ${opts.channelId} is not in guild ${guildId}`);
      const member = guild.members.get(opts.user.id);
      const roles = opts.roles ?? member?.roles ?? [];
      const joinedAt = member?.joinedAt ?? new Date().toISOString();
      guild.members.set(opts.user.id, { user: opts.user, roles: [...roles], nick: member?.nick ?? null, joinedAt });
      payload.guild = { id: guildId, locale: 'en-US', features: [] };
      payload.guild_id = guildId;
      payload.guild_locale = 'en-US';
      payload.channel = { ...this.apiChannel(channel), permissions: opts.permissions ?? DEFAULT_MEMBER_PERMISSIONS };
      payload.member = {
        ...this.apiMember(guild.members.get(opts.user.id) as MemberState),
        permissions: opts.permissions ?? DEFAULT_MEMBER_PERMISSIONS,
      };
      payload.authorizing_integration_owners = { '0': guildId };
      payload.context = 0;
    }
    const state: InteractionState = {
      id,
      token,
      type,
      channelId: opts.channelId,
      messageId,
      callbacks: [],
      followUps: [],
      expired: opts.expired ?? false,
    };
    this.interactions.set(id, state);
    this.interactionsByToken.set(token, state);
    this.dispatchEvent('INTERACTION_CREATE', payload);
    return { id, token };
  }

  /** The message a component is on: a known one, or a bot message made up for the test. */
  private componentMessage(channelId: string, messageId: string | undefined): MessageRecord {
    const known = messageId !== undefined ? this.messages.get(messageId) : undefined;
    if (known !== undefined) return known;
    const made = this.newMessage(channelId, {}, [], { type: 0, webhook: false });
    if (messageId !== undefined) {
      this.messages.delete(made.id);
      made.id = messageId;
      this.messages.set(messageId, made);
    }
    return made;
  }

  // --- gateway ---------------------------------------------------------------------------------

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const params = new URL(req.url ?? '/', 'http://x').searchParams;
    const conn: Connection = { ws, deflate: null, session: null };
    if (params.get('compress') === 'zlib-stream') {
      // zlib-stream (used when zlib-sync is installed): one deflate context for the connection,
      // each payload flushed with Z_SYNC_FLUSH; chunks go out in order as binary frames.
      const deflate = createDeflate();
      deflate.on('data', (chunk: Buffer) => {
        if (ws.readyState === ws.OPEN) ws.send(chunk);
      });
      conn.deflate = deflate;
    }
    this.connections.add(conn);
    ws.on('message', (raw, isBinary) => {
      if (isBinary) return; // clients send JSON text with encoding=json
      let payload: { op?: number; d?: unknown };
      try {
        payload = JSON.parse(raw.toString()) as { op?: number; d?: unknown };
      } catch {
        ws.close(4002, 'Error while decoding payload.');
        return;
      }
      this.onGatewayPayload(conn, payload.op, record(payload.d));
    });
    ws.on('close', (code) => {
      this.connections.delete(conn);
      conn.deflate?.destroy();
      const session = conn.session;
      if (session === null || session.connection !== conn) return;
      session.connection = null;
      // A client closing with 1000/1001 ends its session (client.destroy()); any other code
      // (4200 from a resuming client, ours from dropConnections) leaves it resumable.
      if (code === 1000 || code === 1001) this.sessions.delete(session.id);
    });
    this.sendFrame(
      conn,
      JSON.stringify({ op: Op.Hello, d: { heartbeat_interval: HEARTBEAT_INTERVAL_MS }, s: null, t: null }),
    );
  }

  private onGatewayPayload(conn: Connection, op: number | undefined, d: Record<string, unknown>): void {
    switch (op) {
      case Op.Heartbeat:
        this.sendFrame(conn, JSON.stringify({ op: Op.HeartbeatAck, d: null, s: null, t: null }));
        return;
      case Op.Identify:
        this.identify(conn, d);
        return;
      case Op.Resume:
        this.resume(conn, d);
        return;
      case Op.RequestGuildMembers:
        this.requestGuildMembers(conn, d);
        return;
      default:
        // Presence (3) and voice state (4) updates, and anything else: nothing to answer.
        return;
    }
  }

  private acceptsToken(token: unknown): boolean {
    return typeof token === 'string' && token !== '' && (this.token === undefined || token === this.token);
  }

  private identify(conn: Connection, d: Record<string, unknown>): void {
    if (!this.acceptsToken(d.token)) {
      conn.ws.close(4004, 'Authentication failed.');
      return;
    }
    const session: Session = {
      id: randomBytes(16).toString('hex'),
      seq: 0,
      intents: typeof d.intents === 'number' ? d.intents : 0,
      connection: conn,
      backlog: [],
    };
    this.sessions.set(session.id, session);
    conn.session = session;
    this.dispatch(
      session,
      'READY',
      JSON.stringify({
        v: 10,
        user: { ...apiUser(this.botUser, true), verified: true, mfa_enabled: false, flags: 0 },
        guilds: [...this.guilds.keys()].map((id) => ({ id, unavailable: true })),
        session_id: session.id,
        session_type: 'normal',
        resume_gateway_url: this.gatewayUrl,
        shard: d.shard ?? [0, 1],
        application: { id: this.appId, flags: 0 },
        private_channels: [],
        relationships: [],
        presences: [],
        guild_join_requests: [],
        geo_ordered_rtc_regions: [],
        user_settings: {},
        auth: {},
        _trace: ['discord-standin'],
      }),
    );
    // Every guild in READY needs its GUILD_CREATE, or clientReady waits for waitGuildTimeout.
    for (const guild of this.guilds.values()) {
      this.dispatch(session, 'GUILD_CREATE', JSON.stringify(this.apiGuildCreate(guild, session.intents)));
    }
    const event: IdentifyEvent = { sessionId: session.id, intents: session.intents, shard: d.shard };
    this.events.emit('identify', event);
  }

  private resume(conn: Connection, d: Record<string, unknown>): void {
    const session = typeof d.session_id === 'string' ? this.sessions.get(d.session_id) : undefined;
    if (session === undefined || !this.acceptsToken(d.token)) {
      // d: false → not resumable; the client identifies anew.
      this.sendFrame(conn, JSON.stringify({ op: Op.InvalidSession, d: false, s: null, t: null }));
      return;
    }
    const old = session.connection;
    if (old !== null && old !== conn) {
      old.session = null;
      old.ws.close(4000, 'resumed elsewhere');
    }
    session.connection = conn;
    conn.session = session;
    const after = typeof d.seq === 'number' ? d.seq : 0;
    for (const entry of session.backlog) if (entry.seq > after) this.sendFrame(conn, entry.frame);
    this.dispatch(session, 'RESUMED', JSON.stringify({ _trace: ['discord-standin'] }));
    this.events.emit('resume', { sessionId: session.id });
  }

  private requestGuildMembers(conn: Connection, d: Record<string, unknown>): void {
    const session = conn.session;
    const guildIds = Array.isArray(d.guild_id) ? d.guild_id : [d.guild_id];
    if (session === null) return;
    for (const guildId of guildIds) {
      const guild = typeof guildId === 'string' ? this.guilds.get(guildId) : undefined;
      if (guild === undefined) continue;
      const userIds = Array.isArray(d.user_ids) ? d.user_ids : typeof d.user_ids === 'string' ? [d.user_ids] : null;
      const query = typeof d.query === 'string' ? d.query.toLowerCase() : '';
      const limit = typeof d.limit === 'number' && d.limit > 0 ? d.limit : Number.POSITIVE_INFINITY;
      let members = [...guild.members.values()];
      if (userIds !== null) members = members.filter((m) => userIds.includes(m.user.id));
      else members = members.filter((m) => m.user.username.toLowerCase().startsWith(query)).slice(0, limit);
      const notFound = userIds === null ? [] : userIds.filter((id) => !guild.members.has(String(id)));
      this.dispatch(
        session,
        'GUILD_MEMBERS_CHUNK',
        JSON.stringify({
          guild_id: guild.id,
          members: members.map((m) => this.apiMember(m)),
          chunk_index: 0,
          chunk_count: 1,
          not_found: notFound,
          ...(d.nonce !== undefined ? { nonce: d.nonce } : {}),
        }),
      );
    }
  }

  /** `data` is already JSON: an interaction broadcast to N sessions is stringified once. */
  private dispatch(session: Session, t: string, data: string): void {
    session.seq++;
    const frame = `{"op":0,"s":${session.seq},"t":"${t}","d":${data}}`;
    session.backlog.push({ seq: session.seq, frame });
    if (session.backlog.length > RESUME_BACKLOG) session.backlog.shift();
    if (session.connection !== null) this.sendFrame(session.connection, frame);
  }

  private sendFrame(conn: Connection, frame: string): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    if (conn.deflate !== null) {
      conn.deflate.write(frame);
      conn.deflate.flush(zlibConstants.Z_SYNC_FLUSH);
      return;
    }
    conn.ws.send(frame);
  }

  // --- REST plumbing ---------------------------------------------------------------------------

  private async handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const receivedAt = performance.now();
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    if (method === 'GET' && url.pathname.startsWith('/attachments/')) {
      this.serveAttachment(url.pathname, res);
      return;
    }
    const raw = await readBody(req);
    const contentType = req.headers['content-type'] ?? '';
    let body: unknown;
    let payload: unknown;
    let files: UploadedFile[] = [];
    if (contentType.startsWith('multipart/form-data')) {
      const multipart = await parseMultipart(raw, contentType);
      body = multipart;
      payload = multipart.payload_json;
      files = multipart.files;
    } else if (raw.length > 0) {
      body = contentType.startsWith('application/json') ? JSON.parse(raw.toString('utf8')) : raw.toString('utf8');
      payload = body;
    }
    // @discordjs/rest percent-encodes the path (@original arrives as %40original).
    const apiPath = url.pathname.replace(/^\/api(?:\/v\d+)?(?=\/|$)/, '') || '/';
    const path = apiPath
      .split('/')
      .map((s) => decodeURIComponent(s))
      .join('/');
    const call: RestCall = {
      seq: 0,
      method,
      path,
      query: Object.fromEntries(url.searchParams),
      body,
      auth: req.headers.authorization,
      status: 0,
      receivedAt,
    };
    const reply = this.route(call, payload, files);
    call.status = reply.status;
    // Recorded before the client sees the answer, so a test that awaited the bot's call finds it.
    call.seq = this.calls.length + 1;
    this.calls.push(call);
    if (reply.body === undefined) {
      // No Content-Type on 204: @discordjs/rest would try to parse an empty JSON body.
      res.writeHead(reply.status);
      res.end();
    } else {
      const text = JSON.stringify(reply.body);
      res.writeHead(reply.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    }
    this.events.emit('call', call);
  }

  private route(call: RestCall, rawPayload: unknown, files: UploadedFile[]): Reply {
    const segments = call.path.split('/').slice(1);
    for (const route of this.routes) {
      if (route.method !== call.method || route.segments.length !== segments.length) continue;
      const params: Record<string, string> = {};
      let matched = true;
      for (let i = 0; i < segments.length; i++) {
        const pattern = route.segments[i] as string;
        const actual = segments[i] as string;
        if (pattern.startsWith(':')) params[pattern.slice(1)] = actual;
        else if (pattern !== actual) {
          matched = false;
          break;
        }
      }
      // Routes under another application's id do not exist here: record them as unknown.
      if (!matched || (params.app !== undefined && params.app !== this.appId)) continue;
      if (route.auth && !this.authorized(call.auth)) {
        return { status: 401, body: { message: '401: Unauthorized', code: 0 } };
      }
      try {
        return route.handle({ call, params, payload: record(rawPayload), rawPayload, files });
      } catch (error) {
        if (error instanceof ApiError) {
          return {
            status: error.status,
            body: { message: error.message, code: error.code, ...(error.errors ? { errors: error.errors } : {}) },
          };
        }
        return { status: 500, body: { message: `stand-in error: ${String(error)}`, code: 0 } };
      }
    }
    this.unknownRoutes.push(call);
    return { status: 404, body: { message: '404: Not Found', code: 0 } };
  }

  private authorized(header: string | undefined): boolean {
    if (header === undefined || !header.startsWith('Bot ')) return false;
    return this.acceptsToken(header.slice(4));
  }

  private serveAttachment(pathname: string, res: ServerResponse): void {
    const id = decodeURIComponent(pathname.split('/')[2] ?? '');
    const att = this.attachmentData.get(id);
    if (att === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, {
      'content-type': att.contentType ?? 'application/octet-stream',
      'content-length': att.data.length,
    });
    res.end(att.data);
  }

  private addRoute(method: string, pattern: string, handle: (input: HandlerInput) => Reply, auth = true): void {
    this.routes.push({ method, segments: pattern.split('/').slice(1), auth, handle });
  }

  private defineRoutes(): void {
    const ok = (body: unknown): Reply => ({ status: 200, body });
    const noContent: Reply = { status: 204 };

    // Gateway, user and application.
    this.addRoute('GET', '/gateway', () => ok({ url: this.gatewayUrl }), false);
    this.addRoute('GET', '/gateway/bot', () =>
      ok({
        url: this.gatewayUrl,
        shards: 1,
        // max_concurrency is read by the identify throttler.
        session_start_limit: { total: 1000, remaining: 1000, reset_after: 14_400_000, max_concurrency: 1 },
      }),
    );
    this.addRoute('GET', '/users/@me', () => ok({ ...apiUser(this.botUser, true), verified: true, flags: 0 }));
    this.addRoute('POST', '/users/@me/channels', ({ payload }) => {
      const user = typeof payload.recipient_id === 'string' ? this.users.get(payload.recipient_id) : undefined;
      if (user === undefined) throw new ApiError(400, 50033, 'Invalid Recipient(s)');
      return ok(this.apiDmChannel(this.dmChannelFor(user, undefined)));
    });
    this.addRoute('GET', '/users/:user', ({ params }) => ok(apiUser(this.requireUser(params.user as string))));
    this.addRoute('GET', '/applications/@me', () =>
      ok({
        id: this.appId,
        name: this.botUser.username,
        icon: null,
        description: '',
        summary: '',
        bot_public: false,
        bot_require_code_grant: false,
        verify_key: '0'.repeat(64),
        flags: 0,
        team: null,
        owner: apiUser(this.botUser),
        bot: apiUser(this.botUser, true),
        redirect_uris: [],
        interactions_endpoint_url: null,
      }),
    );

    // Application commands, global and per guild.
    for (const prefix of ['/applications/:app/commands', '/applications/:app/guilds/:guild/commands']) {
      const scope = (params: Record<string, string>) => this.commandScope(params.guild);
      this.addRoute('GET', prefix, ({ params }) => ok(this.commandList(scope(params))));
      this.addRoute('PUT', prefix, ({ params, rawPayload }) => ok(this.overwriteCommands(scope(params), rawPayload)));
      this.addRoute('POST', prefix, ({ params, payload }) => this.upsertCommand(scope(params), payload));
      this.addRoute('GET', `${prefix}/:command`, ({ params }) =>
        ok(this.requireCommand(scope(params), params.command)),
      );
      this.addRoute('PATCH', `${prefix}/:command`, ({ params, payload }) =>
        ok(this.patchCommand(scope(params), params.command as string, payload)),
      );
      this.addRoute('DELETE', `${prefix}/:command`, ({ params }) => {
        const guildId = scope(params);
        const list = this.commandList(guildId);
        const index = list.findIndex((c) => c.id === params.command);
        if (index < 0) throw new ApiError(404, 10063, 'Unknown application command');
        list.splice(index, 1);
        return noContent;
      });
    }

    // Interaction callbacks and the interaction webhook: sent without Authorization.
    this.addRoute('POST', '/interactions/:id/:token/callback', (input) => this.interactionCallback(input), false);
    this.addRoute('POST', '/webhooks/:app/:token', (input) => this.followUp(input), false);
    this.addRoute(
      'GET',
      '/webhooks/:app/:token/messages/:message',
      ({ params }) => ok(this.apiMessage(this.webhookMessage(params))),
      false,
    );
    this.addRoute(
      'PATCH',
      '/webhooks/:app/:token/messages/:message',
      ({ params, payload, files }) => {
        const message = this.webhookMessage(params);
        this.editMessage(message, payload, files);
        return ok(this.apiMessage(message));
      },
      false,
    );
    this.addRoute(
      'DELETE',
      '/webhooks/:app/:token/messages/:message',
      ({ params }) => {
        this.webhookMessage(params).deleted = true;
        return noContent;
      },
      false,
    );

    // Channels and messages.
    this.addRoute('GET', '/channels/:channel', ({ params }) => {
      const channel = this.requireChannel(params.channel as string);
      return ok(channel.type === ChannelType.DM ? this.apiDmChannel(channel) : this.apiChannel(channel));
    });
    this.addRoute('GET', '/channels/:channel/messages', ({ params, call }) => {
      this.requireChannel(params.channel as string);
      const limit = Number(call.query.limit ?? 50);
      const list = this.channelMessages(params.channel as string).filter((m) => !m.deleted);
      return ok(
        list
          .slice(-limit)
          .reverse()
          .map((m) => this.apiMessage(m)),
      );
    });
    this.addRoute('POST', '/channels/:channel/messages', ({ params, payload, files }) => {
      const channel = this.requireChannel(params.channel as string);
      // enforce_nonce: the same author, channel and nonce within a few minutes returns the
      // message made first and creates none (what makes a post idempotent across gateways).
      const nonceKey = this.nonceKey(channel.id, payload);
      const first = nonceKey === null ? undefined : this.nonces.get(nonceKey);
      if (first !== undefined && Date.now() - first.at < NONCE_WINDOW_MS) {
        const existing = this.messages.get(first.messageId);
        if (existing !== undefined) return ok(this.apiMessage(existing));
      }
      const message = this.newMessage(channel.id, payload, files, { type: 0, webhook: false });
      if (nonceKey !== null) this.nonces.set(nonceKey, { messageId: message.id, at: Date.now() });
      let list = this.messagesByChannel.get(channel.id);
      if (list === undefined) {
        list = [];
        this.messagesByChannel.set(channel.id, list);
      }
      list.push(message);
      return ok(this.apiMessage(message));
    });
    this.addRoute('GET', '/channels/:channel/messages/:message', ({ params }) =>
      ok(this.apiMessage(this.channelMessage(params))),
    );
    this.addRoute('PATCH', '/channels/:channel/messages/:message', ({ params, payload, files }) => {
      const message = this.channelMessage(params);
      this.editMessage(message, payload, files);
      return ok(this.apiMessage(message));
    });
    this.addRoute('DELETE', '/channels/:channel/messages/:message', ({ params }) => {
      this.channelMessage(params).deleted = true;
      return noContent;
    });
    this.addRoute('POST', '/channels/:channel/typing', ({ params }) => {
      this.requireChannel(params.channel as string);
      return noContent;
    });
    this.addRoute('PUT', '/channels/:channel/messages/:message/reactions/:emoji/@me', ({ params }) => {
      const message = this.channelMessage(params);
      const emoji = params.emoji as string;
      if (!message.reactions.includes(emoji)) message.reactions.push(emoji);
      return noContent;
    });
    this.addRoute('DELETE', '/channels/:channel/messages/:message/reactions/:emoji/@me', ({ params }) => {
      const message = this.channelMessage(params);
      message.reactions = message.reactions.filter((e) => e !== params.emoji);
      return noContent;
    });

    // Guilds, channels, roles, members.
    this.addRoute('GET', '/guilds/:guild', ({ params }) => ok(this.apiGuild(this.requireGuild(params.guild))));
    this.addRoute('GET', '/guilds/:guild/channels', ({ params }) =>
      ok([...this.requireGuild(params.guild).channels.values()].map((c) => this.apiChannel(c))),
    );
    this.addRoute('POST', '/guilds/:guild/channels', ({ params, payload }) => {
      const guild = this.requireGuild(params.guild);
      if (typeof payload.name !== 'string' || payload.name === '') throw formError('name', 'required');
      const channel = this.addChannel(guild, {
        id: snowflake(),
        name: payload.name,
        type: typeof payload.type === 'number' ? payload.type : ChannelType.GuildText,
        position: guild.channels.size,
        topic: typeof payload.topic === 'string' ? payload.topic : null,
        parentId: typeof payload.parent_id === 'string' ? payload.parent_id : null,
      });
      // Discord tells the gateways too, which keeps the client's cache in step.
      this.dispatchEvent('CHANNEL_CREATE', this.apiChannel(channel), Intent.Guilds);
      return { status: 201, body: this.apiChannel(channel) };
    });
    this.addRoute('GET', '/guilds/:guild/roles', ({ params }) =>
      ok([...this.requireGuild(params.guild).roles.values()].map((r) => this.apiRole(r))),
    );
    this.addRoute('POST', '/guilds/:guild/roles', ({ params, payload }) => {
      const guild = this.requireGuild(params.guild);
      const role = this.makeRole(
        snowflake(),
        typeof payload.name === 'string' ? payload.name : 'new role',
        guild.roles.size,
        typeof payload.permissions === 'string' ? payload.permissions : '0',
      );
      guild.roles.set(role.id, role);
      this.dispatchEvent('GUILD_ROLE_CREATE', { guild_id: guild.id, role: this.apiRole(role) }, Intent.Guilds);
      return ok(this.apiRole(role));
    });
    this.addRoute('GET', '/guilds/:guild/members', ({ params, call }) => {
      const limit = Number(call.query.limit ?? 1);
      const after = call.query.after ?? '0';
      const members = [...this.requireGuild(params.guild).members.values()]
        .filter((m) => BigInt(m.user.id.replace(/\D/g, '') || '0') > BigInt(after))
        .slice(0, limit);
      return ok(members.map((m) => this.apiMember(m)));
    });
    this.addRoute('GET', '/guilds/:guild/members/:user', ({ params }) =>
      ok(this.apiMember(this.requireMember(params))),
    );
    this.addRoute('PATCH', '/guilds/:guild/members/:user', ({ params, payload }) => {
      const guild = this.requireGuild(params.guild);
      const member = this.requireMember(params);
      if (Array.isArray(payload.roles)) {
        for (const r of payload.roles) if (!guild.roles.has(String(r))) throw new ApiError(404, 10011, 'Unknown Role');
        member.roles = payload.roles.map(String);
      }
      if ('nick' in payload) member.nick = typeof payload.nick === 'string' ? payload.nick : null;
      this.memberUpdated(guild, member);
      return ok(this.apiMember(member));
    });
    this.addRoute('PUT', '/guilds/:guild/members/:user/roles/:role', ({ params }) => {
      const { guild, member, role } = this.requireMemberRole(params);
      if (!member.roles.includes(role)) member.roles.push(role);
      this.memberUpdated(guild, member);
      return noContent;
    });
    this.addRoute('DELETE', '/guilds/:guild/members/:user/roles/:role', ({ params }) => {
      const { guild, member, role } = this.requireMemberRole(params);
      member.roles = member.roles.filter((r) => r !== role);
      this.memberUpdated(guild, member);
      return noContent;
    });
  }

  /** The dedupe key of a create-message payload with `enforce_nonce`; null when it has none. */
  private nonceKey(channelId: string, payload: Record<string, unknown>): string | null {
    const nonce = payload.nonce;
    if (nonce === undefined || nonce === null) {
      if (payload.enforce_nonce === true) throw formError('nonce', 'required with enforce_nonce');
      return null;
    }
    // Discord: an integer or a string of at most 25 characters.
    const valid = (typeof nonce === 'string' && nonce.length <= 25) || Number.isInteger(nonce);
    if (!valid) throw formError('nonce', 'must be an integer or a string of at most 25 characters');
    if (payload.enforce_nonce !== true) return null;
    return `${channelId}:${this.botUser.id}:${String(nonce)}`;
  }

  // --- interaction responses -------------------------------------------------------------------

  private interactionCallback({ call, params, payload, files }: HandlerInput): Reply {
    const it = this.interactions.get(params.id as string);
    if (it === undefined || it.token !== params.token || it.expired) {
      throw new ApiError(404, 10062, 'Unknown interaction');
    }
    if (it.callbacks.length > 0) throw new ApiError(400, 40060, 'Interaction has already been acknowledged.');
    const type = payload.type;
    if (typeof type !== 'number' || !callbackAllowed(it, type)) {
      throw formError('type', `callback type ${String(type)} is not valid for interaction type ${it.type}`);
    }
    const data = record(payload.data);
    if (type === CallbackType.AutocompleteResult) autocompleteError(data);
    it.callbacks.push(payload.data === undefined ? { type } : { type, data: payload.data });
    const opts = { type: 20, webhook: true };
    switch (type) {
      case CallbackType.ChannelMessage:
        it.original = this.newMessage(it.channelId, data, files, opts);
        break;
      case CallbackType.DeferredChannelMessage: {
        const ephemeral = typeof data.flags === 'number' ? data.flags & MessageFlag.Ephemeral : 0;
        it.original = this.newMessage(it.channelId, { flags: ephemeral | MessageFlag.Loading }, [], opts);
        break;
      }
      case CallbackType.DeferredUpdate:
        it.original = this.messages.get(it.messageId as string);
        break;
      case CallbackType.Modal: {
        const components = Array.isArray(data.components) ? data.components.map(record) : [];
        const layout = components.some((c) => c.type === ComponentType.Label) ? 'label' : 'row';
        this.modalLayouts.set(String(data.custom_id), layout);
        break;
      }
      case CallbackType.UpdateMessage: {
        const message = this.messages.get(it.messageId as string) as MessageRecord;
        this.editMessage(message, data, files);
        it.original = message;
        break;
      }
    }
    if (call.query.with_response !== 'true') return { status: 204 };
    const original = it.original;
    const withMessage = type === 4 || type === 5 || type === 7;
    return {
      status: 200,
      body: {
        interaction: {
          id: it.id,
          type: it.type,
          ...(withMessage && original !== undefined
            ? {
                response_message_id: original.id,
                response_message_loading: (original.flags & MessageFlag.Loading) !== 0,
                response_message_ephemeral: (original.flags & MessageFlag.Ephemeral) !== 0,
              }
            : {}),
        },
        resource: {
          type,
          ...(withMessage && original !== undefined ? { message: this.apiMessage(original) } : {}),
        },
      },
    };
  }

  private followUp({ call, params, payload, files }: HandlerInput): Reply {
    const it = this.webhookInteraction(params.token as string);
    if (it.callbacks.length === 0) throw new ApiError(404, 10015, 'Unknown Webhook');
    let message: MessageRecord;
    const original = it.original;
    if (original !== undefined && (original.flags & MessageFlag.Loading) !== 0) {
      // After a defer, Discord makes the first follow-up the reply itself.
      this.editMessage(original, payload, files);
      message = original;
    } else {
      message = this.newMessage(it.channelId, payload, files, { type: 20, webhook: true });
      it.followUps.push(message);
    }
    return call.query.wait === 'true' ? { status: 200, body: this.apiMessage(message) } : { status: 204 };
  }

  private webhookInteraction(token: string): InteractionState {
    const it = this.interactionsByToken.get(token);
    if (it === undefined) throw new ApiError(404, 10015, 'Unknown Webhook');
    if (it.expired) throw new ApiError(401, 50027, 'Invalid Webhook Token');
    return it;
  }

  private webhookMessage(params: Record<string, string>): MessageRecord {
    const it = this.webhookInteraction(params.token as string);
    const id = params.message;
    const message =
      id === '@original' ? it.original : it.original?.id === id ? it.original : it.followUps.find((m) => m.id === id);
    if (message === undefined || message.deleted) throw new ApiError(404, 10008, 'Unknown Message');
    return message;
  }

  // --- messages --------------------------------------------------------------------------------

  private newMessage(
    channelId: string,
    payload: Record<string, unknown>,
    files: UploadedFile[],
    opts: { type: number; webhook: boolean },
  ): MessageRecord {
    const message: MessageRecord = {
      id: snowflake(),
      channelId,
      content: typeof payload.content === 'string' ? payload.content : '',
      embeds: Array.isArray(payload.embeds) ? payload.embeds : [],
      components: Array.isArray(payload.components) ? payload.components : [],
      attachments: this.resolveAttachments([], payload.attachments, files),
      flags: typeof payload.flags === 'number' ? payload.flags : 0,
      reactions: [],
      deleted: false,
      timestamp: new Date().toISOString(),
      editedTimestamp: null,
      type: opts.type,
      webhookId: opts.webhook ? this.appId : null,
    };
    this.messages.set(message.id, message);
    return message;
  }

  private editMessage(message: MessageRecord, payload: Record<string, unknown>, files: UploadedFile[]): void {
    if ('content' in payload) message.content = typeof payload.content === 'string' ? payload.content : '';
    if ('embeds' in payload) message.embeds = Array.isArray(payload.embeds) ? payload.embeds : [];
    if ('components' in payload) message.components = Array.isArray(payload.components) ? payload.components : [];
    if ('attachments' in payload || files.length > 0) {
      message.attachments = this.resolveAttachments(message.attachments, payload.attachments, files);
    }
    // Whether a message is ephemeral cannot change; an edit ends the "thinking" state.
    const ephemeral = message.flags & MessageFlag.Ephemeral;
    const flags = typeof payload.flags === 'number' ? payload.flags : message.flags;
    message.flags = (flags & ~(MessageFlag.Ephemeral | MessageFlag.Loading)) | ephemeral;
    message.editedTimestamp = new Date().toISOString();
  }

  /** `attachments` in a payload lists what the message keeps (existing ids) and which uploads
   * (`files[<id>]`) it gets; without it the uploads are added to what is there. */
  private resolveAttachments(existing: AttachmentRecord[], listed: unknown, files: UploadedFile[]): AttachmentRecord[] {
    const upload = (file: UploadedFile, filename?: unknown): AttachmentRecord => {
      const att: AttachmentRecord = {
        id: snowflake(),
        filename: typeof filename === 'string' ? filename : file.filename,
        data: file.data,
      };
      this.attachmentData.set(att.id, att);
      return att;
    };
    if (!Array.isArray(listed)) return [...existing, ...files.map((f) => upload(f))];
    const result: AttachmentRecord[] = [];
    const used = new Set<UploadedFile>();
    for (const entry of listed.map(record)) {
      const id = String(entry.id);
      const kept = existing.find((a) => a.id === id);
      if (kept !== undefined) {
        result.push(kept);
        continue;
      }
      const file = files.find((f) => f.name === `files[${id}]`);
      if (file !== undefined) {
        used.add(file);
        result.push(upload(file, entry.filename));
      }
    }
    for (const file of files) if (!used.has(file)) result.push(upload(file));
    return result;
  }

  private channelMessage(params: Record<string, string>): MessageRecord {
    const message = this.messages.get(params.message as string);
    if (message === undefined || message.deleted || message.channelId !== params.channel) {
      this.requireChannel(params.channel as string);
      throw new ApiError(404, 10008, 'Unknown Message');
    }
    return message;
  }

  // --- commands --------------------------------------------------------------------------------

  private commandScope(guildId: string | undefined): string | null {
    if (guildId === undefined) return null;
    if (!this.guilds.has(guildId)) throw new ApiError(403, 50001, 'Missing Access');
    return guildId;
  }

  private commandList(guildId: string | null): ApplicationCommandRecord[] {
    const key = guildId ?? 'global';
    let list = this.commands.get(key);
    if (list === undefined) {
      list = [];
      this.commands.set(key, list);
    }
    return list;
  }

  private makeCommand(
    body: Record<string, unknown>,
    guildId: string | null,
    existing: ApplicationCommandRecord | undefined,
  ): ApplicationCommandRecord {
    const type = typeof body.type === 'number' ? body.type : 1;
    return {
      ...body,
      id: existing?.id ?? snowflake(),
      application_id: this.appId,
      ...(guildId !== null ? { guild_id: guildId } : {}),
      type,
      name: String(body.name),
      description: typeof body.description === 'string' ? body.description : '',
      ...(type === 1 ? { options: Array.isArray(body.options) ? body.options : [] } : {}),
      default_member_permissions:
        typeof body.default_member_permissions === 'string' ? body.default_member_permissions : null,
      nsfw: body.nsfw === true,
      version: snowflake(),
    };
  }

  private validateCommand(body: Record<string, unknown>): void {
    const error = commandError(body);
    if (error !== null) {
      const [field, detail] = error.split(': ');
      throw formError(field as string, detail as string);
    }
  }

  /** PUT: the list becomes exactly the body; commands keep their ids by name and type. */
  private overwriteCommands(guildId: string | null, body: unknown): ApplicationCommandRecord[] {
    if (!Array.isArray(body)) throw formError('_root', 'expected an array of commands');
    const bodies = body.map(record);
    for (const b of bodies) this.validateCommand(b);
    const list = this.commandList(guildId);
    const next = bodies.map((b) =>
      this.makeCommand(
        b,
        guildId,
        list.find((c) => c.name === b.name && c.type === (b.type ?? 1)),
      ),
    );
    list.splice(0, list.length, ...next);
    return list;
  }

  /** POST: creates, or updates the command of the same name and type (200 then, 201 when new). */
  private upsertCommand(guildId: string | null, body: Record<string, unknown>): Reply {
    this.validateCommand(body);
    const list = this.commandList(guildId);
    const index = list.findIndex((c) => c.name === body.name && c.type === (body.type ?? 1));
    const cmd = this.makeCommand(body, guildId, list[index]);
    if (index >= 0) {
      list[index] = cmd;
      return { status: 200, body: cmd };
    }
    list.push(cmd);
    return { status: 201, body: cmd };
  }

  private patchCommand(guildId: string | null, id: string, body: Record<string, unknown>): ApplicationCommandRecord {
    const list = this.commandList(guildId);
    const index = list.findIndex((c) => c.id === id);
    const existing = list[index];
    if (existing === undefined) throw new ApiError(404, 10063, 'Unknown application command');
    const merged = { ...existing, ...body };
    this.validateCommand(merged);
    const cmd = this.makeCommand(merged, guildId, existing);
    list[index] = cmd;
    return cmd;
  }

  private requireCommand(guildId: string | null, id: string | undefined): ApplicationCommandRecord {
    const cmd = this.commandList(guildId).find((c) => c.id === id);
    if (cmd === undefined) throw new ApiError(404, 10063, 'Unknown application command');
    return cmd;
  }

  // --- guild model -----------------------------------------------------------------------------

  private makeRole(id: string, name: string, position: number, permissions: string): RoleState {
    return { id, name, position, permissions, color: 0, hoist: false, mentionable: false };
  }

  private addChannel(
    guild: GuildState,
    c: { id: string; name: string; type: number; position: number; topic?: string | null; parentId?: string | null },
  ): ChannelState {
    const channel: ChannelState = {
      id: c.id,
      name: c.name,
      type: c.type,
      guildId: guild.id,
      recipient: null,
      topic: c.topic ?? null,
      parentId: c.parentId ?? null,
      position: c.position,
    };
    guild.channels.set(channel.id, channel);
    this.channels.set(channel.id, channel);
    return channel;
  }

  /** The bot's DM channel with a user: one per user, with the id a test chose if it chose one. */
  private dmChannelFor(user: StandInUser, channelId: string | undefined): ChannelState {
    const existing = this.dmChannels.get(user.id);
    if (existing !== undefined && (channelId === undefined || existing.id === channelId)) return existing;
    const channel: ChannelState = {
      id: channelId ?? snowflake(),
      name: '',
      type: ChannelType.DM,
      guildId: null,
      recipient: user,
      topic: null,
      parentId: null,
      position: 0,
    };
    this.dmChannels.set(user.id, channel);
    this.channels.set(channel.id, channel);
    return channel;
  }

  private memberUpdated(guild: GuildState, member: MemberState): void {
    // GUILD_MEMBER_UPDATE needs the privileged GuildMembers intent, as on Discord.
    this.dispatchEvent('GUILD_MEMBER_UPDATE', { guild_id: guild.id, ...this.apiMember(member) }, Intent.GuildMembers);
  }

  private requireGuild(id: string | undefined): GuildState {
    const guild = id === undefined ? undefined : this.guilds.get(id);
    if (guild === undefined) throw new ApiError(404, 10004, 'Unknown Guild');
    return guild;
  }

  private requireChannel(id: string): ChannelState {
    const channel = this.channels.get(id);
    if (channel === undefined) throw new ApiError(404, 10003, 'Unknown Channel');
    return channel;
  }

  private requireUser(id: string): StandInUser {
    const user = this.users.get(id);
    if (user === undefined) throw new ApiError(404, 10013, 'Unknown User');
    return user;
  }

  private requireMember(params: Record<string, string>): MemberState {
    const member = this.requireGuild(params.guild).members.get(params.user as string);
    if (member === undefined) throw new ApiError(404, 10007, 'Unknown Member');
    return member;
  }

  private requireMemberRole(params: Record<string, string>): { guild: GuildState; member: MemberState; role: string } {
    const guild = this.requireGuild(params.guild);
    const member = this.requireMember(params);
    const role = params.role as string;
    if (!guild.roles.has(role)) throw new ApiError(404, 10011, 'Unknown Role');
    return { guild, member, role };
  }

  // --- API object shapes -----------------------------------------------------------------------

  private apiChannel(c: ChannelState): Record<string, unknown> {
    if (c.type === ChannelType.DM) return this.apiDmChannel(c);
    return {
      id: c.id,
      type: c.type,
      guild_id: c.guildId,
      name: c.name,
      position: c.position,
      permission_overwrites: [],
      parent_id: c.parentId,
      topic: c.topic,
      nsfw: false,
      last_message_id: null,
      rate_limit_per_user: 0,
      flags: 0,
    };
  }

  private apiDmChannel(c: ChannelState): Record<string, unknown> {
    return {
      id: c.id,
      type: ChannelType.DM,
      last_message_id: null,
      flags: 0,
      recipients: c.recipient !== null ? [apiUser(c.recipient)] : [],
    };
  }

  private apiRole(r: RoleState): Record<string, unknown> {
    return {
      id: r.id,
      name: r.name,
      color: r.color,
      colors: { primary_color: r.color, secondary_color: null, tertiary_color: null },
      hoist: r.hoist,
      icon: null,
      unicode_emoji: null,
      position: r.position,
      permissions: r.permissions,
      managed: false,
      mentionable: r.mentionable,
      flags: 0,
    };
  }

  private apiMember(m: MemberState): Record<string, unknown> {
    return {
      user: apiUser(m.user, m.user.id === this.botUser.id),
      nick: m.nick,
      avatar: null,
      roles: m.roles,
      joined_at: m.joinedAt,
      premium_since: null,
      deaf: false,
      mute: false,
      flags: 0,
      pending: false,
      communication_disabled_until: null,
    };
  }

  private apiGuild(g: GuildState): Record<string, unknown> {
    return {
      id: g.id,
      name: g.name,
      icon: null,
      splash: null,
      discovery_splash: null,
      owner_id: this.botUser.id,
      afk_channel_id: null,
      afk_timeout: 300,
      verification_level: 0,
      default_message_notifications: 0,
      explicit_content_filter: 0,
      roles: [...g.roles.values()].map((r) => this.apiRole(r)),
      emojis: [],
      features: [],
      mfa_level: 0,
      application_id: null,
      system_channel_id: null,
      system_channel_flags: 0,
      rules_channel_id: null,
      max_members: 500000,
      vanity_url_code: null,
      description: null,
      banner: null,
      premium_tier: 0,
      premium_subscription_count: 0,
      preferred_locale: 'en-US',
      public_updates_channel_id: null,
      nsfw_level: 0,
      stickers: [],
      premium_progress_bar_enabled: false,
      safety_alerts_channel_id: null,
    };
  }

  private apiGuildCreate(g: GuildState, intents: number): Record<string, unknown> {
    // Without the GuildMembers intent Discord sends only the bot's own member.
    const members = (intents & Intent.GuildMembers) !== 0 ? [...g.members.values()] : [g.members.get(this.botUser.id)];
    return {
      ...this.apiGuild(g),
      joined_at: g.joinedAt,
      large: false,
      unavailable: false,
      member_count: g.members.size,
      voice_states: [],
      members: members.filter((m) => m !== undefined).map((m) => this.apiMember(m)),
      channels: [...g.channels.values()].map((c) => this.apiChannel(c)),
      threads: [],
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
    };
  }

  private apiAttachment(a: AttachmentRecord): Record<string, unknown> {
    const url = `${this.httpBase}/attachments/${a.id}/${encodeURIComponent(a.filename)}`;
    return {
      id: a.id,
      filename: a.filename,
      size: a.data.length,
      url,
      proxy_url: url,
      ...(a.contentType !== undefined ? { content_type: a.contentType } : {}),
    };
  }

  private apiMessage(m: MessageRecord): Record<string, unknown> {
    return {
      id: m.id,
      type: m.type,
      channel_id: m.channelId,
      author: apiUser(this.botUser, true),
      content: m.content,
      timestamp: m.timestamp,
      edited_timestamp: m.editedTimestamp,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: m.attachments.map((a) => this.apiAttachment(a)),
      embeds: m.embeds,
      components: m.components,
      pinned: false,
      flags: m.flags,
      ...(m.webhookId !== null ? { webhook_id: m.webhookId, application_id: this.appId } : {}),
    };
  }
}

function formError(field: string, detail: string): ApiError {
  return new ApiError(400, 50035, 'Invalid Form Body', {
    [field]: { _errors: [{ code: 'STANDIN_INVALID', message: detail }] },
  });
}

/** Discord refuses the whole answer when one choice breaks a limit (400 Invalid Form Body). */
function autocompleteError(data: Record<string, unknown>): void {
  const choices = Array.isArray(data.choices) ? data.choices.map(record) : [];
  if (choices.length > 25) throw formError('data.choices', 'Must be 25 or fewer in length.');
  for (const [i, choice] of choices.entries()) {
    for (const field of ['name', 'value'] as const) {
      const v = choice[field];
      if (typeof v === 'string' && (v.length < 1 || v.length > 100)) {
        throw formError(`data.choices.${i}.${field}`, 'Must be between 1 and 100 in length.');
      }
    }
  }
}

/** Which callback types Discord accepts for which interaction type. */
function callbackAllowed(it: InteractionState, type: number): boolean {
  switch (it.type) {
    case InteractionType.ApplicationCommand:
      return type === 4 || type === 5 || type === 9;
    case InteractionType.MessageComponent:
      return (type >= 4 && type <= 7) || type === 9;
    case InteractionType.Autocomplete:
      return type === 8;
    case InteractionType.ModalSubmit:
      // Updating a message needs the component message the modal came from.
      return type === 4 || type === 5 || ((type === 6 || type === 7) && it.messageId !== null);
    default:
      return false;
  }
}

async function parseMultipart(raw: Buffer, contentType: string): Promise<MultipartBody> {
  // undici's multipart parser, through the fetch Response (Node 20).
  const form = await new Response(raw, { headers: { 'content-type': contentType } }).formData();
  const result: MultipartBody = { payload_json: undefined, files: [] };
  for (const [name, value] of form.entries()) {
    if (typeof value === 'string') {
      if (name === 'payload_json') result.payload_json = JSON.parse(value);
    } else {
      result.files.push({ name, filename: value.name, data: Buffer.from(await value.arrayBuffer()) });
    }
  }
  return result;
}

/** The request body, with plain stream events (cheaper per request than async iteration). */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
