// The real gateway code (discord.js Client, adapter, dispatcher, /memory) against the
// loopback Discord stand-in: what the bot sends, in what order.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { commands } from '../../../bot/commands/index.js';
import { attachmentOriginsFor, type Gateway, startGateway } from '../../../bot/discord/gateway.js';
import { createDispatcher } from '../../../bot/dispatch.js';
import { createRest, registerCommands } from '../../../bot/register.js';
import { DEFAULT_INSTANCE_TYPES } from '../../../lib/config.js';
import { createLogger } from '../../../lib/log.js';
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
import { runCli, tempDir } from '../../support/cli.js';
import { DiscordStandIn, type RestCall } from '../../support/discord-standin.js';
import { holdFlock } from '../../support/flock.js';

const TOKEN = 'planted-bot-token-0f3c9d8e7a6b';
const APP = '500000000000000001';
const alice = { id: ALICE, username: 'alice' };
const bob = { id: BOB, username: 'bob' };

let standIn: DiscordStandIn;
let gateway: Gateway;
let deps: Awaited<ReturnType<typeof botDeps>>;
let logged: string[];

beforeEach(async () => {
  standIn = new DiscordStandIn({
    appId: APP,
    token: TOKEN,
    guilds: [
      {
        id: GUILD,
        channels: [
          { id: OPS_CHANNEL, name: 'ops' },
          { id: OTHER_CHANNEL, name: 'general' },
        ],
        roles: [
          { id: OPERATOR_ROLE, name: 'operator' },
          { id: READER_ROLE, name: 'reader' },
        ],
      },
    ],
  });
  await standIn.start();
  deps = await botDeps({ maxBytes: 64 * 1024 });
  logged = [];
  deps.log = createLogger(
    'debug',
    new Writable({
      write(chunk, _e, done) {
        logged.push(String(chunk));
        done();
      },
    }),
  );
  const origins = attachmentOriginsFor(standIn.apiUrl);
  deps.attachmentOrigins = origins;
  gateway = await startGateway({
    token: TOKEN,
    apiUrl: standIn.apiUrl,
    dispatcher: createDispatcher(commands, deps),
    attachmentOrigins: origins,
    log: deps.log,
  });
});

afterEach(async () => {
  await gateway?.stop(1000);
  await standIn.stop();
});

const isCallback = (id: string) => (c: RestCall) =>
  c.path.startsWith(`/interactions/${id}/`) && c.path.endsWith('/callback');
const isEdit = (token: string) => (c: RestCall) => c.method === 'PATCH' && c.path.includes(`/${token}/messages/`);
const isFollowUp = (token: string) => (c: RestCall) => c.method === 'POST' && c.path === `/webhooks/${APP}/${token}`;

function command(
  name: string,
  sub: string,
  options: Record<string, string>,
  who = alice,
  roles = [OPERATOR_ROLE],
  channelId = OPS_CHANNEL,
) {
  return standIn.injectCommand({
    name,
    user: who,
    roles,
    guildId: GUILD,
    channelId,
    options: [
      { type: 1, name: sub, options: Object.entries(options).map(([k, v]) => ({ type: 3, name: k, value: v })) },
    ],
  });
}

function payloadOf(call: RestCall): { content?: string; flags?: number; components?: unknown[] } {
  const body = call.body as { payload_json?: unknown; data?: unknown; content?: string };
  if (body && typeof body === 'object' && 'payload_json' in body) return body.payload_json as { content?: string };
  if (body && typeof body === 'object' && 'data' in body) return body.data as { content?: string };
  return body as { content?: string };
}

function auditText(): string {
  return readFileSync(join(deps.root, 'audit/2026-11-24.md'), 'utf8');
}

describe('gateway against the loopback Discord', () => {
  it('/memory read: defers, then edits the reply with a code block', async () => {
    const i = command('memory', 'read', { path: 'ops.md' });
    const defer = await standIn.waitForCall(isCallback(i.id));
    expect((defer.body as { type: number }).type).toBe(5);
    const edit = await standIn.waitForCall(isEdit(i.token));
    expect(edit.seq).toBeGreaterThan(defer.seq);
    expect(payloadOf(edit).content).toContain('```md\n# Ops Memory');
    expect(edit.auth).toBeUndefined();
  });

  it('keeps no message it edited: the gateway has no message cache to fill', async () => {
    const i = command('memory', 'read', { path: 'ops.md' });
    await standIn.waitForCall(isEdit(i.token));
    // The audit line is written once the edit has returned (and discord.js has built its Message).
    await vi.waitFor(() =>
      expect(existsSync(join(deps.root, 'audit/2026-11-24.md')) && auditText()).toContain('/memory read'),
    );
    const channel = gateway.client.channels.cache.get(OPS_CHANNEL);
    expect(channel?.isTextBased()).toBe(true);
    expect(channel?.isTextBased() ? channel.messages.cache.size : -1).toBe(0);
  });

  it('/memory read of a long file sends an attachment, not a truncated message', async () => {
    writeFileSync(join(deps.root, 'long.md'), 'a line of notes\n'.repeat(300));
    const i = command('memory', 'read', { path: 'long.md' });
    const edit = await standIn.waitForCall(isEdit(i.token));
    const body = edit.body as { payload_json: { content: string }; files: { filename: string; data: Buffer }[] };
    expect(body.files.map((f) => f.filename)).toEqual(['long.md']);
    expect(body.files[0]?.data.toString()).toBe('a line of notes\n'.repeat(300));
    expect(body.payload_json.content).toContain('attached as long.md');
  });

  it('/memory edit: a modal pre-filled with the file; the submit saves it; a concurrent change is a conflict', async () => {
    writeFileSync(join(deps.root, 'team.md'), 'v1\n');
    const i = command('memory', 'edit', { path: 'team.md' });
    const cb = await standIn.waitForCall(isCallback(i.id));
    const modal = (cb.body as { type: number; data: { custom_id: string; components: unknown[] } }).data;
    expect((cb.body as { type: number }).type).toBe(9);
    expect(JSON.stringify(modal.components)).toContain('v1\\n');
    const submit = standIn.injectModalSubmit({
      customId: modal.custom_id,
      fields: { content: 'v2\n' },
      user: alice,
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
    });
    const saved = await standIn.waitForCall(isEdit(submit.token));
    expect(payloadOf(saved).content).toContain('Saved **team.md**');
    expect(readFileSync(join(deps.root, 'team.md'), 'utf8')).toBe('v2\n');

    // The same form submitted again: the file changed since it was read.
    const again = standIn.injectModalSubmit({
      customId: modal.custom_id,
      fields: { content: 'v3\n' },
      user: alice,
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
    });
    const conflict = await standIn.waitForCall(isEdit(again.token));
    expect(payloadOf(conflict).content).toContain('changed since: team.md');
    expect(readFileSync(join(deps.root, 'team.md'), 'utf8')).toBe('v2\n');
  });

  it('/memory edit answers "busy" ephemerally when the file stays locked', async () => {
    writeFileSync(join(deps.root, 'team.md'), 'v1\n');
    const held = await holdFlock(join(deps.root, 'team.md'), '-x', 30);
    try {
      const i = command('memory', 'edit', { path: 'team.md' });
      const cb = await standIn.waitForCall(isCallback(i.id));
      const body = cb.body as { type: number; data: { content: string; flags: number } };
      expect(body.type).toBe(4);
      expect(body.data.flags & 64).toBe(64);
      expect(body.data.content).toContain('team.md is busy');
    } finally {
      await held.release();
    }
  });

  it('refuses by policy: wrong role, wrong channel, DM — ephemeral, nothing run, audited', async () => {
    const wrongRole = command('memory', 'write', { path: 'x.md', content: 'x' }, bob, [READER_ROLE]);
    const wrongChannel = command(
      'memory',
      'write',
      { path: 'x.md', content: 'x' },
      alice,
      [OPERATOR_ROLE],
      OTHER_CHANNEL,
    );
    const dm = standIn.injectCommand({ name: 'status', user: alice, guildId: null, channelId: '200000000000000009' });
    for (const [inj, text] of [
      [wrongRole, 'You are not allowed to use /memory write.'],
      [wrongChannel, '/memory write is not available in this channel.'],
      [dm, 'Commands are not available in direct messages.'],
    ] as const) {
      const cb = await standIn.waitForCall(isCallback(inj.id));
      const body = cb.body as { type: number; data: { content: string; flags: number } };
      expect(body.type).toBe(4);
      expect(body.data.flags & 64).toBe(64);
      expect(body.data.content).toContain(text);
    }
    expect(readdirSync(deps.root)).not.toContain('x.md');
    await new Promise((r) => setTimeout(r, 50));
    expect(auditText().match(/refused/g)).toHaveLength(3);
  });

  it('defers before a slow handler finishes: a write waiting on a flock(1) holder', async () => {
    const file = join(deps.root, 'ops.md');
    const held = await holdFlock(file, '-x', 30);
    const i = command('memory', 'append', { path: 'ops.md', content: 'late line' });
    const defer = await standIn.waitForCall(isCallback(i.id));
    expect(standIn.calls.some(isEdit(i.token))).toBe(false);
    const releasedAt = standIn.calls.length;
    await held.release();
    const edit = await standIn.waitForCall(isEdit(i.token));
    expect(defer.seq).toBeLessThan(edit.seq);
    expect(edit.seq).toBeGreaterThan(releasedAt);
    expect(readFileSync(file, 'utf8').endsWith('late line\n')).toBe(true);
  });

  it('hostile options are refused before the store is touched, ephemerally', async () => {
    const before = readdirSync(deps.root, { recursive: true }).map(String).sort();
    const i = command('memory', 'write', { path: '../escape.md', content: 'x' });
    const follow = await standIn.waitForCall(isFollowUp(i.token));
    expect(payloadOf(follow).content).toContain('path refused');
    expect((payloadOf(follow).flags ?? 0) & 64).toBe(64);
    const after = readdirSync(deps.root, { recursive: true })
      .map(String)
      .filter((p) => !p.startsWith('audit'))
      .sort();
    expect(after).toEqual(before.filter((p) => !p.startsWith('audit')));
  });

  it('writes an audit line per command and never shows the bot token anywhere', async () => {
    const i = command('memory', 'write', { path: 'daily/today.md', content: 'secret-ish words' });
    await standIn.waitForCall(isEdit(i.token));
    await new Promise((r) => setTimeout(r, 50));
    const audit = auditText();
    expect(audit).toContain('/memory write path:daily/today.md content:[16 chars] → ok');
    expect(audit).not.toContain('secret-ish words');
    const everything = [JSON.stringify(standIn.calls.map((c) => c.body)), audit, logged.join('')].join('\n');
    expect(everything).not.toContain(TOKEN);
  });
});

describe('confirmation buttons', () => {
  it('a failing Discord call is logged without the interaction token, the bot token or the request body', async () => {
    const secretPath = 'planted-secret-path-7c1e.md';
    // Too late for Discord: its callbacks fail with a real DiscordAPIError (404, 10062) whose
    // URL is /interactions/<id>/<token>/callback; so does the ephemeral error reply after it.
    const i = standIn.injectCommand({
      name: 'memory',
      user: alice,
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
      options: [{ type: 1, name: 'read', options: [{ type: 3, name: 'path', value: secretPath }] }],
      expired: true,
    });
    const failed = await standIn.waitForCall(isCallback(i.id));
    expect(failed.status).toBe(404);
    const deadline = Date.now() + 10_000;
    while (!logged.some((l) => l.includes('error reply failed'))) {
      if (Date.now() > deadline) throw new Error(`no failure logged:\n${logged.join('')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const lines = logged.filter((l) => l.includes('"err"'));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of logged) {
      expect(line).not.toContain(i.token);
      expect(line).not.toContain(TOKEN);
      expect(line).not.toContain('requestBody');
    }
    // What it keeps: the error's name, code, status, method and the path with the token replaced.
    const err = JSON.parse(lines.find((l) => l.includes('handler failed')) as string).err;
    expect(err).toMatchObject({
      type: 'DiscordAPIError[10062]',
      message: 'Unknown interaction',
      code: 10062,
      status: 404,
      method: 'POST',
      path: `/api/v10/interactions/${i.id}/[token]/callback`,
    });
  });

  it("/retire asks first; the requester's press replaces the question (callback type 7) and queues the job", async () => {
    const queued: unknown[] = [];
    deps.jobs = {
      enqueue: async (r) => {
        queued.push(r.data);
        return { jobId: `retire-${r.requestId}`, queue: 'clawdinator-fleet' };
      },
    };
    const ask = standIn.injectCommand({
      name: 'retire',
      user: alice,
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
      options: [{ type: 3, name: 'name', value: 'clawdinator-3' }],
    });
    const question = await standIn.waitForCall(isCallback(ask.id));
    const rows = (question.body as { data: { components: { components: { custom_id: string }[] }[] } }).data.components;
    const confirm = rows[0]?.components[0]?.custom_id as string;
    expect(confirm).toMatch(/^retire:confirm:clawdinator-3:/);
    const other = standIn.injectButton({
      customId: confirm,
      user: bob,
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
    });
    const refused = await standIn.waitForCall(isCallback(other.id));
    expect((refused.body as { type: number; data: { flags: number } }).type).toBe(4);
    expect(queued).toEqual([]);
    const press = standIn.injectButton({
      customId: confirm,
      user: alice,
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
    });
    const updated = await standIn.waitForCall(isCallback(press.id));
    expect(updated.body).toMatchObject({
      type: 7,
      data: { content: '⏳ Retiring **clawdinator-3**…', components: [] },
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(queued).toEqual([{ name: 'clawdinator-3' }]);
  });
});

describe('register-commands', () => {
  it('creates ours, leaves foreign commands alone, then updates only what changed', async () => {
    standIn.seedCommand(GUILD, { name: 'foreign', description: 'another tool' });
    const rest = createRest(TOKEN, standIn.apiUrl);
    const all = commands.map((c) => ({ name: c.data.name, json: c.data.toJSON() as Record<string, unknown> }));
    const first = await registerCommands({ rest, appId: APP, guildIds: [GUILD], commands: all });
    expect(first[0]?.created.sort()).toEqual(all.map((c) => c.name).sort());
    expect(first[0]?.foreign).toEqual(['foreign']);
    const second = await registerCommands({ rest, appId: APP, guildIds: [GUILD], commands: all });
    expect(second[0]?.unchanged.length).toBe(all.length);
    expect(second[0]?.created).toEqual([]);
    const changed = all.map((c) =>
      c.name === 'status' ? { ...c, json: { ...c.json, description: 'Fleet at a glance' } } : c,
    );
    const third = await registerCommands({ rest, appId: APP, guildIds: [GUILD], commands: changed });
    expect(third[0]?.updated).toEqual(['status']);
    expect(standIn.guildCommands(GUILD).map((c) => c.name)).toContain('foreign');
    expect(standIn.calls.some((c) => c.method === 'DELETE')).toBe(false);
    expect(standIn.unknownRoutes).toEqual([]);
  });

  it('offers /spawn the instance types the spawn job allows (CLAWDINATOR_INSTANCE_TYPES)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'token'), TOKEN);
    const env = {
      CLAWDINATOR_DISCORD_TOKEN_FILE: join(dir, 'token'),
      CLAWDINATOR_DISCORD_API_URL: standIn.apiUrl,
      CLAWDINATOR_DISCORD_APP_ID: APP,
      CLAWDINATOR_DISCORD_GUILD_IDS: JSON.stringify([GUILD]),
    };
    const choices = () => {
      const spawn = standIn.guildCommands(GUILD).find((c) => c.name === 'spawn') as unknown as {
        options: { name: string; choices?: { value: string }[] }[];
      };
      return spawn.options.find((o) => o.name === 'instance-type')?.choices?.map((c) => c.value);
    };
    expect((await runCli(['register-commands'], { env })).code).toBe(0);
    expect(choices()).toEqual([...DEFAULT_INSTANCE_TYPES]);
    const narrow = { ...env, CLAWDINATOR_INSTANCE_TYPES: '["t3.small","t3.large"]' };
    const again = await runCli(['register-commands'], { env: narrow });
    expect(again.stdout).toContain('updated: /spawn');
    expect(choices()).toEqual(['t3.small', 't3.large']);
  });
});
