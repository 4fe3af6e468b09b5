// flock(2) locks on the file itself — the same locks util-linux `flock(1)` takes, so the
// agents' shell tools (`flock -s`/`flock -x`) and this code exclude each other, on a local
// disk and on NFSv4/EFS (where the kernel maps flock onto NFS locks). Not fcntl locks (they
// do not exclude flock(1)), not lock files. fs-ext is the binding: Node has no flock.
//
// Waiting polls a non-blocking attempt with a growing back-off instead of a blocking
// flock on the thread pool: a blocked call cannot be cancelled at the timeout, and a few of
// them would hold every libuv thread that the lock holder needs to finish its write.
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

// Loaded with require: an ESM import of this CommonJS addon runs Node's export scanner
// over it on every start, a measurable part of `memory read`'s cold start.
const { flockSync } = createRequire(import.meta.url)('fs-ext') as typeof import('fs-ext');

export type LockMode = 'shared' | 'exclusive';

export class LockTimeout extends Error {}

const FIRST_PAUSE_MS = 1;
const MAX_PAUSE_MS = 25;

/** Takes the lock on an open descriptor, waiting up to `waitMs`; throws LockTimeout. */
export async function lockFd(fd: number, mode: LockMode, waitMs: number): Promise<void> {
  const flag = mode === 'shared' ? 'shnb' : 'exnb';
  const deadline = Date.now() + waitMs;
  let pause = FIRST_PAUSE_MS;
  for (;;) {
    if (tryLock(fd, flag)) return;
    const left = deadline - Date.now();
    if (left <= 0) throw new LockTimeout('lock timeout');
    // Jitter keeps many waiters from retrying in step.
    await sleep(Math.min(left, pause * (0.5 + Math.random())));
    pause = Math.min(MAX_PAUSE_MS, pause * 2);
  }
}

function tryLock(fd: number, flag: 'shnb' | 'exnb'): boolean {
  try {
    flockSync(fd, flag);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false;
    throw err;
  }
}
