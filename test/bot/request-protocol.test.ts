// The request socket's line framing and the text it puts on an agent's terminal.
import { describe, expect, it } from 'vitest';
import { inertText, LineSplitter } from '../../bot/request-protocol.js';

describe('LineSplitter', () => {
  it('joins lines split across chunks and keeps a partial line for the next chunk', () => {
    const s = new LineSplitter(16);
    expect(s.push(Buffer.from('{"a":'))).toEqual([]);
    expect(s.push(Buffer.from('1}\n{"b"'))).toEqual(['{"a":1}']);
    expect(s.push(Buffer.from(':2}\n\n'))).toEqual(['{"b":2}', '']);
  });

  it('refuses a line past the bound, whether it arrives at once or a byte at a time', () => {
    expect(new LineSplitter(8).push(Buffer.from('123456789\n'))).toBe('overflow');
    const s = new LineSplitter(8);
    for (const byte of '12345678') expect(s.push(Buffer.from(byte))).toEqual([]);
    expect(s.push(Buffer.from('9'))).toBe('overflow');
    // Exactly the bound is a line.
    expect(new LineSplitter(8).push(Buffer.from('12345678\n'))).toEqual(['12345678']);
  });
});

describe('inertText', () => {
  it('turns control characters and escape sequences into spaces and cuts long text', () => {
    expect(inertText('step\u001b[2J\u001b]0;owned\u0007 done\r\nnext\u2028')).toBe('step [2J ]0;owned  done  next ');
    expect(inertText('x'.repeat(50), 10)).toBe(`${'x'.repeat(9)}…`);
    expect(inertText('clawdinator-3 online: i-0abc')).toBe('clawdinator-3 online: i-0abc');
  });
});
