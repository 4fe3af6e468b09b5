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
//
// Hostile input: the agent writes this folder too. Every file is reached by walk.ts, one
// component at a time from a descriptor of the root, never through a symlink; it must be a
// regular file with one link, opened non-blocking (a FIFO cannot hang us), and its size is
// checked against the cap before anything reads it. The backup's temp file is created
// O_EXCL|O_NOFOLLOW under a random name in the same directory, then renamed over
// `.<name>.prev` (rename replaces a planted link, never follows it).
import { isUtf8 } from 'node:buffer';
import { constants, type Dirent, type Stats } from 'node:fs';
import { type FileHandle, lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { UsageError } from '../lib/errors.js';
import { MemoryError } from './errors.js';
import { type LockMode, LockTimeout, lockFd } from './lock.js';
import { parseMemoryPath } from './paths.js';
import { at, checkRegular, dirPath, ioError, openDirAt, openFileAt, openRoot, requireProcFd } from './walk.js';

export { MemoryError, type MemoryErrorCode } from './errors.js';

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

const { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;
const MAX_LIST_ENTRIES = 10_000;
/** Deeper folders are not listed: no path the store accepts reaches them anyway. */
const MAX_LIST_DEPTH = 32;

/** How a file is opened: `read` and `update` need it to exist; `create` makes it (and its folders). */
type OpenMode = 'read' | 'update' | 'create';

/** An open file and the open folder that holds it (for the backup beside it). */
interface Opened {
  relative: string;
  name: string;
  dir: FileHandle;
  file: FileHandle;
}

// node:crypto on first use, not at import: `clawdinator memory read` never hashes, and loading
// it (with the streams it pulls in) is ≈ 6 ms of a ≈ 0.15 s cold start.
const nodeRequire = createRequire(import.meta.url);
const crypto = () => nodeRequire('node:crypto') as typeof import('node:crypto');

export function sha256(content: Buffer | string): string {
  return crypto().createHash('sha256').update(content).digest('hex');
}

export class MemoryStore {
  readonly root: string;
  readonly maxBytes: number;
  readonly waitSeconds: number;

  constructor(options: MemoryStoreOptions) {
    // Without /proc/self/fd there is no safe way to open anything here: refuse at once.
    requireProcFd();
    this.root = options.root;
    this.maxBytes = options.maxBytes;
    this.waitSeconds = options.waitSeconds;
  }

  /** Content under a shared lock. A missing file is an error and is not created. */
  async read(path: string, options: LockOptions = {}): Promise<ReadResult> {
    const target = await this.open(path, 'read');
    try {
      await this.lock(target, 'shared', options);
      const content = await this.readLocked(target);
      let hash: string | undefined;
      return {
        path: target.relative,
        content,
        // Hashed when asked for (an edit's conflict check), not on every read.
        get sha256() {
          hash ??= sha256(content);
          return hash;
        },
      };
    } finally {
      await close(target);
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
    const { relative } = parseMemoryPath(this.root, path);
    const data = this.checkContent(relative, content);
    const expected = options.ifSha256?.toLowerCase();
    if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
      throw new UsageError('--if-sha256 needs 64 hexadecimal characters');
    }
    // A conditional write updates what is there; it never creates.
    const target = await this.open(path, expected === undefined ? 'create' : 'update');
    try {
      await this.lock(target, 'exclusive', options);
      const current = await this.readLocked(target);
      if (expected !== undefined && sha256(current) !== expected) {
        throw new MemoryError('conflict', `changed since: ${relative} was modified after it was read; read it again`);
      }
      if (current.length > 0) await saveBackup(target, current);
      await writeAll(target.file, data, 0);
      await target.file.truncate(data.length);
      await target.file.datasync();
      return { path: relative, bytes: data.length, sha256: sha256(data) };
    } finally {
      await close(target);
    }
  }

  /** Appends under an exclusive lock: the text on lines of its own, ending with a newline. */
  async append(path: string, content: Buffer | string, options: LockOptions = {}): Promise<WriteResult> {
    const { relative } = parseMemoryPath(this.root, path);
    let data = this.checkContent(relative, content);
    if (data.length > 0 && data[data.length - 1] !== 0x0a) data = Buffer.concat([data, Buffer.from('\n')]);
    const target = await this.open(path, 'create');
    try {
      await this.lock(target, 'exclusive', options);
      const { size } = await this.statLocked(target);
      // Appended text starts on a line of its own, even after a file that lacks a final newline.
      const last = Buffer.alloc(1);
      if (size > 0) await target.file.read(last, 0, 1, size - 1);
      const chunk = size > 0 && last[0] !== 0x0a ? Buffer.concat([Buffer.from('\n'), data]) : data;
      if (size + chunk.length > this.maxBytes) throw this.tooLarge(relative, size + chunk.length, 'would be');
      await writeAll(target.file, chunk, size);
      return { path: relative, bytes: size + chunk.length, sha256: '' };
    } finally {
      await close(target);
    }
  }

  /**
   * Replaces the content with what `change` makes of it, read and written under one exclusive
   * lock through the locked descriptor, creating the file (and its folders) when missing;
   * `change` returning null leaves the file as it is. The file is reached and checked as every
   * open here is (walk.ts: no links followed, a regular file with one link, a FIFO refused
   * before a byte is read). `readLimit` lets a caller read a file over the cap in order to
   * shrink it (the ops log's rotation); what is written stays within the cap.
   */
  async update(
    path: string,
    change: (current: Buffer) => Promise<Buffer | string | null>,
    options: LockOptions & { readLimit?: number } = {},
  ): Promise<WriteResult | null> {
    const limit = Math.max(options.readLimit ?? this.maxBytes, this.maxBytes);
    const target = await this.open(path, 'create', limit);
    try {
      await this.lock(target, 'exclusive', options);
      const current = await this.readLocked(target, limit);
      const next = await change(current);
      if (next === null) return null;
      const data = this.checkContent(target.relative, next);
      if (current.length > 0) await saveBackup(target, current);
      await writeAll(target.file, data, 0);
      await target.file.truncate(data.length);
      await target.file.datasync();
      return { path: target.relative, bytes: data.length, sha256: sha256(data) };
    } finally {
      await close(target);
    }
  }

  /**
   * Runs `fn` while holding the exclusive lock (the drop-in for the shell `memory-edit`).
   * Creates the file when missing, as flock(1) does for the command it runs. `fn` gets the
   * file's path under the root as configured: the command it runs opens that path itself.
   */
  async withExclusiveLock<T>(
    path: string,
    fn: (absolute: string) => Promise<T>,
    options: LockOptions = {},
  ): Promise<T> {
    const target = await this.open(path, 'create');
    try {
      await this.lock(target, 'exclusive', options);
      await this.statLocked(target);
      return await fn(join(this.root, target.relative));
    } finally {
      await close(target);
    }
  }

  /** Files below `dir` (default: the whole store), without hidden files, sorted by path. */
  async list(dir = ''): Promise<ListEntry[]> {
    const start = parseMemoryPath(this.root, dir === '' ? '.' : dir, { allowRoot: true });
    const out: ListEntry[] = [];
    const walk = async (handle: FileHandle, rel: string, depth: number): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dirPath(handle), { withFileTypes: true });
      } catch (err) {
        throw ioError(rel, err);
      }
      entries.sort((a, b) => a.name.localeCompare(b.name));
      for (const entry of entries) {
        if (entry.name.startsWith('.') || out.length >= MAX_LIST_ENTRIES) continue;
        const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
        // Symlinks are neither listed nor followed; what changes meanwhile is skipped.
        if (entry.isDirectory() && depth < MAX_LIST_DEPTH) {
          const child = await openDirAt(handle, entry.name, childRel, { create: false }).catch(() => null);
          if (child === null) continue;
          try {
            await walk(child, childRel, depth + 1);
          } finally {
            await child.close();
          }
        } else if (entry.isFile()) {
          const st = await lstat(at(handle, entry.name)).catch(() => null);
          if (st?.isFile()) out.push({ path: childRel, size: st.size, mtime: st.mtime.toISOString() });
        }
      }
    };
    let handle = await openRoot(this.root);
    try {
      for (const [i, segment] of start.segments.entries()) {
        const shown = start.segments.slice(0, i + 1).join('/');
        const next = await openDirAt(handle, segment, shown, { create: false });
        if (next === null) throw new MemoryError('not-found', `no such directory: ${start.relative}`);
        await handle.close();
        handle = next;
      }
      await walk(handle, start.relative, 0);
    } finally {
      await handle.close();
    }
    return out;
  }

  /**
   * Walks to the file from a descriptor of the root (walk.ts), creating missing folders for
   * `create`. The file is a regular file with one link and within `limit` (the cap unless a
   * caller reads more to shrink it), or an error.
   */
  private async open(path: string, mode: OpenMode, limit = this.maxBytes): Promise<Opened> {
    const { relative, segments } = parseMemoryPath(this.root, path);
    const name = segments[segments.length - 1] as string;
    let dir = await openRoot(this.root);
    try {
      for (const [i, segment] of segments.slice(0, -1).entries()) {
        const shown = segments.slice(0, i + 1).join('/');
        const next = await openDirAt(dir, segment, shown, { create: mode === 'create' });
        if (next === null) throw new MemoryError('not-found', `no such file: ${relative}`);
        await dir.close();
        dir = next;
      }
      const flags = mode === 'read' ? O_RDONLY : mode === 'update' ? O_RDWR : O_RDWR | O_CREAT;
      const opened = await openFileAt(dir, name, relative, flags);
      if (opened === null) throw new MemoryError('not-found', `no such file: ${relative}`);
      // Refused before any lock is taken or any byte read.
      if (opened.stats.size > limit) {
        await opened.handle.close();
        throw this.tooLarge(relative, opened.stats.size, 'is');
      }
      return { relative, name, dir, file: opened.handle };
    } catch (err) {
      await dir.close();
      throw err;
    }
  }

  /** fstat(2) under the lock: what the agent changed while we waited is checked again. */
  private async statLocked(target: Opened, limit = this.maxBytes): Promise<Stats> {
    const st = await target.file.stat().catch((err) => {
      throw ioError(target.relative, err);
    });
    checkRegular(st, target.relative);
    if (st.size > limit) throw this.tooLarge(target.relative, st.size, 'is');
    return st;
  }

  /** The whole content through the locked descriptor, never more than `limit` (the cap). */
  private async readLocked(target: Opened, limit = this.maxBytes): Promise<Buffer> {
    const { size } = await this.statLocked(target, limit);
    const chunks: Buffer[] = [];
    let total = 0;
    // One read for a file that stays as fstat saw it; more if it grew since (no locker of ours).
    let buf = Buffer.allocUnsafe(size + 1);
    for (;;) {
      const { bytesRead } = await target.file.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      chunks.push(buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > limit) throw this.tooLarge(target.relative, total, 'is over');
      buf = Buffer.allocUnsafe(Math.min(64 * 1024, limit + 1 - total));
    }
    return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
  }

  private checkContent(relative: string, content: Buffer | string): Buffer {
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    if (data.length > this.maxBytes) throw this.tooLarge(relative, data.length, 'would be');
    if (!isUtf8(data)) throw new MemoryError('not-utf8', `refused: content for ${relative} is not valid UTF-8`);
    return data;
  }

  private tooLarge(relative: string, size: number, verb: 'is' | 'is over' | 'would be'): MemoryError {
    return new MemoryError('too-large', `too large: ${relative} ${verb} ${size} bytes (cap ${this.maxBytes})`);
  }

  private async lock(target: Opened, mode: LockMode, options: LockOptions): Promise<void> {
    const wait = options.waitSeconds ?? this.waitSeconds;
    try {
      await lockFd(target.file.fd, mode, wait * 1000);
    } catch (err) {
      if (err instanceof LockTimeout) {
        throw new MemoryError('busy', `lock timeout: ${target.relative} stayed locked for ${wait} s`);
      }
      throw ioError(target.relative, err);
    }
  }
}

async function close(target: Opened): Promise<void> {
  // The file first: its lock goes with its last descriptor.
  await target.file.close();
  await target.dir.close();
}

async function writeAll(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * `.<name>.prev` beside the file, fsynced, replaced atomically (nobody locks it). The temp
 * file is new (O_EXCL), never a link (O_NOFOLLOW), named unpredictably, in the same folder
 * through its descriptor; rename(2) replaces whatever holds the backup's name, link or not.
 */
async function saveBackup(target: Opened, content: Buffer): Promise<void> {
  const temp = `.${target.name}.prev.${crypto().randomBytes(12).toString('hex')}.tmp`;
  const tempPath = at(target.dir, temp);
  let handle: FileHandle;
  try {
    handle = await open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o664);
  } catch (err) {
    throw ioError(`${target.relative} (its backup)`, err);
  }
  try {
    await writeAll(handle, content, 0);
    await handle.datasync();
    await handle.close();
    await rename(tempPath, at(target.dir, `.${target.name}.prev`));
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(tempPath).catch(() => {});
    throw ioError(`${target.relative} (its backup)`, err);
  }
}
