// The control plane's log in ops.md on a real memory folder with a small cap: lines below the
// marker, past months moved to ops/YYYY-MM.md before the cap, the agents' part untouched, and
// nothing moved twice.
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { appendOpsLine, OPS_LOG_MARKER } from '../../memory/ops-log.js';
import { MemoryError, MemoryStore } from '../../memory/store.js';
import { tempDir } from '../support/cli.js';

const CAP = 4096;
let root: string;
let memory: MemoryStore;

beforeEach(() => {
  root = tempDir('clawdinator-ops-log-');
  memory = new MemoryStore({ root, maxBytes: CAP, waitSeconds: 2 });
});

const ops = () => readFileSync(join(root, 'ops.md'), 'utf8');
/** A control-plane line of `month` (YYYY-MM), about 125 bytes. */
const line = (month: string, n: number) =>
  `- ${month}-${String(10 + (n % 18))} 12:${String(n % 60).padStart(2, '0')} UTC spawn clawdinator-${n}: i-0${n}, ami-1 — requested by ops via the CLI (job spawn-${month}-${n})`;
const ROTATE_AT = (CAP * 3) / 4;
const AGENTS = '# Ops Memory\n\n## Incidents\n- 2026-10-03 redis failover, fixed by hand\n\n## Log\n';

describe('the ops log in ops.md', () => {
  it('appends below the marker, adding it to an ops.md without one, and once per tag', async () => {
    writeFileSync(join(root, 'ops.md'), AGENTS.trimEnd());
    const now = new Date('2026-11-24T20:41:00Z');
    const first = line('2026-11', 101);
    await appendOpsLine(memory, { line: first, tag: '(job spawn-2026-11-101)', now });
    await appendOpsLine(memory, { line: first, tag: '(job spawn-2026-11-101)', now });
    expect(ops()).toBe(`${AGENTS}${OPS_LOG_MARKER}\n${first}\n`);
  });

  it('before the cap, moves past months to ops/YYYY-MM.md; the agents’ part stays as it was', async () => {
    const october = Array.from({ length: 20 }, (_, n) => line('2026-10', n));
    const november = Array.from({ length: 6 }, (_, n) => line('2026-11', n + 20));
    // An agent's note below the marker is theirs too: it stays.
    const note = '- note from clawdinator-2: 2026-10 rollout was rough';
    writeFileSync(join(root, 'ops.md'), `${AGENTS}${OPS_LOG_MARKER}\n${[...october, note, ...november].join('\n')}\n`);
    const next = line('2026-11', 40);
    // This line would take ops.md past the threshold.
    expect(statSync(join(root, 'ops.md')).size + next.length + 1).toBeGreaterThan(ROTATE_AT);
    await appendOpsLine(memory, { line: next, tag: '(job spawn-2026-11-40)', now: new Date('2026-11-24T20:41:00Z') });
    expect(ops()).toBe(`${AGENTS}${OPS_LOG_MARKER}\n${[note, ...november, next].join('\n')}\n`);
    const archived = readFileSync(join(root, 'ops/2026-10.md'), 'utf8');
    expect(archived.split('\n').filter((l) => l.startsWith('- 2026-10'))).toEqual(october);
    expect(statSync(join(root, 'ops.md')).size).toBeLessThanOrEqual(ROTATE_AT);
  });

  it('this month’s lines move too when past months are not enough; an interrupted move is not duplicated', async () => {
    const november = Array.from({ length: 25 }, (_, n) => line('2026-11', n));
    writeFileSync(join(root, 'ops.md'), `${AGENTS}${OPS_LOG_MARKER}\n${november.join('\n')}\n`);
    // As if an earlier rotation died after writing the month file, before rewriting ops.md.
    mkdirSync(join(root, 'ops'));
    writeFileSync(join(root, 'ops/2026-11.md'), `# Ops log 2026-11\n\n${november.slice(0, 5).join('\n')}\n`);
    const next = line('2026-11', 40);
    expect(statSync(join(root, 'ops.md')).size + next.length + 1).toBeGreaterThan(ROTATE_AT);
    await appendOpsLine(memory, { line: next, tag: '(job spawn-2026-11-40)', now: new Date('2026-11-24T20:41:00Z') });
    expect(ops()).toBe(`${AGENTS}${OPS_LOG_MARKER}\n${next}\n`);
    const archived = readFileSync(join(root, 'ops/2026-11.md'), 'utf8').split('\n');
    expect(archived.filter((l) => l.startsWith('- 2026-11'))).toEqual(november);
  });

  it('an ops.md over the cap with the log in it is brought back under; one that is not a file is refused', async () => {
    // Runbook notes of the agents' (700 bytes), then as many October lines as take it past the cap.
    const agents = `${AGENTS}${'- a runbook note\n'.repeat(40)}`;
    const october: string[] = [];
    while (Buffer.byteLength(`${agents}${OPS_LOG_MARKER}\n${october.join('\n')}\n`) <= CAP) {
      october.push(line('2026-10', october.length));
    }
    writeFileSync(join(root, 'ops.md'), `${agents}${OPS_LOG_MARKER}\n${october.join('\n')}\n`);
    await appendOpsLine(memory, { line: line('2026-11', 101), tag: 'x-1', now: new Date('2026-11-24T20:41:00Z') });
    expect(statSync(join(root, 'ops.md')).size).toBeLessThan(CAP);
    // The agents' own part alone over the cap: nothing the log can do; the store says so.
    writeFileSync(join(root, 'ops.md'), `${'x'.repeat(CAP + 10)}\n`);
    await expect(
      appendOpsLine(memory, { line: line('2026-11', 2), tag: 'x-2', now: new Date('2026-11-24T20:41:00Z') }),
    ).rejects.toThrow(MemoryError);
  });
});
