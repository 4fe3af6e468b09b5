// What lifecycle jobs record: ops.md and the audit trail they share with the dispatcher.
import { lstatSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditTrail } from '../../../jobs/audit.js';
import { createSimCloud, type SimCloud } from '../../../jobs/cloud/sim.js';
import { type LifecycleRun, recordLifecycle } from '../../../jobs/types/lifecycle.js';
import { createLogger } from '../../../lib/log.js';
import { initMemory } from '../../../memory/init.js';
import { MemoryStore } from '../../../memory/store.js';
import { tempDir } from '../../support/cli.js';
import { mkfifo } from '../../support/hostile.js';

const BUCKET = 'clawdinator-bootstrap';
const run: LifecycleRun = {
  jobId: 'job-1',
  principal: { kind: 'cli', operator: 'alice' },
  action: 'spawn',
  name: 'clawdinator-3',
};
let root: string;
let memory: MemoryStore;
let cloud: SimCloud;
let audit: AuditTrail;

beforeEach(async () => {
  root = tempDir('clawdinator-memory-');
  await initMemory(root);
  memory = new MemoryStore({ root, maxBytes: 1024 * 1024, waitSeconds: 5 });
  cloud = createSimCloud();
  await cloud.createBucketIfMissing(BUCKET, { versioned: true, encrypted: true });
  audit = new AuditTrail({ log: createLogger('silent'), memory, bucket: BUCKET, cloud: async () => cloud });
});

afterEach(() => cloud.close());

describe('recordLifecycle', () => {
  it('writes the ops.md line, one audit object and the audit copy', async () => {
    await recordLifecycle(memory, audit, run, 'online', 'spawned');
    const day = new Date().toISOString().slice(0, 10);
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toMatch(
      /spawn clawdinator-3: online — requested by operator alice \(job job-1\)\n$/,
    );
    const keys = await cloud.listKeys(BUCKET, `audit/${day.replaceAll('-', '/')}/`);
    expect(keys).toHaveLength(1);
    expect(JSON.parse(String(await cloud.getBytes(BUCKET, keys[0] as string)))).toMatchObject({
      kind: 'job',
      job: 'job-1',
      action: 'spawn',
      name: 'clawdinator-3',
      by: 'operator alice',
      outcome: 'spawned',
    });
    expect(readFileSync(join(root, `audit/${day}.md`), 'utf8')).toContain(
      'job=job-1 operator alice spawn name:clawdinator-3 → spawned',
    );
  });

  it('a FIFO planted as ops.md: the record step ends instead of hanging; the audit is still written', async () => {
    rmSync(join(root, 'ops.md'));
    mkfifo(join(root, 'ops.md'));
    // Records are best-effort (the change is made by then): the line is reported, not thrown
    // (test/jobs/types/lifecycle-records.test.ts checks the alert and its cause).
    await expect(recordLifecycle(memory, audit, run, 'online', 'spawned')).resolves.toBeNull();
    expect(await cloud.listKeys(BUCKET, 'audit/')).toHaveLength(1);
    expect(lstatSync(join(root, 'ops.md')).isFIFO()).toBe(true);
  });

  it('an audit copy that cannot be written does not fail the step', async () => {
    const day = new Date().toISOString().slice(0, 10);
    mkdirSync(join(root, `audit/${day}.md`));
    await expect(recordLifecycle(memory, audit, run, 'online', 'spawned')).resolves.toBeNull();
    expect(await cloud.listKeys(BUCKET, 'audit/')).toHaveLength(1);
    expect(readFileSync(join(root, 'ops.md'), 'utf8')).toContain('(job job-1)');
  });
});
