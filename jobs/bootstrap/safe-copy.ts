// How root (the bootstrap) puts files into a directory another user owns — the agent's home —
// without ever following a link the agent planted there. The agent can create, rename and
// replace entries in its home at any moment, so nothing is looked up by a path through it:
//
//   - the home is opened once (O_DIRECTORY|O_NOFOLLOW, checked to be a directory), and every
//     name below it is reached from a directory descriptor (Node has no openat: on Linux
//     /proc/self/fd/<fd>/<name> resolves <name> in that directory; only the last component is
//     looked up, and it is never followed);
//   - files are created O_CREAT|O_EXCL|O_NOFOLLOW (a planted name, link or not, fails the
//     create instead of redirecting it), directories with mkdir (EEXIST on anything planted),
//     and each is given to the owner through its own descriptor (fchown), links with lchown;
//   - the new tree is built under an unpredictable temporary name and renamed into place
//     (rename moves a link, never what it points to); the old tree is renamed aside first and
//     removed by descriptor-relative unlink/rmdir, so a link swapped in mid-removal is removed
//     itself and nothing outside the tree is touched.
import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import {
  chown,
  type FileHandle,
  lchown,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  rmdir,
  symlink,
  unlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { OperationError } from '../../lib/errors.js';

export interface Owner {
  uid: number;
  gid: number;
}

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY } = constants;

/** `name` looked up in the directory open as `dir`, and only there. */
export function at(dir: FileHandle, name: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) {
    throw new OperationError(`not a plain name: ${JSON.stringify(name)}`);
  }
  return `/proc/self/fd/${dir.fd}/${name}`;
}

/** A directory opened without following a link at its last component. */
export async function openDir(path: string): Promise<FileHandle> {
  try {
    return await open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw new OperationError(`${path} is not a directory (a link?)`);
    throw err;
  }
}

/**
 * Replaces `<parent>/<name>` by a copy of the trusted tree `src`, every entry created for
 * `owner` (null: left to the creator, for tests that do not run as root). Readers see the old
 * tree or the whole new one.
 */
export async function installTree(parent: string, name: string, src: string, owner: Owner | null): Promise<void> {
  // A home that is not there yet (the module's tmpfiles make it) is made for its owner, 0700.
  const made = await mkdir(parent, { recursive: true, mode: 0o700 });
  if (made !== undefined && owner !== null) await chown(parent, owner.uid, owner.gid);
  const home = await openDir(parent);
  const tmp = `.${name}.partial-${randomBytes(8).toString('hex')}`;
  try {
    try {
      await mkdir(at(home, tmp), { mode: 0o755 });
      const top = await openDir(at(home, tmp));
      try {
        if (owner !== null) await top.chown(owner.uid, owner.gid);
        await copyInto(src, top, owner);
      } finally {
        await top.close();
      }
    } catch (err) {
      await removeAt(home, tmp);
      throw err;
    }
    const old = `.${name}.old-${randomBytes(8).toString('hex')}`;
    let moved = false;
    try {
      await rename(at(home, name), at(home, old));
      moved = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await rename(at(home, tmp), at(home, name));
    if (moved) await removeAt(home, old);
  } finally {
    await home.close();
  }
}

/** Removes `<parent>/<name>` (whatever it is now) without following anything. */
export async function removeTree(parent: string, name: string): Promise<void> {
  let dir: FileHandle;
  try {
    dir = await openDir(parent);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    await removeAt(dir, name);
  } finally {
    await dir.close();
  }
}

/** Copies the entries of `src` into the directory open as `dst`, each created for `owner`. */
async function copyInto(src: string, dst: FileHandle, owner: Owner | null): Promise<void> {
  for (const entry of await readdir(src, { withFileTypes: true })) {
    const from = join(src, entry.name);
    const to = at(dst, entry.name);
    if (entry.isDirectory()) {
      await mkdir(to, { mode: 0o755 });
      const sub = await openDir(to);
      try {
        if (owner !== null) await sub.chown(owner.uid, owner.gid);
        await copyInto(from, sub, owner);
      } finally {
        await sub.close();
      }
    } else if (entry.isFile()) {
      const out = await open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
      // Given away before any byte is written: chown through the descriptor we created.
      if (owner !== null) await out.chown(owner.uid, owner.gid);
      await pipeline(createReadStream(from), out.createWriteStream());
    } else if (entry.isSymbolicLink()) {
      // Copied as a link (repo checkouts have them); never resolved here.
      await symlink(await readlink(from), to);
      if (owner !== null) await lchown(to, owner.uid, owner.gid);
    }
    // Anything else (FIFOs, sockets, devices) has no place in a workspace or a seed.
  }
}

/** Removes `name` in the directory open as `dir`: a link or file is unlinked, a directory emptied first. */
async function removeAt(dir: FileHandle, name: string): Promise<void> {
  let sub: FileHandle;
  try {
    sub = await open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ELOOP' || code === 'ENOTDIR') {
      await unlink(at(dir, name)).catch(ignoreGone);
      return;
    }
    throw err;
  }
  try {
    for (const child of await readdir(`/proc/self/fd/${sub.fd}`)) await removeAt(sub, child);
  } finally {
    await sub.close();
  }
  await rmdir(at(dir, name)).catch(ignoreGone);
}

/** Removal is best effort: what the agent changed meanwhile is its own to clean. */
function ignoreGone(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT' && err.code !== 'ENOTEMPTY' && err.code !== 'ENOTDIR') throw err;
}
