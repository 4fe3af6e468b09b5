// The descriptor walk's preconditions: /proc/self/fd must really be procfs, and only single
// components ever go after a descriptor.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { at, PROC_FD, requireProcFd } from '../../memory/walk.js';
import { tempDir } from '../support/cli.js';

describe('requireProcFd', () => {
  it('passes on this Linux host', () => {
    expect(() => requireProcFd()).not.toThrow();
  });

  it('refuses, in one line, when the directory is missing or only looks like /proc/self/fd', () => {
    const fake = tempDir('clawdinator-fakeproc-');
    // The look-alike has an entry for the descriptor the check will use (the next free one).
    const next = openSync('/', 'r');
    closeSync(next);
    for (let fd = 0; fd <= next + 16; fd++) mkdirSync(join(fake, String(fd)));
    for (const dir of ['/nonexistent/self/fd', fake]) {
      let message = '';
      try {
        requireProcFd(dir);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toBe(
        `memory: ${dir} is not available (needs Linux with /proc mounted); the store opens files only relative to a directory descriptor and will not start without it`,
      );
    }
  });
});

describe('at', () => {
  it('takes one name only: never "..", ".", a slash or NUL', async () => {
    const dir = await open(tempDir(), 'r');
    try {
      expect(at(dir, 'ops.md')).toBe(`${PROC_FD}/${dir.fd}/ops.md`);
      for (const bad of ['', '.', '..', 'a/b', '../x', 'x\0'])
        expect(() => at(dir, bad)).toThrow(/single path component/);
    } finally {
      await dir.close();
    }
  });
});
