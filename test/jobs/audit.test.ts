// The audit trail against s3rver (a real S3-protocol server): one object per event under
// audit/YYYY/MM/DD/, the journal line, and the agents' copy in memory, which may fail alone.
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditTrail, auditKey, auditTrailFromConfig } from '../../jobs/audit.js';
import { createAwsCloud } from '../../jobs/cloud/aws.js';
import type { Cloud } from '../../jobs/cloud/types.js';
import { createLogger, type Logger } from '../../lib/log.js';
import { initMemory } from '../../memory/init.js';
import { MemoryStore } from '../../memory/store.js';
import { tempDir } from '../support/cli.js';
import { s3rverClient, startS3rver, type TestS3 } from '../support/s3.js';

const BUCKET = 'clawdinator-bootstrap';
const AT = new Date('2026-11-24T12:00:00.123Z');
let dir: string;
let server: TestS3;
let client: S3Client;
let cloud: Cloud;
let root: string;
let memory: MemoryStore;
let logged: string[];
let log: Logger;

beforeAll(async () => {
  dir = tempDir('clawdinator-audit-');
  server = await startS3rver(dir, [BUCKET]);
  client = s3rverClient(server.url);
  cloud = createAwsCloud({ clients: { s3: client } });
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await cloud.deletePrefix(BUCKET, 'audit/');
  root = tempDir('clawdinator-memory-');
  await initMemory(root);
  memory = new MemoryStore({ root, maxBytes: 1024 * 1024, waitSeconds: 5 });
  logged = [];
  log = createLogger(
    'info',
    new Writable({
      write(chunk, _enc, done) {
        logged.push(String(chunk));
        done();
      },
    }),
  );
});

afterEach(() => {
  vi.unstubAllEnvs();
});

const event = {
  at: AT,
  line: `- ${AT.toISOString()} user=1 (alice) /memory read path:ops.md → ok`,
  fields: { kind: 'interaction', interaction: '42', user: '1', outcome: 'ok' },
};

function trail(): AuditTrail {
  return new AuditTrail({ log, memory, bucket: BUCKET, cloud: async () => cloud, host: 'clawdinator-1' });
}

describe('auditKey', () => {
  it('puts each event in a day folder, by time, under an unpredictable name', () => {
    expect(auditKey(AT, 'abcd')).toBe('audit/2026/11/24/120000.123Z-abcd.json');
    expect(auditKey(AT)).toMatch(/^audit\/2026\/11\/24\/120000\.123Z-[0-9a-f]{16}\.json$/);
    expect(auditKey(AT)).not.toBe(auditKey(AT));
  });
});

describe('AuditTrail', () => {
  it('writes one S3 object per event, the journal line and the memory copy', async () => {
    await trail().record(event);
    const keys = await cloud.listKeys(BUCKET, 'audit/');
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^audit\/2026\/11\/24\/120000\.123Z-[0-9a-f]{16}\.json$/);
    const object = JSON.parse(String(await cloud.getBytes(BUCKET, keys[0] as string)));
    expect(object).toEqual({
      at: '2026-11-24T12:00:00.123Z',
      host: 'clawdinator-1',
      kind: 'interaction',
      interaction: '42',
      user: '1',
      outcome: 'ok',
      line: event.line,
    });
    expect(readFileSync(join(root, 'audit/2026-11-24.md'), 'utf8')).toBe(`${event.line}\n`);
    const journal = logged.map((l) => JSON.parse(l)).find((l) => l.audit === true);
    expect(journal).toMatchObject({ msg: event.line, interaction: '42', outcome: 'ok' });
  });

  it('a burst of events: an object each, the copy appended once per batch', async () => {
    const t = trail();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => t.record({ ...event, line: `line ${i}`, fields: { n: i } })),
    );
    expect(await cloud.listKeys(BUCKET, 'audit/')).toHaveLength(20);
    const copy = readFileSync(join(root, 'audit/2026-11-24.md'), 'utf8').trim().split('\n');
    expect(copy.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i}`).sort());
  });

  it('a memory copy that cannot be written (a directory named like the day file) fails nothing', async () => {
    mkdirSync(join(root, 'audit/2026-11-24.md'));
    await expect(trail().record(event)).resolves.toBeUndefined();
    expect(await cloud.listKeys(BUCKET, 'audit/')).toHaveLength(1);
    expect(logged.join('')).toContain('audit copy in memory failed');
    expect(logged.join('')).toContain('not a file: audit/2026-11-24.md is a directory');
  });

  it('an upload that fails is logged; the journal line and the copy remain', async () => {
    const t = new AuditTrail({ log, memory, bucket: 'no-such-bucket', cloud: async () => cloud });
    await expect(t.record(event)).resolves.toBeUndefined();
    expect(logged.join('')).toContain('audit upload failed');
    expect(readFileSync(join(root, 'audit/2026-11-24.md'), 'utf8')).toBe(`${event.line}\n`);
  });
});

describe('auditTrailFromConfig', () => {
  it('uploads to CLAWDINATOR_BOOTSTRAP_BUCKET, making the cloud only on the first event', async () => {
    vi.stubEnv('CLAWDINATOR_BOOTSTRAP_BUCKET', BUCKET);
    vi.stubEnv('CLAWDINATOR_HOST_NAME', 'clawdinator-7');
    let made = 0;
    const t = auditTrailFromConfig(memory, log, {
      cloud: async () => {
        made++;
        return cloud;
      },
    });
    expect(made).toBe(0);
    await t.record(event);
    await t.record(event);
    expect(made).toBe(1);
    const keys = await cloud.listKeys(BUCKET, 'audit/');
    expect(keys).toHaveLength(2);
    expect(JSON.parse(String(await cloud.getBytes(BUCKET, keys[0] as string))).host).toBe('clawdinator-7');
  });

  it('without a bucket: the journal and the copy only, no cloud at all', async () => {
    vi.stubEnv('CLAWDINATOR_BOOTSTRAP_BUCKET', '');
    const t = auditTrailFromConfig(memory, log, {
      cloud: async () => {
        throw new Error('no cloud without a bucket');
      },
    });
    await t.record(event);
    expect(logged.join('')).not.toContain('audit upload failed');
    expect(await cloud.listKeys(BUCKET, 'audit/')).toEqual([]);
    expect(readFileSync(join(root, 'audit/2026-11-24.md'), 'utf8')).toBe(`${event.line}\n`);
  });
});
