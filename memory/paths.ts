// Path rules of the shared memory: every path names something inside the root. Relative
// paths are taken from the root; an absolute path is accepted only when it lies inside the
// root (so `memory read /memory/ops.md` works like the shell tool). Refused, before anything
// is touched: empty names, NUL and control characters, `..` segments, paths that leave the
// root. Symlinks are not looked at here: the store opens each component without following
// one (walk.ts), so a link planted anywhere on the path is refused when it is reached.
import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { UsageError } from '../lib/errors.js';

const MAX_PATH_LENGTH = 1024;
const MAX_SEGMENT_LENGTH = 255;
// C0 controls, DEL and the C1 range: none has a place in a file name, and several change
// what a terminal or a Discord message shows.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export interface MemoryPath {
  /** Path relative to the root, with `/` separators: what users and audit lines see. */
  relative: string;
  /** Its components, each one name (never empty, `.` or `..`): what the walk opens. */
  segments: string[];
}

/** Checks a user-supplied path and splits it into components below the root. Throws UsageError. */
export function parseMemoryPath(root: string, input: string, options: { allowRoot?: boolean } = {}): MemoryPath {
  if (typeof input !== 'string' || input.length === 0) throw new UsageError('path refused: empty name');
  if (input.length > MAX_PATH_LENGTH) throw new UsageError(`path refused: longer than ${MAX_PATH_LENGTH} characters`);
  if (CONTROL.test(input)) throw new UsageError('path refused: contains a control character');
  let rel = input;
  if (isAbsolute(input)) {
    const fromRoot = relative(resolve(root), resolve(input));
    const inside = (r: string) => r === '' || (!r.startsWith('..') && !isAbsolute(r));
    // The root as configured, or as the kernel names it (a root reached through a link).
    const found = inside(fromRoot) ? fromRoot : [relative(realRoot(root), resolve(input))].find(inside);
    if (found === undefined) throw new UsageError('path refused: outside the memory folder');
    rel = found;
  }
  if (rel.split('/').includes('..')) throw new UsageError('path refused: ".." is not allowed');
  const segments = rel.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.some((s) => s.length > MAX_SEGMENT_LENGTH)) throw new UsageError('path refused: a name is too long');
  if (segments.length === 0 && !options.allowRoot) throw new UsageError('path refused: empty name');
  return { relative: segments.join('/'), segments };
}

function realRoot(root: string): string {
  try {
    return realpathSync(root);
  } catch {
    throw new UsageError(`memory folder ${root} does not exist (run \`clawdinator memory init\`)`);
  }
}
