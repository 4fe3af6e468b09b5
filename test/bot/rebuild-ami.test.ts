// /rebuild-ami through the console adapter and the real parts: without a rollout the job is
// queued at once; with one, buttons first, only the requester's press (before it expires)
// queues the job, which the real worker runs (a peer builds, the canary is replaced). A
// hostile rev is refused in one line with nothing queued — typed, or forged into a button.
import { beforeEach, describe, expect, it } from 'vitest';
import { CONFIRM_SECONDS } from '../../bot/commands/replace.js';
import { hostWorkers, simAmiDeps } from '../support/ami.js';
import { ALICE, policy } from '../support/bot.js';
import { type ConsoleBot, consoleBot } from '../support/bot-fleet.js';
import { type Lifecycle, lifecycleSuite } from '../support/lifecycle.js';
import { HOSTILE_REVS } from '../support/revs.js';

const NOW = new Date('2026-11-24T12:00:00Z');
const suite = lifecycleSuite({ members: ['clawdinator-1', 'clawdinator-3'], tokens: [] });
let now: Date;
let h: Lifecycle;
let bot: ConsoleBot;

beforeEach(async () => {
  now = NOW;
  h = suite.harness({ policy, types: { ami: simAmiDeps(suite.server, suite.sim) } });
  const hosts = hostWorkers(suite.server, suite.redis, h, ['clawdinator-1', 'clawdinator-3']);
  suite.defer(() => hosts.close());
  bot = await consoleBot(h, suite.redis, () => now);
});

const jobs = () => h.queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed']);
const expires = NOW.getTime() / 1000 + CONFIRM_SECONDS;

async function ended(jobId: string) {
  const job = await h.finished(jobId);
  return job;
}

describe('/rebuild-ami through the console', () => {
  it('without a rollout: queued at once, signed by the gateway, and run to an available image', async () => {
    expect(await bot.alice.run('/rebuild-ami')).toBe(true);
    const [job] = await jobs();
    expect(job?.name).toBe('rebuild-ami');
    expect(job?.data.signed.data).toEqual({ rollout: 'none', build: 'peer' });
    expect(job?.data.signed.principal).toMatchObject({ kind: 'discord', userId: ALICE });
    expect(bot.printed.join('\n')).toContain(`⏳ Rebuilding the image from the project branch — job \`${job?.id}\``);
    expect((await ended(job?.id as string)).returnvalue.summary).toMatch(/built by clawdinator-3: available$/);
  });

  it('a rollout asks first; only the requester can confirm, before the expiry; then the canary is replaced', async () => {
    expect(await bot.alice.run('/rebuild-ami rev:v2 rollout:canary')).toBe(true);
    const ids = [...bot.printed.join('\n').matchAll(/press with: \/press (\S+)/g)].map((m) => m[1] as string);
    const [confirm, cancel] = ids;
    expect(confirm).toBe(`rebuild-ami:confirm:canary:${ALICE}:${expires}:v2`);
    expect(cancel).toBe(`rebuild-ami:cancel:canary:${ALICE}:${expires}:v2`);
    expect(await jobs()).toHaveLength(0);
    bot.printed.length = 0;
    expect(await bot.bob.run(`/press ${confirm}`)).toBe(false);
    expect(bot.printed.join('\n')).toContain(`Only <@${ALICE}>, who asked, can answer this rebuild confirmation.`);
    now = new Date(NOW.getTime() + (CONFIRM_SECONDS + 1) * 1000);
    expect(await bot.alice.run(`/press ${confirm}`)).toBe(false);
    expect(bot.printed.join('\n')).toContain(
      'This confirmation expired: run /rebuild-ami rev:v2 rollout:canary again.',
    );
    expect(await jobs()).toHaveLength(0);
    now = NOW;
    expect(await bot.alice.run(`/press ${confirm}`)).toBe(true);
    const [job] = await jobs();
    expect(job?.data.signed.data).toEqual({ rev: 'v2', rollout: 'canary', build: 'peer' });
    const done = await ended(job?.id as string);
    expect(done.failedReason).toBeUndefined();
    // clawdinator-1 runs the job's worker in this world's story (hostName): clawdinator-3 is the canary.
    expect(done.returnvalue.rolledOut).toEqual(['clawdinator-3']);
  });

  it('refuses a hostile rev in one line with nothing queued, typed or forged into a button', async () => {
    // What a console line can carry (no spaces or newlines); Discord itself caps the option at 64.
    const typed = [...HOSTILE_REVS.filter((r) => r !== '' && !/\s/.test(r) && r.length <= 64), 'x'.repeat(65)];
    for (const rev of typed) {
      bot.printed.length = 0;
      expect(await bot.alice.run(`/rebuild-ami rev:${rev}`)).toBe(false);
      expect(await bot.alice.run(`/rebuild-ami rollout:all rev:${rev}`)).toBe(false);
      expect(bot.printed.join('\n')).toMatch(/is not a revision|at most 64 characters/);
    }
    expect(await bot.alice.run(`/press rebuild-ami:confirm:all:${ALICE}:${expires}:$(id)`)).toBe(false);
    expect(await bot.alice.run(`/press rebuild-ami:confirm:all:${ALICE}:${expires}:-rf`)).toBe(false);
    expect(bot.printed.join('\n')).toContain('This button is not a rebuild-ami confirmation.');
    expect(await jobs()).toHaveLength(0);
  });
});
