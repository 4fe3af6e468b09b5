import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { commands } from '../../../bot/commands/index.js';
import { ConsoleSession, tokenize } from '../../../bot/console/adapter.js';
import { createDispatcher } from '../../../bot/dispatch.js';
import { sha256 } from '../../../memory/store.js';
import { actor, BOB, botDeps, OTHER_CHANNEL, READER_ROLE } from '../../support/bot.js';
import { tempDir } from '../../support/cli.js';

let deps: Awaited<ReturnType<typeof botDeps>>;
let out: string[];
let session: ConsoleSession;

beforeEach(async () => {
  deps = await botDeps({ maxBytes: 64 * 1024 });
  out = [];
  session = new ConsoleSession(createDispatcher(commands, deps), actor(), (t) => out.push(t));
});

function printed(): string {
  return out.join('\n');
}

function auditLines(): string[] {
  return readFileSync(join(deps.root, 'audit/2026-11-24.md'), 'utf8').trim().split('\n');
}

describe('tokenize', () => {
  it('keeps quoted values together', () => {
    expect(tokenize('/memory write path:a.md content:"hello world" x:"say \\"hi\\""')).toEqual([
      '/memory',
      'write',
      'path:a.md',
      'content:hello world',
      'x:say "hi"',
    ]);
  });
});

describe('console adapter', () => {
  it('reads a short file as a code block, a long one as an attachment', async () => {
    expect(await session.run('/memory read path:ops.md')).toBe(true);
    expect(printed()).toContain('**ops.md**');
    expect(printed()).toContain('```md\n# Ops Memory');
    out.length = 0;
    writeFileSync(join(deps.root, 'long.md'), 'line of text\n'.repeat(400));
    expect(await session.run('/memory read path:long.md')).toBe(true);
    expect(printed()).toContain('[attachment] long.md (5200 bytes)');
    expect(printed()).not.toContain('line of text');
  });

  it('writes, appends and lists through the store; the audit elides content', async () => {
    expect(await session.run('/memory write path:daily/x.md content:"first line"')).toBe(true);
    expect(await session.run('/memory append path:daily/x.md content:second')).toBe(true);
    expect(readFileSync(join(deps.root, 'daily/x.md'), 'utf8')).toBe('first line\nsecond\n');
    expect(await session.run('/memory list dir:daily')).toBe(true);
    expect(printed()).toContain('daily/x.md');
    const lines = auditLines();
    expect(lines[0]).toBe(
      '- 2026-11-24T12:00:00.000Z user=400000000000000001 (alice) guild=100000000000000001 channel=200000000000000001 /memory write path:daily/x.md content:[10 chars] → ok',
    );
    expect(lines.join('\n')).not.toContain('first line');
  });

  it('takes a local file as an attachment', async () => {
    const file = join(tempDir(), 'notes.md');
    writeFileSync(file, 'from a file\n');
    expect(await session.run(`/memory write path:notes.md file:@${file}`)).toBe(true);
    expect(readFileSync(join(deps.root, 'notes.md'), 'utf8')).toBe('from a file\n');
    expect(await session.run(`/memory write path:notes.md file:@${file} content:x`)).toBe(false);
    expect(printed()).toContain('Give either content or a file, not both.');
  });

  it('edit: a form pre-filled with the file, saved when unchanged, a conflict reported', async () => {
    writeFileSync(join(deps.root, 'team.md'), 'v1\n');
    expect(await session.run('/memory edit path:team.md')).toBe(true);
    const formId = /\/submit (\S+) content=/.exec(printed())?.[1] as string;
    expect(formId).toMatch(/^memory:edit:/);
    expect(await session.run(`/submit ${formId} content=v2\\n`)).toBe(true);
    expect(readFileSync(join(deps.root, 'team.md'), 'utf8')).toBe('v2\n');
    // The same form again: the file changed since it was read.
    out.length = 0;
    expect(await session.run(`/submit ${formId} content=v3`)).toBe(false);
    expect(printed()).toContain('changed since: team.md');
    expect(readFileSync(join(deps.root, 'team.md'), 'utf8')).toBe('v2\n');
    expect(sha256(readFileSync(join(deps.root, 'team.md')))).toBe(sha256('v2\n'));
  });

  it('edit of a file over 4000 characters says to use write with an attachment', async () => {
    writeFileSync(join(deps.root, 'big.md'), 'x'.repeat(4001));
    expect(await session.run('/memory edit path:big.md')).toBe(false);
    expect(printed()).toContain('use /memory write with an attached file');
  });

  it('refuses what the policy does not allow, ephemerally, and audits it', async () => {
    session.actor = actor({ userId: BOB, userName: 'bob', roles: [READER_ROLE], channelId: OTHER_CHANNEL });
    expect(await session.run('/memory read path:ops.md')).toBe(true);
    expect(await session.run('/memory write path:ops.md content:x')).toBe(false);
    // Readers may write nowhere: told so, not sent looking for another channel.
    expect(printed()).toContain('You are not allowed to use /memory write. (only you can see this)');
    expect(auditLines().at(-1)).toContain('→ "refused: You are not allowed to use /memory write."');
    session.actor = actor({ guildId: null });
    expect(await session.run('/status')).toBe(false);
    expect(printed()).toContain('not available in direct messages');
  });

  it('refuses hostile options before the store is touched', async () => {
    const before = readdirSync(deps.root, { recursive: true }).map(String).sort();
    for (const line of [
      '/memory write path:../escape.md content:x',
      '/memory write path:/etc/passwd content:x',
      `/memory write path:"a\u001b[31m.md" content:x`,
      `/memory write path:big.md content:${'y'.repeat(6001)}`,
      '/memory write path:x.md',
      `/memory append path:${'a/'.repeat(120)}x.md content:x`,
    ]) {
      expect(await session.run(line), line).toBe(false);
    }
    const after = readdirSync(deps.root, { recursive: true })
      .map(String)
      .filter((p) => !p.startsWith('audit'))
      .sort();
    expect(after).toEqual(before.filter((p) => !p.startsWith('audit')));
  });

  it('answers honestly what it cannot do here: no job engine, no fleet', async () => {
    expect(await session.run('/spawn name:clawdinator-3')).toBe(false);
    expect(printed()).toContain('The job engine is not configured on this gateway.');
    expect(await session.run('/rebuild-ami')).toBe(false);
    expect(await session.run('/deploy')).toBe(false);
    expect(await session.run('/doctor name:clawdinator-1')).toBe(false);
    expect(printed()).toContain('The fleet is not configured on this gateway.');
    expect(await session.run('/spawn name:x')).toBe(false);
    expect(await session.run('/spawn name:clawdinator-3 instance-type:huge')).toBe(false);
    expect(await session.run('/nonsense')).toBe(false);
  });
});
