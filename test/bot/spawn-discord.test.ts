import { describe, expect, it } from 'vitest';
import { ALICE, GUILD, OPERATOR_ROLE, OPS_CHANNEL, policy } from '../support/bot.js';
import { discordBot } from '../support/bot-fleet.js';
import type { RestCall } from '../support/discord-standin.js';
import { lifecycleSuite } from '../support/lifecycle.js';

const TOKEN = 'spawn-test-bot-token';
const suite = lifecycleSuite();

describe('/spawn through Discord', () => {
  it('the reply shows progress edits, then "online"; the new member is in the registry', async () => {
    const { redis, sim } = suite;
    const { cloud, registry } = sim;
    const bot = await discordBot(suite.server, redis, suite.harness({ policy }), { token: TOKEN });
    suite.defer(() => bot.close());
    const { standIn } = bot;

    const i = standIn.injectCommand({
      name: 'spawn',
      user: { id: ALICE, username: 'alice' },
      roles: [OPERATOR_ROLE],
      guildId: GUILD,
      channelId: OPS_CHANNEL,
      options: [{ type: 3, name: 'name', value: 'clawdinator-3' }],
    });
    const content = (c: RestCall) => (c.body as { content?: string }).content ?? '';
    const edits = (c: RestCall) => c.method === 'PATCH' && c.path.includes(i.token);
    const done = await standIn.waitForCall((c) => edits(c) && content(c).startsWith('✅'), 30_000);
    expect(content(done)).toMatch(
      /^✅ `spawn-\d+` clawdinator-3 online: i-[0-9a-f]+, ami-00000000000000a11, 10\.0\.\d+\.\d+, in \d+s/,
    );
    const progress = standIn.calls.filter((c) => edits(c) && content(c).startsWith('⏳'));
    expect(progress.length).toBeGreaterThan(3);
    expect(progress.map(content).join('\n')).toContain('apply');
    expect(Object.keys((await registry.read()).registry)).toEqual(['clawdinator-1', 'clawdinator-3']);
    expect((await cloud.listFleetInstances()).filter((x) => x.name === 'clawdinator-3')).toHaveLength(1);
    // The bot's token and the agent's private key never went anywhere near Discord.
    const sent = JSON.stringify(standIn.calls.map((c) => c.body));
    expect(sent).not.toContain(TOKEN);
    expect(sent).not.toContain('PRIVATE KEY');
  });
});
