// /deploy, /doctor and /logs through the real discord.js gateway against the loopback Discord
// stand-in, on the simulated fleet: the deploy's reply ends in its result; the checklist;
// a journal with planted secrets shown redacted (ephemeral, an attachment when long); a reader
// refused /logs; values Discord would never send (a unit off the list, a line count over the
// cap, a hostile name) refused before any SSM call. No planted secret in any call to Discord.
import { describe, expect, it } from 'vitest';
import { hostOps } from '../../bot/fleet.js';
import { LOG_LINES_MAX } from '../../infra/host-document.js';
import { ALICE, GUILD, OPERATOR_ROLE, OPS_CHANNEL, policy, READER_ROLE } from '../support/bot.js';
import { discordBot } from '../support/bot-fleet.js';
import type { MultipartBody, RestCall } from '../support/discord-standin.js';
import { simLane } from '../support/lane.js';
import { lifecycleSuite } from '../support/lifecycle.js';

const TOKEN = 'host-test-bot-token';
const SECRET = 'planted-redis-password-8e61c2d0';
const TOKEN_LIKE = 'ghs_plantedplantedplantedplanted1234';
const MEMBERS = ['clawdinator-1', 'clawdinator-2'];
const suite = lifecycleSuite({
  members: MEMBERS,
  tokens: [],
  hosts: {
    hostSecrets: { 'redis-password': SECRET },
    journal: {
      'clawdinator-worker': [
        `redis: AUTH ${SECRET} failed (WRONGPASS), retrying`,
        `github: Authorization: token ${TOKEN_LIKE}`,
        ...Array.from({ length: 150 }, (_, n) => `job ${n}: heartbeat ok, nothing to report on this line ${n}`),
      ],
    },
  },
});

const content = (c: RestCall) => (c.body as { content?: string }).content ?? '';
const files = (c: RestCall) => (c.body as Partial<MultipartBody> | undefined)?.files ?? [];
const payload = (c: RestCall) =>
  ((c.body as { payload_json?: unknown }).payload_json ?? c.body) as { content?: string; flags?: number };

async function bot() {
  const h = suite.harness({ policy, types: { lane: simLane(suite.sim) } });
  const b = await discordBot(suite.server, suite.redis, h, { token: TOKEN });
  suite.defer(() => b.close());
  b.deps.host = hostOps({ cloud: suite.sim.cloud, registry: async () => (await suite.sim.registry.read()).registry });
  return b;
}

function command(
  b: Awaited<ReturnType<typeof bot>>,
  name: string,
  options: { type: number; name: string; value: string | number }[],
  roles = [OPERATOR_ROLE],
) {
  return b.standIn.injectCommand({
    name,
    user: { id: ALICE, username: 'alice' },
    roles,
    guildId: GUILD,
    channelId: OPS_CHANNEL,
    options,
  });
}

describe('the host from Discord', () => {
  it('/deploy: the reply follows the job to its result', async () => {
    const b = await bot();
    const i = command(b, 'deploy', [{ type: 3, name: 'rev', value: 'main' }]);
    const done = await b.standIn.waitForCall(
      (c) => c.method === 'PATCH' && c.path.includes(i.token) && /^[✅❌]/.test(content(c)),
      30_000,
    );
    expect(content(done)).toMatch(/^✅ `deploy-\d+` deployed 5a4dbee \(main\) to clawdinator-1, clawdinator-2/);
  });

  it('/deploy to a member not in the registry: refused in one line, nothing queued', async () => {
    const b = await bot();
    b.deps.fleetNames = async () => Object.keys((await suite.sim.registry.read()).registry);
    const i = command(b, 'deploy', [{ type: 3, name: 'target', value: 'clawdinator-9' }]);
    // A refusal after the defer: the public "thinking…" goes, the line comes ephemerally.
    const reply = await b.standIn.waitForCall((c) => c.method === 'POST' && c.path.endsWith(i.token));
    expect(payload(reply).content).toBe('⚠️ clawdinator-9 is not in the fleet registry; /status lists the members.');
    expect(payload(reply).flags).toBe(64);
    expect(await suite.redis.keys(`bull:*:deploy-${i.id}*`)).toEqual([]);
  });

  it('/doctor: the checklist, one line of evidence each', async () => {
    const b = await bot();
    const i = command(b, 'doctor', [{ type: 3, name: 'name', value: 'clawdinator-2' }]);
    const reply = await b.standIn.waitForCall(
      (c) => c.method === 'PATCH' && c.path.includes(i.token) && content(c).includes('🩺'),
      20_000,
    );
    const text = content(reply);
    expect(text).toContain('🩺 clawdinator-2: every check passed');
    expect(text).toMatch(/✅ secrets — redis-password 0400/);
    expect(text).toContain('✅ revision — ba5eba5eba5e');
    expect(text).not.toContain(SECRET);
  });

  it('/logs: redacted on the host, ephemeral, an attachment when long; no planted secret reaches Discord', async () => {
    const b = await bot();
    const short = command(b, 'logs', [
      { type: 3, name: 'name', value: 'clawdinator-2' },
      { type: 4, name: 'lines', value: 160 },
    ]);
    const reply = await b.standIn.waitForCall(
      (c) => c.method === 'PATCH' && c.path.includes(short.token) && (payload(c).content ?? '').includes('last 160'),
      20_000,
    );
    expect(payload(reply).content).toContain('**clawdinator-2** — last 160 lines of clawdinator-worker — attached as');
    const file = files(reply)[0]?.data.toString() ?? '';
    expect(file).toContain('redis: AUTH [redacted] failed (WRONGPASS)');
    expect(file).toContain('Authorization: token [redacted]');
    // Deferred ephemeral: only the asker sees it.
    const deferred = b.standIn.calls.find((c) => c.method === 'POST' && c.path.includes(`${short.id}/${short.token}`));
    expect((deferred?.body as { data?: { flags?: number } })?.data?.flags).toBe(64);

    const sent = JSON.stringify(b.standIn.calls.map((c) => [c.body, files(c).map((f) => f.data.toString())]));
    expect(sent).not.toContain(SECRET);
    expect(sent).not.toContain(TOKEN_LIKE);
    expect(sent).not.toContain(TOKEN);
  });

  it('a reader may not read logs; values Discord would never send are refused before any SSM call', async () => {
    const b = await bot();
    const before = suite.sim.cloud.calls.ssm;
    const reader = command(b, 'logs', [{ type: 3, name: 'name', value: 'clawdinator-2' }], [READER_ROLE]);
    const refused = await b.standIn.waitForCall(
      (c) => c.path.includes(reader.token) && /allowed/.test(JSON.stringify(c.body)),
      10_000,
    );
    expect(JSON.stringify(refused.body)).toContain('not allowed');
    for (const options of [
      [
        { type: 3, name: 'name', value: 'clawdinator-2' },
        { type: 3, name: 'unit', value: 'sshd' },
      ],
      [
        { type: 3, name: 'name', value: 'clawdinator-2' },
        { type: 4, name: 'lines', value: LOG_LINES_MAX + 1 },
      ],
      [{ type: 3, name: 'name', value: 'clawdinator-2;reboot' }],
      [
        { type: 3, name: 'name', value: 'clawdinator-2' },
        { type: 3, name: 'unit', value: 'clawdinator-worker --since=-1y' },
      ],
    ]) {
      const i = command(b, 'logs', options);
      const answer = await b.standIn.waitForCall((c) => c.path.includes(i.token) && c.method !== 'POST', 10_000);
      expect(JSON.stringify(answer.body)).toMatch(/unit: one of|lines: a whole number|not a member name/);
    }
    const doctor = command(b, 'doctor', [{ type: 3, name: 'name', value: '../clawdinator-1' }]);
    await b.standIn.waitForCall((c) => c.path.includes(doctor.token) && c.method !== 'POST', 10_000);
    expect(suite.sim.cloud.calls.ssm).toBe(before);
  });
});
