// The shared memory store: the hive mind's markdown files under one root (on hosts the EFS
// mount `/memory`). A drop-in for the agents' shell tools, and excluded by them: readers
// take a shared flock(2) lock on the file itself, writers an exclusive one, and writes go
// in place through the locked descriptor, as `flock -x FILE bash -c 'cat > FILE'` does.
//
// Why in place: replacing the file by rename gives it a new inode, and whoever holds or
// waits on the old inode's lock then excludes nobody. Why through the locked descriptor
// only: on NFS, closing any descriptor of a file drops the process's lock on it.
//
// Crash safety: before a write replaces content, the previous content is saved, fsynced, as
// `.<name>.prev` beside the file; if a host dies mid-write, that copy is the last complete
// version (`memory read dir/.name.prev`, then `memory write`). Appends never touch existing
// bytes: a crash can at worst leave a partial last line.
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ClawError, EXIT_FAILED, EXIT_USAGE, UsageError } from '../lib/errors.js';
import { type LockMode, LockTimeout, lockFd } from './lock.js';
import { resolveMemoryPath } from './paths.js';

export type MemoryErrorCode = 'not-found' | 'busy' | 'conflict' | 'too-large' | 'not-utf8' | 'not-a-file' | 'io';

export class MemoryError extends ClawError {
  readonly code: MemoryErrorCode;
  constructor(code: MemoryErrorCode, message: string, options?: ErrorOptions) {
    super(message, code === 'not-utf8' || code === 'not-a-file' ? EXIT_USAGE : EXIT_FAILED, options);
    this.code = code;
  }
}

export interface MemoryStoreOptions {
  root: string;
  maxBytes: number;
  /** Default lock wait, in seconds (the shell tools use 5). */
  waitSeconds: number;
}

export interface ReadResult {
  path: string;
  content: Buffer;
  sha256: string;
}

export interface WriteResult {
  path: string;
  bytes: number;
  sha256: string;
}

export interface ListEntry {
  path: string;
  size: number;
  mtime: string;
}

export interface LockOptions {
  waitSeconds?: number;
}

const { O_RDONLY, O_RDWR, O_CREAT, O_NOFOLLOW } = constants;
const MAX_LIST_ENTRIES = 10_000;

export function sha256(content: Buffer | string): string {
  return createHash('sha256').update(content).digest('hex');
}

export class MemoryStore {
  readonly root: string;
  readonly maxBytes: number;
  readonly waitSeconds: number;

  constructor(options: MemoryStoreOptions) {
    this.root = options.root;
    this.maxBytes = options.maxBytes;
    this.waitSeconds = options.waitSeconds;
  }

  /** Content under a shared lock. A missing file is an error and is not created. */
  async read(path: string, options: LockOptions = {}): Promise<ReadResult> {
    const target = resolveMemoryPath(this.root, path);
    const handle = await this.openExisting(target.absolute, target.relative, O_RDONLY);
    try {
      // A directory opens read-only too: say what it is rather than fail reading it.
      const kind = await handle.stat();
      if (!kind.isFile()) {
        const what = kind.isDirectory() ? ' is a directory' : ' is not a regular file';
        throw new MemoryError('not-a-file', `not a file: ${target.relative}${what}`);
      }
      await this.lock(handle, 'shared', target.relative, options);
      const { size } = await handle.stat();
      if (size > this.maxBytes) throw this.tooLarge(target.relative, size);
      const content = await handle.readFile();
      return { path: target.relative, content, sha256: sha256(content) };
    } finally {
      await handle.close();
    }
  }

  /**
   * Replaces the content in place under an exclusive lock. With `ifSha256`, writes only if
   * the current content still has that hash (an edit made elsewhere is reported, not lost).
   */
  async write(
    path: string,
    content: Buffer | string,
    options: LockOptions & { ifSha256?: string } = {},
  ): Promise<WriteResult> {
    const target = resolveMemoryPath(this.root, path);
    const data = this.checkContent(target.relative, content);
    const expected = options.ifSha256?.toLowerCase();
    if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
      throw new UsageError('--if-sha256 needs 64 hexadecimal characters');
    }
    // A conditional write updates what is there; it never creates.
    const handle =
      expected === undefined
        ? await this.openForWrite(target.absolute, target.relative)
        : await this.openExisting(target.absolute, target.relative, O_RDWR);
    try {
      await this.lock(handle, 'exclusive', target.relative, options);
      const current = await handle.readFile();
      if (expected !== undefined && sha256(current) !== expected) {
        throw new MemoryError(
          'conflict',
          `changed since: ${target.relative} was modified after it was read; read it again`,
        );
      }
      if (current.length > 0) await saveBackup(target.absolute, current);
      await writeAll(handle, data, 0);
      await handle.truncate(data.length);
      await handle.datasync();
      return { path: target.relative, bytes: data.length, sha256: sha256(data) };
    } finally {
      await handle.close();
    }
  }

  /** Appends under an exclusive lock: the text on lines of its own, ending with a newline. */
  async append(path: string, content: Buffer | string, options: LockOptions = {}): Promise<WriteResult> {
    const target = resolveMemoryPath(this.root, path);
    let data = this.checkContent(target.relative, content);
    if (data.length > 0 && data[data.length - 1] !== 0x0a) data = Buffer.concat([data, Buffer.from('\n')]);
    const handle = await this.openForWrite(target.absolute, target.relative);
    try {
      await this.lock(handle, 'exclusive', target.relative, options);
      const { size } = await handle.stat();
      // Appended text starts on a line of its own, even after a file that lacks a final newline.
      const last = Buffer.alloc(1);
      if (size > 0) await handle.read(last, 0, 1, size - 1);
      const chunk = size > 0 && last[0] !== 0x0a ? Buffer.concat([Buffer.from('\n'), data]) : data;
      if (size + chunk.length > this.maxBytes) throw this.tooLarge(target.relative, size + chunk.length);
      await writeAll(handle, chunk, size);
      return { path: target.relative, bytes: size + chunk.length, sha256: '' };
    } finally {
      await handle.close();
    }
  }

  /**
   * Replaces the content with what `change` makes of it, read and written under one exclusive
   * lock through the locked descriptor; `change` returning null leaves the file as it is.
   * Anything but a regular file is refused before a byte is read (opened read-write, a FIFO
   * does not block the open). `readLimit` lets a caller read a file over the cap in order to
   * shrink it (the ops log's rotation); what is written stays within the cap.
   */
  async update(
    path: string,
    change: (current: Buffer) => Promise<Buffer | string | null>,
    options: LockOptions & { readLimit?: number } = {},
  ): Promise<WriteResult | null> {
    const target = resolveMemoryPath(this.root, path);
    const handle = await this.openForWrite(target.absolute, target.relative);
    try {
      if (!(await handle.stat()).isFile()) {
        throw new MemoryError('not-a-file', `not a file: ${target.relative} is not a regular file`);
      }
      await this.lock(handle, 'exclusive', target.relative, options);
      const { size } = await handle.stat();
      if (size > (options.readLimit ?? this.maxBytes)) throw this.tooLarge(target.relative, size);
      const current = await handle.readFile();
      const next = await change(current);
      if (next === null) return null;
      const data = this.checkContent(target.relative, next);
      if (current.length > 0) await saveBackup(target.absolute, current);
      await writeAll(handle, data, 0);
      await handle.truncate(data.length);
      await handle.datasync();
      return { path: target.relative, bytes: data.length, sha256: sha256(data) };
    } finally {
      await handle.close();
    }
  }

  /**
   * Runs `fn` while holding the exclusive lock (the drop-in for the shell `memory-edit`).
   * Creates the file when missing, as flock(1) does for the command it runs.
   */
  async withExclusiveLock<T>(
    path: string,
    fn: (absolute: string) => Promise<T>,
    options: LockOptions = {},
  ): Promise<T> {
    const target = resolveMemoryPath(this.root, path);
    const handle = await this.openForWrite(target.absolute, target.relative);
    try {
      await this.lock(handle, 'exclusive', target.relative, options);
      return await fn(target.absolute);
    } finally {
      await handle.close();
    }
  }

  /** Files below `dir` (default: the whole store), without hidden files, sorted by path. */
  async list(dir = ''): Promise<ListEntry[]> {
    const start = resolveMemoryPath(this.root, dir === '' ? '.' : dir, { allowRoot: true });
    const out: ListEntry[] = [];
    const walk = async (abs: string, rel: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(abs, { withFileTypes: true });
      } catch (err) {
        throw ioError(rel || '.', err);
      }
      entries.sort((a, b) => a.name.localeCompare(b.name));
      for (const entry of entries) {
        if (entry.name.startsWith('.') || out.length >= MAX_LIST_ENTRIES) continue;
        const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
        const childAbs = join(abs, entry.name);
        // Symlinks are not followed: listing stays inside the folder by construction.
        if (entry.isDirectory()) await walk(childAbs, childRel);
        else if (entry.isFile()) {
          const st = await lstat(childAbs);
          out.push({ path: childRel, size: st.size, mtime: st.mtime.toISOString() });
        }
      }
    };
    const st = await lstat(start.absolute).catch((err) => {
      throw (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? new MemoryError('not-found', `no such directory: ${start.relative || '.'}`)
        : ioError(start.relative, err);
    });
    if (!st.isDirectory()) throw new MemoryError('not-a-file', `not a directory: ${start.relative}`);
    await walk(start.absolute, start.relative);
    return out;
  }

  private checkContent(relative: string, content: Buffer | string): Buffer {
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    if (data.length > this.maxBytes) throw this.tooLarge(relative, data.length);
    if (!isUtf8(data)) throw new MemoryError('not-utf8', `refused: content for ${relative} is not valid UTF-8`);
    return data;
  }

  private tooLarge(relative: string, size: number): MemoryError {
    return new MemoryError('too-large', `too large: ${relative} would be ${size} bytes (cap ${this.maxBytes})`);
  }

  private async lock(handle: FileHandle, mode: LockMode, relative: string, options: LockOptions): Promise<void> {
    const wait = options.waitSeconds ?? this.waitSeconds;
    try {
      await lockFd(handle.fd, mode, wait * 1000);
    } catch (err) {
      if (err instanceof LockTimeout) {
        throw new MemoryError('busy', `lock timeout: ${relative} stayed locked for ${wait} s`);
      }
      throw ioError(relative, err);
    }
  }

  private async openExisting(absolute: string, relative: string, flags: number): Promise<FileHandle> {
    try {
      return await open(absolute, flags | O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new MemoryError('not-found', `no such file: ${relative}`);
      throw openError(relative, err);
    }
  }

  private async openForWrite(absolute: string, relative: string): Promise<FileHandle> {
    try {
      await mkdir(dirname(absolute), { recursive: true });
      return await open(absolute, O_RDWR | O_CREAT | O_NOFOLLOW, 0o664);
    } catch (err) {
      throw openError(relative, err);
    }
  }
}

function openError(relative: string, err: unknown): ClawError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EISDIR') return new MemoryError('not-a-file', `not a file: ${relative} is a directory`);
  if (code === 'ELOOP') return new UsageError('path refused: the file is a symlink');
  if (code === 'ENOTDIR' || code === 'EEXIST') return new MemoryError('not-a-file', `not a file: ${relative}`);
  return ioError(relative, err);
}

function ioError(relative: string, err: unknown): MemoryError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new MemoryError('io', `I/O error on ${relative || '.'}: ${code}`, { cause: err });
}

async function writeAll(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** `.<name>.prev` beside the file, fsynced, replaced atomically (nobody locks it). */
async function saveBackup(absolute: string, content: Buffer): Promise<void> {
  const backup = join(dirname(absolute), `.${basename(absolute)}.prev`);
  const temp = `${backup}.${process.pid}.tmp`;
  const handle = await open(temp, 'w', 0o664);
  try {
    await writeAll(handle, content, 0);
    await handle.datasync();
  } catch (err) {
    await handle.close();
    await unlink(temp).catch(() => {});
    throw err;
  }
  await handle.close();
  await rename(temp, backup);
}
