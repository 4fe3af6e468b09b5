// State lock records, from the lock error terraform prints (the runner tests hold real
// locks; these pin the parsing and the ownership rule).
import { describe, expect, it } from 'vitest';
import { lockOwner, ownsLock, parseCreated, parseLockError } from '../../../jobs/terraform/lock.js';

describe('state locks', () => {
  const text = [
    'Error acquiring the state lock',
    'Error message: operation error S3: PutObject, https response error StatusCode: 412',
    'Lock Info:',
    '  ID:        a65d0832-1c85-9a53-3694-30a927330c9d',
    '  Path:      state/clawdinator/clawdinator-3.tfstate',
    '  Operation: OperationTypeApply',
    '  Who:       clawdinator@clawdinator-1',
    '  Version:   1.11.4',
    '  Created:   2026-11-24 20:41:24.973385391 +0000 UTC',
    '  Info:      ',
  ].join('\n');

  it('reads the holder from terraform’s lock error', () => {
    expect(parseLockError(text)).toEqual({
      id: 'a65d0832-1c85-9a53-3694-30a927330c9d',
      who: 'clawdinator@clawdinator-1',
      operation: 'OperationTypeApply',
      created: '2026-11-24 20:41:24.973385391 +0000 UTC',
      path: 'state/clawdinator/clawdinator-3.tfstate',
    });
    expect(parseLockError('Error: Invalid AMI ID')).toBeUndefined();
  });

  it('reads Go timestamps, offsets included', () => {
    expect(parseCreated('2026-11-24 20:41:24.973385391 +0000 UTC')).toBe(Date.parse('2026-11-24T20:41:24.973Z'));
    expect(parseCreated('2026-11-24 21:41:24 +0100 CET')).toBe(Date.parse('2026-11-24T20:41:24Z'));
    expect(parseCreated('yesterday')).toBeUndefined();
  });

  it('owns a lock only with the recorded user@host, created since the recorded time', () => {
    const lock = parseLockError(text);
    if (lock === undefined) throw new Error('no lock');
    expect(ownsLock(lock, { who: 'clawdinator@clawdinator-1', since: '2026-11-24T20:41:24.000Z' })).toBe(true);
    expect(ownsLock(lock, { who: 'clawdinator@clawdinator-1', since: '2026-11-24T20:41:25.000Z' })).toBe(false);
    expect(ownsLock(lock, { who: 'clawdinator@clawdinator-2', since: '2026-11-24T20:41:24.000Z' })).toBe(false);
    expect(lockOwner(new Date('2026-01-01T00:00:00Z')).since).toBe('2026-01-01T00:00:00.000Z');
    expect(lockOwner().who).toMatch(/^[^@]+@[^@]+$/);
  });
});
