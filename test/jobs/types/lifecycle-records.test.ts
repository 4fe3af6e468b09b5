// Records never fail a job: a spawn whose ops.md line cannot be written (ops.md over the cap,
// a directory or a FIFO in its place) still ends online, and says so in an alert to the ops
// channel; its audit line is still written. A full log of past months rotates instead.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { beforeEach, describe, expect, it } from 'vitest';
import { keys } from '../../../jobs/engine/keys.js';
import type { JobEvent } from '../../../jobs/engine/notify.js';
import { OPS_LOG_MARKER } from '../../../memory/ops-log.js';
import type { MemoryStore } from '../../../memory/store.js';
import { OPS_CHANNEL } from '../../support/bot.js';
import { lifecycleSuite } from '../../support/lifecycle.js';

let redis: Redis;
let memory: MemoryStore;
const suite = lifecycleSuite({ tokens: ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'] });
beforeEach(() => {
  redis = suite.redis;
  ({ memory } = suite.sim);
});

const spawn = (name: string) => suite.harness({ types: { opsChannelId: OPS_CHANNEL } }).run('spawn', { name });
const opsPath = () => join(memory.root, 'ops.md');

async function alerts(): Promise<JobEvent[]> {
  const entries = await redis.xrange(keys.events, '-', '+');
  // Signed entries ({event, keyId, signature}); the relay verifies them (test/bot/relay.test.ts).
  return entries
    .map(([, f]) => JSON.parse(f[1] as string) as { event: JobEvent; keyId: string })
    .filter((e) => e.event.kind === 'alert')
    .map((e) => {
      expect(e.keyId).toBe('schedule');
      return e.event;
    });
}

function auditLines(): string {
  const day = new Date().toISOString().slice(0, 10);
  return readFileSync(join(memory.root, 'audit', `${day}.md`), 'utf8');
}

describe('lifecycle records are best-effort', () => {
  for (const [what, make, cause] of [
    [
      'over the cap',
      () => writeFileSync(opsPath(), `${'an agent wrote a lot\n'.repeat(60_000)}`),
      /too large: ops\.md (is|would be) \d+ bytes/,
    ],
    ['a directory', () => mkdirSync(opsPath()), /not a file: ops\.md is a directory$/],
    ['a FIFO', () => execFileSync('mkfifo', [opsPath()]), /not a file: ops\.md is a FIFO$/],
  ] as const) {
    it(`ops.md ${what}: the spawn still ends online, the audit line is written, an alert says what was not`, async () => {
      rmSync(opsPath(), { recursive: true, force: true });
      make();
      const job = await spawn('clawdinator-3');
      expect(job.failedReason).toBeUndefined();
      expect(job.returnvalue.summary).toMatch(/^clawdinator-3 online/);
      expect(auditLines()).toMatch(/spawn name:clawdinator-3 → online/);
      const [alert, ...more] = await alerts();
      expect(more).toEqual([]);
      expect(alert).toMatchObject({ kind: 'alert', type: 'spawn', jobId: job.id, reply: { channelId: OPS_CHANNEL } });
      expect(alert?.text).toMatch(/^clawdinator-3: spawn done, but its line in ops\.md was not written: /);
      expect(alert?.text).toMatch(cause);
    });
  }

  it('a log of past months near the cap moves to ops/YYYY-MM.md, and the line lands in ops.md', async () => {
    const before = new Date();
    const month = new Date(Date.UTC(before.getUTCFullYear(), before.getUTCMonth() - 1, 15)).toISOString().slice(0, 7);
    // Last month's lines, up to just below the point where one more line passes 3/4 of the cap.
    const old: string[] = [];
    for (let size = 0; size < (memory.maxBytes * 3) / 4 - 150; size += old.at(-1)?.length ?? 0) {
      old.push(
        `- ${month}-15 12:00 UTC spawn clawdinator-9: i-0${old.length} — requested by ops (job old-${old.length})`,
      );
    }
    writeFileSync(opsPath(), `# Ops Memory\n\n## Log\n${OPS_LOG_MARKER}\n${old.join('\n')}\n`);
    const job = await spawn('clawdinator-3');
    expect(job.failedReason).toBeUndefined();
    expect(await alerts()).toEqual([]);
    const ops = readFileSync(opsPath(), 'utf8');
    expect(ops).toMatch(
      new RegExp(`^# Ops Memory\\n\\n## Log\\n${OPS_LOG_MARKER}\\n- .* spawn clawdinator-3: .*\\(job ${job.id}\\)\\n$`),
    );
    const archived = readFileSync(join(memory.root, 'ops', `${month}.md`), 'utf8');
    expect(archived.split('\n').filter((l) => l.startsWith('- '))).toEqual(old);
  });
});
