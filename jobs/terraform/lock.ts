// State locks: who holds one, and whether it is this job's own, left by a run whose worker
// died.
//
// Terraform gives a run no way to name its lock: the lock ID is a fresh UUID that is never
// printed, and "Who" is user@host of the process (os/user and os.Hostname; no flag or
// environment variable changes them). So a job records, before its first terraform run, who
// its runs will be (`lockOwner()`: user@host as terraform writes it, and the time). A lock
// is the job's own when its Who is that and it was created at or after that time. Two runs
// on one stack cannot overlap (one operation per instance at a time, and nothing else on
// the fleet runs terraform), so such a lock can only be an earlier run of this job. An
// operator's run from their own machine has another Who, and is never released.
//
// A resumed job runs on another worker after its worker died, often on another host, so it
// compares with the recorded owner, not with itself. Release only after the dead run's
// process is gone: a dead worker's terraform dies with it (systemd stops the unit's whole
// cgroup; a dead host takes everything with it).
import { hostname, userInfo } from 'node:os';

export interface LockInfo {
  id: string;
  who: string;
  operation: string;
  /** As terraform prints it: "2025-11-24 20:41:24.973385391 +0000 UTC". */
  created: string;
  path: string;
}

export interface LockOwner {
  who: string;
  /** ISO time before the first run: the owner's locks are created at or after it. */
  since: string;
}

/** Who this process's terraform runs are, from now on. */
export function lockOwner(now: Date = new Date()): LockOwner {
  return { who: `${userInfo().username}@${hostname()}`, since: now.toISOString() };
}

export function ownsLock(lock: LockInfo, owner: LockOwner): boolean {
  const created = parseCreated(lock.created);
  return lock.who === owner.who && created !== undefined && created >= Date.parse(owner.since);
}

/** The held lock in terraform's "Error acquiring the state lock" output, if that is the error. */
export function parseLockError(text: string): LockInfo | undefined {
  if (!text.includes('Error acquiring the state lock')) return undefined;
  const block = text.slice(text.indexOf('Lock Info:'));
  const field = (name: string) => new RegExp(`^\\s*${name}:[ \\t]*(.*)$`, 'm').exec(block)?.[1]?.trim() ?? '';
  const lock = {
    id: field('ID'),
    who: field('Who'),
    operation: field('Operation'),
    created: field('Created'),
    path: field('Path'),
  };
  return lock.id === '' ? undefined : lock;
}

/** Milliseconds since the epoch of terraform's Go-formatted time (nanoseconds cut to ms). */
export function parseCreated(created: string): number | undefined {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)? ([+-])(\d\d)(\d\d)/.exec(created);
  if (m === null) return undefined;
  const fraction = (m[3] ?? '.0').slice(0, 4);
  const ms = Date.parse(`${m[1]}T${m[2]}${fraction}${m[4]}${m[5]}:${m[6]}`);
  return Number.isNaN(ms) ? undefined : ms;
}

export function describeLock(lock: LockInfo): string {
  return `${lock.who} since ${lock.created} (ID ${lock.id}, ${lock.operation})`;
}
