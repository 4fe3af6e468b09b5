import { describe, expect, it } from 'vitest';
import type { LineResult } from '../../../bot/sandbox/run.js';
import { parseScript, runScript, summaryLine } from '../../../bot/sandbox/script.js';
import { JobTracker } from '../../../bot/sandbox/tracker.js';

describe('sandbox scripts', () => {
  it('skips blank lines and comments, keeps line numbers, reads ! as "must fail"', () => {
    expect(parseScript('# intro\n\n/status\n  !/memory read path:../x  \r\n#!/not this\n! /frobnicate\n')).toEqual([
      { number: 3, text: '/status', expectFailure: false },
      { number: 4, text: '/memory read path:../x', expectFailure: true },
      { number: 6, text: '/frobnicate', expectFailure: true },
    ]);
  });

  it('counts a line ok when it did what it expected; a timed-out job is never ok', async () => {
    const results: Record<string, LineResult> = {
      '/ok': { ok: true, jobs: [] },
      '/fails': { ok: false, jobs: [] },
      '/slow': { ok: false, jobs: [{ jobId: 'x', kind: 'timeout', text: 'x did not finish in time' }] },
    };
    const printed: string[] = [];
    const summary = await runScript(parseScript('/ok\n!/fails\n!/ok\n/fails\n!/slow\n'), {
      runLine: async (line) => results[line] as LineResult,
      print: (t) => printed.push(t),
      stopping: () => false,
    });
    expect(summary.ok).toBe(2);
    expect(summary.failed.map((f) => [f.line.number, f.why])).toEqual([
      [3, 'expected a refusal or failure, but it succeeded'],
      [4, 'failed'],
      [5, 'a job it started did not finish in time'],
    ]);
    expect(summaryLine(summary)).toBe('2 lines ok, 3 failed');
    expect(printed).toEqual(['\n> /ok', '\n!> /fails', '\n!> /ok', '\n> /fails', '\n!> /slow']);
  });

  it('!{words}: the refusal or failure must say them; a crash is never the failure a ! line expects', async () => {
    const lines = parseScript(
      [
        '!{already in the registry} /spawn name:clawdinator-1',
        '!{ALREADY  in the Registry}/spawn name:clawdinator-1',
        '!{not in the registry} /spawn name:clawdinator-1',
        '!{apply failed} /spawn name:clawdinator-3',
        '!/broken',
        '!/harness',
        '!{anything} /broken',
        '/harness',
      ].join('\n'),
    );
    expect(lines[0]).toEqual({
      number: 1,
      text: '/spawn name:clawdinator-1',
      expectFailure: true,
      expectWords: 'already in the registry',
    });
    const results: Record<string, LineResult> = {
      '/spawn name:clawdinator-1': {
        ok: false,
        jobs: [],
        failures: [{ kind: 'failed', text: 'refused: clawdinator-1 is already in the registry' }],
      },
      '/spawn name:clawdinator-3': {
        ok: false,
        jobs: [{ jobId: 'spawn-1', kind: 'result', ok: false, text: 'clawdinator-3: apply failed: Error: quota' }],
        failures: [{ kind: 'failed', text: 'clawdinator-3: apply failed: Error: quota' }],
      },
      '/broken': {
        ok: false,
        jobs: [],
        failures: [{ kind: 'crashed', text: 'Something went wrong (interaction 1); the details are in the log.' }],
      },
    };
    const summary = await runScript(lines, {
      runLine: async (line) => {
        const result = results[line];
        if (result === undefined) throw new TypeError('the harness fell over');
        return result;
      },
      print: () => {},
      stopping: () => false,
    });
    expect(summary.failed.map((f) => [f.line.number, f.why])).toEqual([
      [
        3,
        'expected a refusal or failure saying "not in the registry", but it said: refused: clawdinator-1 is already in the registry',
      ],
      [
        5,
        'expected a refusal or failure, but it crashed: Something went wrong (interaction 1); the details are in the log.',
      ],
      [6, 'expected a refusal or failure, but it crashed: the harness fell over'],
      [
        7,
        'expected a refusal or failure, but it crashed: Something went wrong (interaction 1); the details are in the log.',
      ],
      [8, 'crashed: the harness fell over'],
    ]);
    expect(summary.ok).toBe(3);
    expect(() => parseScript('/status\n!{unclosed /spawn name:x\n')).toThrow(/line 2: .*\{words\}/);
    expect(() => parseScript('!{} /spawn name:x\n')).toThrow(/line 1: /);
  });

  it('stops between lines when asked to', async () => {
    let stop = false;
    const summary = await runScript(parseScript('/a\n/b\n/c\n'), {
      runLine: async () => {
        stop = true;
        return { ok: true, jobs: [] };
      },
      print: () => {},
      stopping: () => stop,
    });
    expect(summary).toMatchObject({ ok: 1, interrupted: true });
    expect(summaryLine(summary)).toBe('1 line ok, 0 failed (interrupted)');
  });
});

describe('job tracker', () => {
  const event = (kind: 'progress' | 'result' | 'confirm', jobId: string, ok?: boolean) => ({
    kind,
    jobId,
    text: `${kind} of ${jobId}`,
    ok,
    id: `event-${kind}-${jobId}-0000`,
    at: Date.now(),
  });

  it('records the jobs a line started and resolves with their results, whichever comes first', async () => {
    const tracker = new JobTracker();
    const jobs = tracker.wrap({ enqueue: async (r) => ({ jobId: `t-${r.requestId}`, queue: 'q' }) });
    const request = { type: 't', data: {}, actor: {} as never, reply: { channelId: '1'.repeat(18) } };
    await jobs.enqueue({ ...request, requestId: 'a' });
    await jobs.enqueue({ ...request, requestId: 'b' });
    tracker.event(event('result', 't-a', true)); // before anyone waits
    const started = tracker.take();
    expect(started.map((j) => j.jobId)).toEqual(['t-a', 't-b']);
    expect(tracker.take()).toEqual([]);
    const waiting = tracker.wait(started, 5000);
    tracker.event(event('progress', 't-b'));
    tracker.event(event('confirm', 't-b'));
    expect(await waiting).toEqual([
      { jobId: 't-a', kind: 'result', ok: true, text: 'result of t-a' },
      { jobId: 't-b', kind: 'confirm', text: 'confirm of t-b' },
    ]);
    // A confirmation is a pause: the result that follows it replaces it.
    tracker.event(event('result', 't-b', false));
    expect(await tracker.wait([{ jobId: 't-b', queue: 'q' }], 100)).toEqual([
      { jobId: 't-b', kind: 'result', ok: false, text: 'result of t-b' },
    ]);
  });

  it('times out, and falls back to the job’s state when no result event comes', async () => {
    const tracker = new JobTracker(async (jobId) => ({ state: jobId === 'done' ? 'completed' : 'active' }));
    const ends = await tracker.wait(
      [
        { jobId: 'done', queue: 'q' },
        { jobId: 'stuck', queue: 'q' },
      ],
      2500,
    );
    expect(ends).toEqual([
      { jobId: 'done', kind: 'state', ok: true, text: 'done completed' },
      { jobId: 'stuck', kind: 'timeout', text: 'stuck did not finish in time' },
    ]);
  });
});
