// The Discord stand-in against the real discord.js Client: login, interactions and their
// responses, command registration, guild reads and writes, resume, and the failure answers.
import { EventEmitter, once } from 'node:events';
import { createInflate, constants as zlibConstants } from 'node:zlib';
import {
  ActionRowBuilder,
  AttachmentBuilder,
  ButtonBuilder,
  ButtonStyle,
  Client,
  DiscordAPIError,
  GatewayIntentBits,
  type GuildMember,
  type Interaction,
  LabelBuilder,
  MessageFlags,
  ModalBuilder,
  Routes,
  TextInputBuilder,
  TextInputStyle,
} from 'discord.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { DiscordStandIn, type IdentifyEvent, type RestCall } from './discord-standin.js';

const TOKEN = 'standin-test-token';
const GUILD = '1100000000000000001';
const CHANNEL = '1100000000000000002';
const ROLE_OPS = '1100000000000000003';
const DM_CHANNEL = '1100000000000000004';
const operator = { id: '1100000000000000010', username: 'operator' };

let standIn: DiscordStandIn;
const clients: Client[] = [];

beforeEach(async () => {
  standIn = new DiscordStandIn({
    token: TOKEN,
    guilds: [
      {
        id: GUILD,
        name: 'fleet',
        channels: [{ id: CHANNEL, name: 'ops' }],
        roles: [{ id: ROLE_OPS, name: 'operators' }],
        members: [{ user: operator, roles: [ROLE_OPS] }],
      },
    ],
  });
  await standIn.start();
});

afterEach(async () => {
  // Destroyed clients and a stopped server leave nothing that keeps vitest waiting.
  await Promise.all(clients.splice(0).map((c) => c.destroy()));
  await standIn.stop();
});

async function connect(intents: number[] = [GatewayIntentBits.Guilds]): Promise<Client> {
  const client = new Client({ intents, rest: { api: standIn.apiUrl } });
  clients.push(client);
  // Attached before login: against a loopback server ready can come before login() resolves.
  const ready = once(client, 'clientReady');
  await client.login(TOKEN);
  await ready;
  return client;
}

/** Runs `fn` for every interaction; `done(id)` resolves with what it returned (or throws its error). */
function handleInteractions(
  client: Client,
  fn: (i: Interaction) => Promise<unknown>,
): (interactionId: string) => Promise<unknown> {
  const settled = new Map<string, { ok: boolean; value: unknown }>();
  const finished = new EventEmitter();
  finished.setMaxListeners(0);
  client.on('interactionCreate', (i) => {
    fn(i).then(
      (value) => {
        settled.set(i.id, { ok: true, value });
        finished.emit(i.id);
      },
      (error: unknown) => {
        settled.set(i.id, { ok: false, value: error });
        finished.emit(i.id);
      },
    );
  });
  return async (id) => {
    if (!settled.has(id)) await once(finished, id, { signal: AbortSignal.timeout(5000) });
    const outcome = settled.get(id) as { ok: boolean; value: unknown };
    if (!outcome.ok) throw outcome.value;
    return outcome.value;
  };
}

/** `METHOD path status` per call, with the interaction token (when given) masked. */
function summary(calls: RestCall[], token?: string): string[] {
  return calls.map((c) => `${c.method} ${token ? c.path.replace(token, '<token>') : c.path} ${c.status}`);
}

describe('DiscordStandIn with the real discord.js client', () => {
  it('logs in and caches the guild, its channels, roles and the bot member', async () => {
    const identified = once(standIn.events, 'identify');
    const client = await connect();
    const [event] = (await identified) as [IdentifyEvent];

    expect(event.intents).toBe(GatewayIntentBits.Guilds);
    expect(client.user?.id).toBe(standIn.botUser.id);
    expect(client.application?.id).toBe(standIn.appId);
    const guild = client.guilds.cache.get(GUILD);
    expect(guild?.name).toBe('fleet');
    expect(guild?.channels.cache.get(CHANNEL)?.name).toBe('ops');
    expect(guild?.roles.everyone.id).toBe(GUILD);
    expect(guild?.roles.cache.get(ROLE_OPS)?.name).toBe('operators');
    expect(guild?.members.me?.id).toBe(standIn.botUser.id);
    expect(summary(standIn.calls)).toEqual(['GET /gateway/bot 200']);
    expect(standIn.calls[0]?.auth).toBe(`Bot ${TOKEN}`);
    expect(standIn.connectedSessions).toBe(1);
  });

  it('delivers a slash command and records defer, editReply and a follow-up with a file', async () => {
    const client = await connect();
    const done = handleInteractions(client, async (i) => {
      if (!i.isChatInputCommand()) throw new Error(`unexpected ${i.type}`);
      const seen = {
        channel: i.channel?.id,
        command: i.commandName,
        subcommand: i.options.getSubcommand(),
        name: i.options.getString('name'),
        roles: [...(i.member as GuildMember).roles.cache.keys()].sort(),
      };
      await i.deferReply();
      await i.editReply('spawning clawdinator-3');
      const log = new AttachmentBuilder(Buffer.from('line 1\n'), { name: 'spawn.log' });
      const followUp = await i.followUp({ content: 'log attached', files: [log] });
      return { seen, url: followUp.attachments.first()?.url };
    });

    const { id, token } = standIn.injectCommand({
      name: 'fleet',
      options: [{ type: 1, name: 'spawn', options: [{ type: 3, name: 'name', value: 'clawdinator-3' }] }],
      user: operator,
      roles: [ROLE_OPS],
      channelId: CHANNEL,
    });
    const result = (await done(id)) as { seen: unknown; url: string };

    expect(result.seen).toEqual({
      channel: CHANNEL,
      command: 'fleet',
      subcommand: 'spawn',
      name: 'clawdinator-3',
      roles: [GUILD, ROLE_OPS].sort(),
    });
    const mine = standIn.calls.filter((c) => c.path.includes(token));
    expect(summary(mine, token)).toEqual([
      `POST /interactions/${id}/<token>/callback 204`,
      `PATCH /webhooks/${standIn.appId}/<token>/messages/@original 200`,
      `POST /webhooks/${standIn.appId}/<token> 200`,
    ]);
    expect(mine.map((c) => c.auth)).toEqual([undefined, undefined, undefined]);
    expect(mine[0]?.query).toEqual({ with_response: 'false' });
    expect(mine[0]?.body).toMatchObject({ type: 5 });
    expect(mine[2]?.query).toEqual({ wait: 'true' });
    expect(mine[2]?.body).toMatchObject({
      payload_json: { content: 'log attached' },
      files: [{ name: 'files[0]', filename: 'spawn.log' }],
    });

    const responses = standIn.responsesFor(id);
    expect(responses.callbacks.map((c) => c.type)).toEqual([5]);
    expect(responses.original).toMatchObject({ content: 'spawning clawdinator-3', flags: 0 });
    expect(responses.followUps).toHaveLength(1);
    expect(responses.followUps[0]?.attachments.map((a) => [a.filename, a.data.toString()])).toEqual([
      ['spawn.log', 'line 1\n'],
    ]);
    // The attachment URL the bot got back is served by the stand-in.
    expect(await (await fetch(result.url)).text()).toBe('line 1\n');
    expect(standIn.unknownRoutes).toEqual([]);
  });

  it('makes the first follow-up after a defer the reply itself, as Discord does', async () => {
    const client = await connect();
    const done = handleInteractions(client, async (i) => {
      if (!i.isChatInputCommand()) return;
      await i.deferReply({ flags: MessageFlags.Ephemeral });
      await i.followUp('first');
      await i.followUp('second');
    });
    const { id } = standIn.injectCommand({ name: 'status', user: operator, channelId: CHANNEL });
    await done(id);

    const responses = standIn.responsesFor(id);
    expect(responses.original).toMatchObject({ content: 'first', flags: MessageFlags.Ephemeral });
    expect(responses.followUps.map((m) => m.content)).toEqual(['second']);
  });

  it('round-trips a confirmation button and a modal', async () => {
    const client = await connect();
    const done = handleInteractions(client, async (i) => {
      if (i.isChatInputCommand() && i.commandName === 'retire') {
        const confirm = new ButtonBuilder()
          .setCustomId('retire:confirm')
          .setLabel('Retire')
          .setStyle(ButtonStyle.Danger);
        const response = await i.reply({
          content: 'Retire clawdinator-2?',
          components: [new ActionRowBuilder<ButtonBuilder>().addComponents(confirm)],
          withResponse: true,
        });
        return response.resource?.message?.id;
      }
      if (i.isButton()) {
        await i.update({ content: `retired by ${i.user.username}`, components: [] });
        return i.message.id;
      }
      if (i.isChatInputCommand() && i.commandName === 'memory') {
        const text = new TextInputBuilder().setCustomId('text').setStyle(TextInputStyle.Paragraph);
        await i.showModal(
          new ModalBuilder()
            .setCustomId('memory:edit')
            .setTitle('Edit memory')
            .addLabelComponents(new LabelBuilder().setLabel('Text').setTextInputComponent(text)),
        );
        return;
      }
      if (i.isModalSubmit()) {
        await i.reply({ content: `saved: ${i.fields.getTextInputValue('text')}`, flags: MessageFlags.Ephemeral });
        return;
      }
      throw new Error('unexpected interaction');
    });

    const retire = standIn.injectCommand({ name: 'retire', user: operator, channelId: CHANNEL });
    const messageId = await done(retire.id);
    const reply = standIn.responsesFor(retire.id);
    expect(reply.original?.id).toBe(messageId);
    expect(reply.original?.components).toHaveLength(1);
    expect(standIn.calls.find((c) => c.path.startsWith(`/interactions/${retire.id}/`))?.query).toEqual({
      with_response: 'true',
    });

    const press = standIn.injectButton({
      customId: 'retire:confirm',
      user: operator,
      channelId: CHANNEL,
      messageId: messageId as string,
    });
    expect(await done(press.id)).toBe(messageId);
    expect(standIn.responsesFor(press.id).callbacks.map((c) => c.type)).toEqual([7]);
    // The update edited the message the button was on.
    expect(standIn.message(messageId as string)).toMatchObject({ content: 'retired by operator', components: [] });

    const memory = standIn.injectCommand({ name: 'memory', user: operator, channelId: CHANNEL });
    await done(memory.id);
    expect(standIn.responsesFor(memory.id).callbacks).toMatchObject([{ type: 9, data: { custom_id: 'memory:edit' } }]);

    const submit = standIn.injectModalSubmit({
      customId: 'memory:edit',
      fields: { text: 'remember the milk' },
      user: operator,
      channelId: CHANNEL,
    });
    await done(submit.id);
    expect(standIn.responsesFor(submit.id).callbacks).toEqual([
      {
        type: 4,
        data: expect.objectContaining({ content: 'saved: remember the milk', flags: MessageFlags.Ephemeral }),
      },
    ]);

    // A modal the bot never showed is answered in the classic action-row layout; still readable.
    const classic = standIn.injectModalSubmit({
      customId: 'other',
      fields: { text: 'x' },
      user: operator,
      channelId: CHANNEL,
    });
    await done(classic.id);
    expect(standIn.responsesFor(classic.id).original?.content).toBe('saved: x');
  });

  it('answers autocomplete with the choices the bot responded', async () => {
    const client = await connect();
    const done = handleInteractions(client, async (i) => {
      if (!i.isAutocomplete()) return;
      const focused = i.options.getFocused(true);
      await i.respond([{ name: `${focused.value}inator-1`, value: `${focused.value}inator-1` }]);
    });
    const { id } = standIn.injectAutocomplete({
      name: 'retire',
      options: [{ type: 3, name: 'name', value: 'claw', focused: true }],
      user: operator,
      channelId: CHANNEL,
    });
    await done(id);
    expect(standIn.responsesFor(id).callbacks).toEqual([
      { type: 8, data: { choices: [{ name: 'clawinator-1', value: 'clawinator-1' }] } },
    ]);
  });

  it('delivers a DM interaction with a user and no member', async () => {
    const client = await connect();
    const done = handleInteractions(client, async (i) => {
      if (!i.isChatInputCommand()) return;
      const seen = { guildId: i.guildId, member: i.member, inGuild: i.inGuild(), user: i.user.id, context: i.context };
      await i.reply({ content: 'DMs are refused', flags: MessageFlags.Ephemeral });
      return seen;
    });
    const { id } = standIn.injectCommand({ name: 'status', user: operator, guildId: null, channelId: DM_CHANNEL });
    expect(await done(id)).toEqual({ guildId: null, member: null, inGuild: false, user: operator.id, context: 1 });
    expect(standIn.responsesFor(id).original).toMatchObject({ channelId: DM_CHANNEL, content: 'DMs are refused' });
  });

  it('stores commands registered through the client and through REST', async () => {
    const client = await connect();
    const application = client.application;
    if (application === null) throw new Error('no application');
    standIn.seedCommand(GUILD, { name: 'foreign', description: 'not ours' });

    await application.commands.set([{ name: 'status', description: 'Fleet status' }], GUILD);
    expect(standIn.guildCommands(GUILD).map((c) => c.name)).toEqual(['status']);
    const statusId = standIn.guildCommands(GUILD)[0]?.id;

    await client.rest.put(Routes.applicationGuildCommands(standIn.appId, GUILD), {
      body: [
        { name: 'status', description: 'Fleet status, v2' },
        { name: 'spawn', description: 'Spawn a host' },
      ],
    });
    expect(standIn.guildCommands(GUILD).map((c) => [c.name, c.description])).toEqual([
      ['status', 'Fleet status, v2'],
      ['spawn', 'Spawn a host'],
    ]);
    // A bulk overwrite keeps the id of a command of the same name.
    expect(standIn.guildCommands(GUILD)[0]?.id).toBe(statusId);

    // POST is create-or-update by name.
    const spawn = await application.commands.create({ name: 'spawn', description: 'Spawn a host, v2' }, GUILD);
    expect(standIn.guildCommands(GUILD)).toHaveLength(2);
    expect(spawn.description).toBe('Spawn a host, v2');
    await application.commands.create({ name: 'jobs', description: 'Jobs' });
    expect(standIn.globalCommands.map((c) => c.name)).toEqual(['jobs']);

    await application.commands.edit(spawn.id, { description: 'Spawn' }, GUILD);
    expect(standIn.guildCommands(GUILD).find((c) => c.id === spawn.id)?.description).toBe('Spawn');
    const fetched = await application.commands.fetch({ guildId: GUILD });
    expect([...fetched.values()].map((c) => c.name).sort()).toEqual(['spawn', 'status']);
    await application.commands.delete(spawn.id, GUILD);
    expect(standIn.guildCommands(GUILD).map((c) => c.name)).toEqual(['status']);

    // Discord's form validation: a command name must be lowercase without spaces.
    await expect(application.commands.create({ name: 'Bad Name', description: 'x' }, GUILD)).rejects.toMatchObject({
      status: 400,
      code: 50035,
    });
    expect(standIn.unknownRoutes).toEqual([]);
  });

  it('records unknown routes and answers them 404', async () => {
    const client = await connect();
    await expect(client.rest.get('/nope/123')).rejects.toBeInstanceOf(DiscordAPIError);
    // Another application's commands are not a route of this one.
    await expect(client.rest.get(Routes.applicationCommands('1'))).rejects.toMatchObject({ status: 404 });
    expect(standIn.unknownRoutes.map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /nope/123',
      'GET /applications/1/commands',
    ]);
  });

  it('rejects a wrong token at login with TokenInvalid', async () => {
    const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: standIn.apiUrl } });
    clients.push(client);
    await expect(client.login('wrong-token')).rejects.toMatchObject({ code: 'TokenInvalid' });
    expect(summary(standIn.calls)).toEqual(['GET /gateway/bot 401']);
  });

  it("refuses an autocomplete answer over Discord's limits, as Discord does (400 Invalid Form Body)", async () => {
    const client = await connect();
    const answers = new Map<string, { name: string; value: string }[]>();
    const done = handleInteractions(client, async (i) => {
      if (i.isAutocomplete()) await i.respond(answers.get(i.options.getFocused()) ?? []);
    });
    const long = 'x'.repeat(101);
    answers.set(
      'many',
      Array.from({ length: 26 }, (_, n) => ({ name: `c${n}`, value: `c${n}` })),
    );
    answers.set('long', [{ name: long, value: 'ok' }]);
    answers.set('fine', [{ name: 'x'.repeat(100), value: 'x'.repeat(100) }]);
    const ask = (value: string) =>
      standIn.injectAutocomplete({
        name: 'memory',
        options: [{ type: 3, name: 'path', value, focused: true }],
        user: operator,
        channelId: CHANNEL,
      });
    for (const value of ['many', 'long']) {
      const { id } = ask(value);
      await expect(done(id)).rejects.toThrow(/Invalid Form Body/);
      expect(standIn.responsesFor(id).callbacks).toEqual([]);
    }
    const { id } = ask('fine');
    await done(id);
    expect(standIn.responsesFor(id).callbacks).toHaveLength(1);
  });

  it('enforce_nonce: the same nonce in the same channel returns the first message, once', async () => {
    const client = await connect();
    const channel = client.channels.cache.get(CHANNEL);
    if (channel === undefined || !channel.isSendable()) throw new Error('no channel');
    const [a, b] = await Promise.all([
      channel.send({ content: 'result', nonce: 'spawn-3-result', enforceNonce: true }),
      channel.send({ content: 'result again', nonce: 'spawn-3-result', enforceNonce: true }),
    ]);
    expect(a.id).toBe(b.id);
    // Without enforce_nonce, or with another nonce, a message is made each time.
    await channel.send({ content: 'plain', nonce: 'spawn-3-result' });
    await channel.send({ content: 'other', nonce: 'spawn-4-result', enforceNonce: true });
    expect(standIn.channelMessages(CHANNEL).map((m) => m.content)).toEqual(['result', 'plain', 'other']);
    await expect(channel.send({ content: 'x', nonce: 'n'.repeat(26), enforceNonce: true })).rejects.toThrow(
      /Invalid Form Body/,
    );
  });

  it('reads and changes the guild: messages, files, reactions, channels, roles, members, DMs', async () => {
    const client = await connect([GatewayIntentBits.Guilds, GatewayIntentBits.GuildMembers]);
    const guild = client.guilds.cache.get(GUILD);
    const channel = guild?.channels.cache.get(CHANNEL);
    if (guild === undefined || channel === undefined || !channel.isSendable()) throw new Error('no channel');

    await channel.sendTyping();
    const sent = await channel.send({
      content: 'job spawn-clawdinator-3 done',
      files: [new AttachmentBuilder(Buffer.from('output'), { name: 'out.txt' })],
    });
    await sent.react('👍');
    await sent.edit('job spawn-clawdinator-3 finished');
    const [posted] = standIn.channelMessages(CHANNEL);
    expect(posted).toMatchObject({ id: sent.id, content: 'job spawn-clawdinator-3 finished', reactions: ['👍'] });
    expect(posted?.attachments.map((a) => [a.filename, a.data.toString()])).toEqual([['out.txt', 'output']]);

    const created = await guild.channels.create({ name: 'ops-log' });
    expect(standIn.guildChannels(GUILD).map((c) => c.name)).toEqual(['ops', 'ops-log']);
    const role = await guild.roles.create({ name: 'fleet-admins' });
    expect(standIn.guildRoles(GUILD).map((r) => r.name)).toContain('fleet-admins');

    const member = await guild.members.fetch({ user: operator.id, force: true });
    await member.roles.add(role.id);
    expect(standIn.memberRoles(GUILD, operator.id)).toEqual([ROLE_OPS, role.id]);
    await member.roles.remove(ROLE_OPS);
    expect(standIn.memberRoles(GUILD, operator.id)).toEqual([role.id]);
    // All members over the gateway (REQUEST_GUILD_MEMBERS → GUILD_MEMBERS_CHUNK).
    const all = await guild.members.fetch();
    expect([...all.keys()].sort()).toEqual([operator.id, standIn.botUser.id].sort());

    const user = await client.users.fetch(operator.id);
    const dm = await user.send('your host is ready');
    expect(standIn.channelMessages(dm.channelId).map((m) => m.content)).toEqual(['your host is ready']);

    expect(client.channels.cache.has(created.id)).toBe(true);
    expect(standIn.calls.filter((c) => c.status >= 400)).toEqual([]);
    expect(standIn.unknownRoutes).toEqual([]);
  });

  it('refuses a second acknowledgement and webhook calls after the token expired', async () => {
    // Two gateways on one session each get the interaction; Discord accepts one acknowledgement.
    const first = await connect();
    const second = await connect();
    const outcomes = [first, second].map((client) =>
      handleInteractions(client, async (i) => {
        if (!i.isChatInputCommand()) return;
        await i.deferReply();
      }),
    );
    const { id, token } = standIn.injectCommand({ name: 'status', user: operator, channelId: CHANNEL });
    const settled = await Promise.allSettled(outcomes.map((done) => done(id)));
    expect(settled.map((s) => s.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toMatchObject({ status: 400, code: 40060 });

    standIn.expireInteraction(id);
    await expect(
      first.rest.patch(Routes.webhookMessage(standIn.appId, token), { body: { content: 'late' }, auth: false }),
    ).rejects.toMatchObject({ status: 401, code: 50027 });
    // A 401 on an unauthenticated call leaves the bot's token in place.
    await expect(first.rest.get(Routes.user('@me'))).resolves.toMatchObject({ id: standIn.botUser.id });
  });

  // discord.js waits a fixed 500 ms before reconnecting, so this one takes that long.
  it('resumes a dropped session and replays what was dispatched meanwhile', async () => {
    const client = await connect();
    let identifies = 0;
    standIn.events.on('identify', () => identifies++);
    const done = handleInteractions(client, async (i) => {
      if (i.isChatInputCommand()) await i.deferReply();
    });
    const resumed = once(standIn.events, 'resume');
    standIn.dropConnections();
    const { id } = standIn.injectCommand({ name: 'status', user: operator, channelId: CHANNEL });
    await resumed;
    await done(id);
    expect(standIn.responsesFor(id).callbacks.map((c) => c.type)).toEqual([5]);
    expect(identifies).toBe(0);
  });

  it('defers 200 interactions injected at once', async () => {
    const client = await connect();
    handleInteractions(client, async (i) => {
      if (i.isChatInputCommand()) await i.deferReply();
    });
    const injected = Array.from({ length: 200 }, (_, n) =>
      standIn.injectCommand({
        name: 'status',
        user: { id: String(1200000000000000000n + BigInt(n)), username: `user-${n}` },
        channelId: CHANNEL,
      }),
    );
    await Promise.all(
      injected.map(({ id }) => standIn.waitForCall((c) => c.path.startsWith(`/interactions/${id}/`), 10_000)),
    );
    expect(new Set(injected.map((i) => i.id)).size).toBe(200);
    const types = injected.map(({ id }) =>
      standIn
        .responsesFor(id)
        .callbacks.map((c) => c.type)
        .join(','),
    );
    expect(types.filter((t) => t === '5')).toHaveLength(200);
    expect(standIn.calls.filter((c) => c.status !== 204 && c.path.endsWith('/callback'))).toEqual([]);
  });

  it('speaks zlib-stream to a client that asks for it', async () => {
    const ws = new WebSocket(`${standIn.gatewayUrl}?v=10&encoding=json&compress=zlib-stream`);
    const inflate = createInflate();
    const payloads: { op: number; t?: string }[] = [];
    const received = new EventEmitter();
    let text = '';
    inflate.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      try {
        payloads.push(JSON.parse(text) as { op: number; t?: string });
        text = '';
        received.emit('payload');
      } catch {
        // a payload split over frames: wait for the rest
      }
    });
    ws.on('message', (data: Buffer) => {
      inflate.write(data);
      inflate.flush(zlibConstants.Z_SYNC_FLUSH);
    });
    const waitFor = async (n: number) => {
      while (payloads.length < n) await once(received, 'payload', { signal: AbortSignal.timeout(5000) });
    };
    try {
      await waitFor(1);
      expect(payloads[0]?.op).toBe(10);
      ws.send(JSON.stringify({ op: 2, d: { token: TOKEN, intents: 1, properties: {} } }));
      await waitFor(3);
      expect(payloads.map((p) => p.t ?? p.op)).toEqual([10, 'READY', 'GUILD_CREATE']);
    } finally {
      ws.close(1000);
      inflate.destroy();
    }
  });
});
