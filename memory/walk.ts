// Opening files under a folder the agent can write, without following anything it planted.
//
// The agent writes /memory (shared by every host over EFS); the ops user reads and writes
// it. A path checked first and opened later can be steered between the two (an intermediate
// directory swapped for a symlink), and O_NOFOLLOW guards only the last component. So every
// open here walks the path one component at a time from a directory descriptor, each step
// refusing a symlink, the way openat(2) with O_NOFOLLOW would.
//
// Node has no openat. On Linux `/proc/self/fd/<dirfd>/<name>` is resolved relative to the
// descriptor: the kernel follows the `/proc/self/fd/<dirfd>` magic link to the very directory
// the descriptor holds (wherever it has been moved since), then looks `<name>` up in it, and
// O_NOFOLLOW applies to `<name>`. We use that rather than a native helper: no second addon to
// build on every host (fs-ext is the one we need anyway, for flock), the same libuv thread
// pool and FileHandles as the rest of Node's fs, and open/mkdir/link/rename/readdir/lstat all
// work through the same path form. The price is one rule: only a single validated component
// ever goes after the descriptor (the kernel resolves `..` there too), and /proc must be
// mounted — without it the store refuses to start rather than fall back to plain paths.
import { closeSync, constants, fstatSync, openSync, type Stats, statSync } from 'node:fs';
import { type FileHandle, lstat, mkdir, open } from 'node:fs/promises';
import { OperationError, UsageError } from '../lib/errors.js';
import { MemoryError } from './errors.js';

export const PROC_FD = '/proc/self/fd';

const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

let procChecked = false;

/**
 * Refuses to go on unless `<dir>/<fd>` names the descriptor's own file (procfs): checked by
 * inode, so a look-alike directory does not pass. Once per process for the real /proc.
 */
export function requireProcFd(dir = PROC_FD): void {
  if (dir === PROC_FD && procChecked) return;
  const fd = openSync('/', O_RDONLY | O_DIRECTORY);
  try {
    const own = fstatSync(fd);
    let seen: Stats | undefined;
    try {
      seen = statSync(`${dir}/${fd}`);
    } catch {
      seen = undefined;
    }
    if (seen === undefined || seen.ino !== own.ino || seen.dev !== own.dev) {
      throw new OperationError(
        `memory: ${dir} is not available (needs Linux with /proc mounted); the store opens files only relative to a directory descriptor and will not start without it`,
      );
    }
  } finally {
    closeSync(fd);
  }
  if (dir === PROC_FD) procChecked = true;
}

/** The path that resolves `name` inside the directory `dir` holds (see above). */
export function at(dir: FileHandle, name: string): string {
  checkComponent(name);
  return `${PROC_FD}/${dir.fd}/${name}`;
}

/** One path component: never empty, `.`, `..` or containing a slash or NUL. */
export function checkComponent(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    // A caller bug, not user input: paths.ts refuses these before anything is opened.
    throw new Error(`not a single path component: ${JSON.stringify(name)}`);
  }
}

/** The trusted root (configured, not agent-writable): the one open that follows links. */
export async function openRoot(root: string): Promise<FileHandle> {
  try {
    return await open(root, O_RDONLY | O_DIRECTORY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new UsageError(`memory folder ${root} does not exist (run \`clawdinator memory init\`)`);
    if (code === 'ENOTDIR') throw new UsageError(`memory folder ${root} is not a directory`);
    throw new MemoryError('io', `I/O error on the memory folder ${root}: ${code ?? 'error'}`, { cause: err });
  }
}

/**
 * The directory `name` inside `parent`, never through a symlink; with `create`, made first
 * when missing (mkdir(2) never follows a link either: a planted one is EEXIST, then refused).
 * Returns null when it is missing and not to be created. `shown` names it in errors.
 */
export async function openDirAt(
  parent: FileHandle,
  name: string,
  shown: string,
  options: { create: boolean },
): Promise<FileHandle | null> {
  const path = at(parent, name);
  if (options.create) {
    try {
      await mkdir(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw ioError(shown, err);
    }
  }
  let handle: FileHandle;
  try {
    handle = await open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR (or ELOOP): say which it was.
    if (code === 'ENOTDIR' || code === 'ELOOP') throw await notADirectory(parent, name, shown);
    throw ioError(shown, err);
  }
  // O_DIRECTORY guarantees it; checked again because everything after trusts it.
  const st = await handle.stat().catch(async (err) => {
    await handle.close();
    throw ioError(shown, err);
  });
  if (!st.isDirectory()) {
    await handle.close();
    throw new MemoryError('not-a-file', `not a directory: ${shown} is a ${kindOf(st)}`);
  }
  return handle;
}

async function notADirectory(parent: FileHandle, name: string, shown: string): Promise<Error> {
  const st = await lstat(at(parent, name)).catch(() => null);
  if (st?.isSymbolicLink()) return symlinkRefused(shown);
  return new MemoryError('not-a-file', `not a directory: ${shown}${st ? ` is a ${kindOf(st)}` : ''}`);
}

export interface OpenedFile {
  handle: FileHandle;
  stats: Stats;
}

/**
 * The file `name` inside `dir`: opened O_NOFOLLOW and O_NONBLOCK (a FIFO opens at once
 * instead of waiting for a writer; regular files ignore the flag), then fstat(2) must say a
 * regular file with one link. Null when it is missing and `flags` has no O_CREAT.
 */
export async function openFileAt(
  dir: FileHandle,
  name: string,
  shown: string,
  flags: number,
  mode = 0o664,
): Promise<OpenedFile | null> {
  let handle: FileHandle;
  try {
    handle = await open(at(dir, name), flags | O_NOFOLLOW | O_NONBLOCK, mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw symlinkRefused(shown);
    if (code === 'EISDIR') throw new MemoryError('not-a-file', `not a file: ${shown} is a directory`);
    // A socket (or a device) cannot be opened at all: name it from lstat, which opens nothing.
    if (code === 'ENXIO' || code === 'ENODEV') {
      const st = await lstat(at(dir, name)).catch(() => null);
      throw new MemoryError('not-a-file', `not a file: ${shown}${st ? ` is a ${kindOf(st)}` : ''}`);
    }
    throw ioError(shown, err);
  }
  try {
    const stats = await handle.stat();
    checkRegular(stats, shown);
    return { handle, stats };
  } catch (err) {
    await handle.close();
    throw err instanceof MemoryError ? err : ioError(shown, err);
  }
}

/** Throws unless `st` is a regular file with exactly one name. */
export function checkRegular(st: Stats, shown: string): void {
  if (!st.isFile()) throw new MemoryError('not-a-file', `not a file: ${shown} is a ${kindOf(st)}`);
  // Another name of the same inode may lie outside the memory folder (or be the agent's
  // handle on a file it could not otherwise reach): such a file is never read or written.
  if (st.nlink > 1) {
    throw new MemoryError('not-a-file', `refused: ${shown} has ${st.nlink} links (a hard-linked file is never opened)`);
  }
}

export function kindOf(st: Stats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device';
  return 'special file';
}

export function symlinkRefused(shown: string): UsageError {
  return new UsageError(`path refused: ${shown} is a symlink (links are never followed in the memory folder)`);
}

export function ioError(shown: string, err: unknown): MemoryError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new MemoryError('io', `I/O error on ${shown || '.'}: ${code}`, { cause: err });
}

/** The path of the directory `dir` holds (for readdir). */
export function dirPath(dir: FileHandle): string {
  return `${PROC_FD}/${dir.fd}`;
}
