// The dispatcher's audit through the shared trail (jobs/audit.ts): an object per interaction
// in the bucket, and a memory copy that cannot be written does not fail the command.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commands } from '../../bot/commands/index.js';
import { ConsoleSession } from '../../bot/console/adapter.js';
import { createDispatcher } from '../../bot/dispatch.js';
import { AuditTrail } from '../../jobs/audit.js';
import { createSimCloud, type SimCloud } from '../../jobs/cloud/sim.js';
import { actor, botDeps } from '../support/bot.js';

const BUCKET = 'clawdinator-bootstrap';
let deps: Awaited<ReturnType<typeof botDeps>>;
let cloud: SimCloud;
let out: string[];
let session: ConsoleSession;

beforeEach(async () => {
  deps = await botDeps();
  cloud = createSimCloud();
  await cloud.createBucketIfMissing(BUCKET, { versioned: true, encrypted: true });
  deps.audit = new AuditTrail({ log: deps.log, memory: deps.memory, bucket: BUCKET, cloud: async () => cloud });
  out = [];
  session = new ConsoleSession(createDispatcher(commands, deps), actor(), (t) => out.push(t));
});

afterEach(() => cloud.close());

async function objects(): Promise<Record<string, unknown>[]> {
  const keys = await cloud.listKeys(BUCKET, 'audit/');
  return Promise.all(keys.map(async (k) => JSON.parse(String(await cloud.getBytes(BUCKET, k)))));
}

describe('audit of interactions', () => {
  it('one object per command in audit/2026/11/24/, and the copy in memory', async () => {
    expect(await session.run('/memory write path:daily/x.md content:"secret-ish words"')).toBe(true);
    const [object, ...rest] = await objects();
    expect(rest).toEqual([]);
    expect(object).toMatchObject({ kind: 'interaction', user: actor().userId, outcome: 'ok' });
    expect(String(object?.line)).toContain('/memory write path:daily/x.md content:[16 chars] → ok');
    expect(JSON.stringify(object)).not.toContain('secret-ish words');
    expect(readFileSync(join(deps.root, 'audit/2026-11-24.md'), 'utf8')).toContain(String(object?.line));
  });

  it('a memory copy that cannot be written does not fail the command; the object is there', async () => {
    mkdirSync(join(deps.root, 'audit/2026-11-24.md'));
    expect(await session.run('/memory write path:daily/x.md content:hello')).toBe(true);
    expect(out.join('\n')).toContain('Wrote **daily/x.md**');
    expect(readFileSync(join(deps.root, 'daily/x.md'), 'utf8')).toBe('hello');
    expect(await objects()).toHaveLength(1);
  });
});
