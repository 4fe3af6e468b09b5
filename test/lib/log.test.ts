import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/log.js';

describe('createLogger', () => {
  it('redacts secrets by key, at the top level and nested', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = createLogger('info', sink);
    const planted = 'planted-secret-4f1c9a';
    log.info({ token: planted, job: { password: planted, name: 'spawn' }, a: { b: { privateKey: planted } } }, 'x');
    const out = lines.join('');
    expect(out).not.toContain(planted);
    expect(out).toContain('"name":"spawn"');
    expect(out.match(/\[redacted\]/g)).toHaveLength(3);
  });
});
