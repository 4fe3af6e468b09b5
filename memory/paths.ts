// Path rules of the shared memory: every path names something inside the root. Relative
// paths are taken from the root; an absolute path is accepted only when it lies inside the
// root (so `memory read /memory/ops.md` works like the shell tool). Refused, before anything
// is touched: empty names, NUL and control characters, `..` segments, paths that leave the
// root, and symlinks whose target lies outside it.
import { lstatSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { UsageError } from '../lib/errors.js';

const MAX_PATH_LENGTH = 1024;
const MAX_SEGMENT_LENGTH = 255;
// C0 controls, DEL and the C1 range: none has a place in a file name, and several change
// what a terminal or a Discord message shows.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export interface ResolvedPath {
  /** Path relative to the root, with `/` separators: what users and audit lines see. */
  relative: string;
  /** Absolute path to open, with symlinks inside the root resolved. */
  absolute: string;
}

/** Checks a user-supplied path and resolves it inside the root. Throws UsageError. */
export function resolveMemoryPath(root: string, input: string, options: { allowRoot?: boolean } = {}): ResolvedPath {
  if (typeof input !== 'string' || input.length === 0) throw new UsageError('path refused: empty name');
  if (input.length > MAX_PATH_LENGTH) throw new UsageError(`path refused: longer than ${MAX_PATH_LENGTH} characters`);
  if (CONTROL.test(input)) throw new UsageError('path refused: contains a control character');
  const rootReal = realRoot(root);
  let rel = input;
  if (isAbsolute(input)) {
    const fromRoot = relative(resolve(root), resolve(input));
    const fromReal = relative(rootReal, resolve(input));
    const inside = [fromRoot, fromReal].find((r) => r === '' || (!r.startsWith('..') && !isAbsolute(r)));
    if (inside === undefined) throw new UsageError('path refused: outside the memory folder');
    rel = inside;
  }
  const segments = rel.split('/').filter((s) => s !== '' && s !== '.');
  if (rel.split('/').includes('..')) throw new UsageError('path refused: ".." is not allowed');
  if (segments.some((s) => s.length > MAX_SEGMENT_LENGTH)) throw new UsageError('path refused: a name is too long');
  if (segments.length === 0 && !options.allowRoot) throw new UsageError('path refused: empty name');
  const joined = join(rootReal, ...segments);
  const absolute = resolveInside(rootReal, joined);
  return { relative: segments.join('/'), absolute };
}

function realRoot(root: string): string {
  try {
    return realpathSync(root);
  } catch {
    throw new UsageError(`memory folder ${root} does not exist (run \`clawdinator memory init\`)`);
  }
}

/**
 * Resolves symlinks of the longest existing prefix of `path` and checks that the result
 * stays inside the root; the missing rest (a file about to be created) is appended as is.
 */
function resolveInside(rootReal: string, path: string): string {
  let existing = path;
  const rest: string[] = [];
  for (;;) {
    try {
      const real = realpathSync(existing);
      const full = join(real, ...rest.reverse());
      const rel = relative(rootReal, full);
      if (rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
        throw new UsageError('path refused: a symlink leads outside the memory folder');
      }
      return full;
    } catch (err) {
      if (err instanceof UsageError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw new UsageError(`path refused: cannot resolve (${code ?? 'error'})`);
      if (isDanglingLink(existing)) throw new UsageError('path refused: a symlink leads nowhere');
      const cut = existing.lastIndexOf(sep);
      if (cut <= 0) throw new UsageError('path refused: outside the memory folder');
      rest.push(existing.slice(cut + 1));
      existing = existing.slice(0, cut);
    }
  }
}

function isDanglingLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
