// How a rebuild's progress reads in Discord: the stage list with the stages done ticked and the
// current one highlighted, AWS's percent as a bar during the import, the message and the time;
// other jobs keep the plain view.
import { describe, expect, it } from 'vitest';
import { renderEvent, stages } from '../../bot/progress.js';

const at = Date.UTC(2026, 0, 1, 12, 0, 0);

describe('rebuild progress', () => {
  it('draws the stages, the import bar and the message', () => {
    const reply = renderEvent(
      {
        kind: 'progress',
        id: 'event-1',
        jobId: 'rebuild-ami-1',
        type: 'rebuild-ami',
        step: 'import',
        percent: 42,
        text: 'import: import-snap-0abc 42% converting',
        startedAt: at - 185_000,
        at,
      },
      at,
    );
    expect(reply.content).toBe(
      [
        '⏳ `rebuild-ami-1`',
        '✓ resolve · ✓ build · ✓ upload · **▶ import** · register · rollout',
        '▰▰▰▰▰▱▱▱▱▱▱▱ 42%',
        'import: import-snap-0abc 42% converting · 3m 05s',
      ].join('\n'),
    );
  });

  it('maps a saved step to its stage; other jobs and unknown steps get no stage list', () => {
    expect(stages({ type: 'rebuild-ami', step: 'rollout-clawdinator-2:plan' })).toBe(
      '✓ resolve · ✓ build · ✓ upload · ✓ import · ✓ register · **▶ rollout**',
    );
    expect(stages({ type: 'rebuild-ami', step: 'resolve' })).toBe(
      '**▶ resolve** · build · upload · import · register · rollout',
    );
    expect(stages({ type: 'rebuild-ami', step: 'importer' })).toBe('');
    expect(stages({ type: 'rebuild-ami', step: undefined })).toBe('');
    expect(stages({ type: 'spawn', step: 'import' })).toBe('');
    const plain = renderEvent(
      { kind: 'progress', id: 'event-2', jobId: 'spawn-1', type: 'spawn', step: 'apply', text: 'apply', at },
      at,
    );
    expect(plain.content).toBe('⏳ `spawn-1`\napply');
  });
});
