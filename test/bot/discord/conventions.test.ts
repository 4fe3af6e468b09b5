// Discord's conventions, through the real discord.js Client against the loopback stand-in:
// destructive commands registered with default member permissions (Manage Server), no
// message of the bot pings anyone, autocomplete answers within Discord's limits, a
// directory read is one line, and refusals tell "not allowed" from "not in this channel".
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PermissionFlagsBits } from 'discord.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commands } from '../../../bot/commands/index.js';
import { attachmentOriginsFor, type Gateway, startGateway } from '../../../bot/discord/gateway.js';
import { createDispatcher } from '../../../bot/dispatch.js';
import { createRest, registerCommands } from '../../../bot/register.js';
import {
  ALICE,
  BOB,
  botDeps,
  GUILD,
  OPERATOR_ROLE,
  OPS_CHANNEL,
  OTHER_CHANNEL,
  READER_ROLE,
} from '../../support/bot.js';
import { DiscordStandIn, type RestCall } from '../../support/discord-standin.js';

const TOKEN = 'conventions-bot-token';
const APP = '500000000000000002';
const alice = { id: ALICE, username: 'alice' };
const bob = { id: BOB, username: 'bob' };
const carol = { id: '400000000000000003', username: 'carol' };

let standIn: DiscordStandIn;
let gateway: Gateway;
let deps: Awaited<ReturnType<typeof botDeps>>;

beforeEach(async () => {
  standIn = new DiscordStandIn({
    appId: APP,
    token: TOKEN,
    guilds: [
      {
        id: GUILD,
        channels: [{ id: OPS_CHANNEL }, { id: OTHER_CHANNEL }],
        roles: [{ id: OPERATOR_ROLE }, { id: READER_ROLE }],
      },
    ],
  });
  await standIn.start();
  deps = await botDeps({ maxBytes: 64 * 1024 });
  deps.jobs = {
    enqueue: async (r) => ({ jobId: `${r.type}-${r.requestId}`, queue: 'clawdinator-fleet' }),
  };
  gateway = await startGateway({
    token: TOKEN,
    apiUrl: standIn.apiUrl,
    dispatcher: createDispatcher(commands, deps),
    attachmentOrigins: attachmentOriginsFor(standIn.apiUrl),
    log: deps.log,
  });
});

afterEach(async () => {
  await gateway?.stop(1000);
  await standIn.stop();
});

const isCallback = (id: string) => (c: RestCall) =>
  c.path.startsWith(`/interactions/${id}/`) && c.path.endsWith('/callback');
/** The call that ends an interaction: its edit, its follow-up, or a callback with a message. */
const isAnswer = (token: string, id: string) => (c: RestCall) =>
  (c.path.startsWith(`/webhooks/${APP}/${token}`) && c.method !== 'GET' && c.method !== 'DELETE') ||
  (isCallback(id)(c) && (c.body as { type?: number }).type !== 5);

function slash(
  name: string,
  options: unknown[],
  who = alice,
  roles: string[] = [OPERATOR_ROLE],
  channelId = OPS_CHANNEL,
) {
  return standIn.injectCommand({ name, user: who, roles, guildId: GUILD, channelId, options });
}

const sub = (name: string, options: Record<string, string> = {}) => [
  { type: 1, name, options: Object.entries(options).map(([k, v]) => ({ type: 3, name: k, value: v })) },
];

/** The message fields of a call: a JSON body, a multipart payload_json, or a callback's data. */
function messageOf(call: RestCall): Record<string, unknown> | null {
  const body = call.body as Record<string, unknown> | undefined;
  if (body === undefined || typeof body !== 'object') return null;
  const payload = ('payload_json' in body ? body.payload_json : body) as Record<string, unknown>;
  const message = ('data' in payload && 'type' in payload ? payload.data : payload) as Record<string, unknown>;
  return message && typeof message === 'object' && 'content' in message ? message : null;
}

const contentOf = (call: RestCall) => String(messageOf(call)?.content ?? '');

async function answer(i: { id: string; token: string }): Promise<string> {
  return contentOf(await standIn.waitForCall(isAnswer(i.token, i.id)));
}

describe('Discord conventions', () => {
  it('destructive commands are registered with default member permissions: Manage Server', async () => {
    const rest = createRest(TOKEN, standIn.apiUrl);
    const all = commands.map((c) => ({ name: c.data.name, json: c.data.toJSON() as Record<string, unknown> }));
    await registerCommands({ rest, appId: APP, guildIds: [GUILD], commands: all });
    const registered = Object.fromEntries(
      standIn.guildCommands(GUILD).map((c) => [c.name, c.default_member_permissions]),
    );
    const manageGuild = String(PermissionFlagsBits.ManageGuild);
    for (const name of ['spawn', 'retire', 'replace', 'rebuild-ami', 'deploy']) {
      expect(registered[name], name).toBe(manageGuild);
    }
    for (const name of ['status', 'memory', 'jobs']) expect(registered[name], name).toBeNull();
    // Registering again sees no difference: the permission is part of what is compared.
    const again = await registerCommands({ rest, appId: APP, guildIds: [GUILD], commands: all });
    expect(again[0]?.unchanged.length).toBe(all.length);
  });

  it('no message the bot sends can ping: replies, edits, follow-ups and updates carry allowed_mentions.parse = []', async () => {
    writeFileSync(join(deps.root, '@everyone.md'), '@everyone <@&300000000000000001> <@400000000000000002> read me\n');
    const read = slash('memory', sub('read', { path: '@everyone.md' }));
    expect(await answer(read)).toContain('@everyone');
    const list = slash('memory', sub('list'));
    expect(await answer(list)).toContain('@everyone.md');
    const refused = slash('memory', sub('write', { path: '@everyone.md', content: 'x' }), bob, [READER_ROLE]);
    expect(await answer(refused)).toContain('not allowed');
    const failed = slash('memory', sub('read', { path: '@here-missing.md' }));
    expect(await answer(failed)).toContain('no such file');
    const ask = slash('retire', [{ type: 3, name: 'name', value: 'clawdinator-3' }]);
    await standIn.waitForCall(isCallback(ask.id));
    const question = standIn.responsesFor(ask.id).callbacks[0]?.data as {
      components: { components: { custom_id: string }[] }[];
    };
    const press = standIn.injectButton({
      customId: question.components[0]?.components[0]?.custom_id as string,
      user: alice,
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
    });
    await standIn.waitForCall(isCallback(press.id));
    await new Promise((r) => setTimeout(r, 100));

    const messages = standIn.calls.map((c) => ({ call: c, message: messageOf(c) })).filter((m) => m.message !== null);
    // Replies (callback 4), edits, follow-ups and a button's update (callback 7), at least.
    expect(messages.length).toBeGreaterThanOrEqual(6);
    for (const { call, message } of messages) {
      expect(message?.allowed_mentions, `${call.method} ${call.path}`).toEqual({ parse: [] });
    }
  });

  it('autocomplete stays within 25 choices of at most 100 characters; long paths are shortened from the left', async () => {
    const deep = `projects/${'a-rather-long-folder-name/'.repeat(4)}notes`;
    mkdirSync(join(deps.root, deep), { recursive: true });
    for (let n = 0; n < 40; n++) writeFileSync(join(deps.root, deep, `meeting-${String(n).padStart(2, '0')}.md`), 'x');
    const ask = standIn.injectAutocomplete({
      name: 'memory',
      user: alice,
      roles: [OPERATOR_ROLE],
      channelId: OPS_CHANNEL,
      options: [{ type: 1, name: 'read', options: [{ type: 3, name: 'path', value: 'meeting-3', focused: true }] }],
    });
    const call = await standIn.waitForCall(isCallback(ask.id));
    expect(call.status).toBe(204);
    const { choices } = (call.body as { data: { choices: { name: string; value: string }[] } }).data;
    expect(choices.length).toBeGreaterThan(0);
    expect(choices.length).toBeLessThanOrEqual(25);
    for (const c of choices) {
      expect(c.name.length).toBeLessThanOrEqual(100);
      expect(c.value.length).toBeLessThanOrEqual(100);
      expect(c.name.startsWith('…')).toBe(true);
      expect(c.name.endsWith('.md')).toBe(true);
    }
    // The shortened value, chosen, reads the file it stands for.
    const chosen = choices[0] as { value: string };
    const read = slash('memory', sub('read', { path: chosen.value }));
    const text = await answer(read);
    expect(text).toContain(`${deep}/meeting-3`);

    // Many matches: 25 at most.
    const all = standIn.injectAutocomplete({
      name: 'memory',
      user: alice,
      roles: [OPERATOR_ROLE],
      channelId: OPS_CHANNEL,
      options: [{ type: 1, name: 'read', options: [{ type: 3, name: 'path', value: 'meeting', focused: true }] }],
    });
    const many = await standIn.waitForCall(isCallback(all.id));
    expect(many.status).toBe(204);
    expect((many.body as { data: { choices: unknown[] } }).data.choices).toHaveLength(25);
  });

  it('/memory read of a directory is one line, not "Something went wrong"', async () => {
    const i = slash('memory', sub('read', { path: 'daily' }));
    const text = await answer(i);
    expect(text).toContain('not a file: daily is a directory');
    expect(text).not.toContain('Something went wrong');
  });

  it('refusals tell "not allowed to you" from "not available in this channel"', async () => {
    // An operator, outside the ops channel: the command exists for them, elsewhere.
    const operatorElsewhere = slash('spawn', [{ type: 3, name: 'name', value: 'clawdinator-3' }], alice, [
      OPERATOR_ROLE,
    ]);
    // A reader (memory read/list only) and a member with no role: allowed nowhere.
    const readerHere = slash('spawn', [{ type: 3, name: 'name', value: 'clawdinator-3' }], bob, [READER_ROLE]);
    const readerElsewhere = slash(
      'spawn',
      [{ type: 3, name: 'name', value: 'clawdinator-3' }],
      bob,
      [READER_ROLE],
      OTHER_CHANNEL,
    );
    const nobody = slash('memory', sub('write', { path: 'x.md', content: 'x' }), carol, [], OTHER_CHANNEL);
    const elsewhere = slash(
      'spawn',
      [{ type: 3, name: 'name', value: 'clawdinator-3' }],
      alice,
      [OPERATOR_ROLE],
      OTHER_CHANNEL,
    );
    expect(await answer(elsewhere)).toBe('⚠️ /spawn is not available in this channel.');
    expect(await answer(readerHere)).toBe('⚠️ You are not allowed to use /spawn.');
    expect(await answer(readerElsewhere)).toBe('⚠️ You are not allowed to use /spawn.');
    expect(await answer(nobody)).toBe('⚠️ You are not allowed to use /memory write.');
    expect(await answer(operatorElsewhere)).not.toContain('not available');
  });
});
