// What an agent can plant in the memory folder, and how a test sees the locks a process holds.
import { execFileSync } from 'node:child_process';
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

/** A FIFO at `path` (mkfifo(1): Node has no mkfifo). */
export function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

/**
 * Symlinks to `target` at the backup temp names the store used to write through
 * (`.<name>.prev.<pid>.tmp`): for `pids`, and for the next few hundred pids this kernel will
 * hand out (a CLI process started after this call gets one of them). Returns the names.
 */
export function plantBackupTempLinks(dir: string, name: string, target: string, pids: number[] = []): string[] {
  const last = Number(readFileSync('/proc/sys/kernel/ns_last_pid', 'utf8'));
  const all = new Set(pids);
  for (let pid = last + 1; pid <= last + 400; pid++) all.add(pid);
  const names = [...all].map((pid) => `.${name}.prev.${pid}.tmp`);
  for (const n of names) symlinkSync(target, join(dir, n));
  return names;
}

/** The flock/POSIX locks `pid` holds now, as /proc/locks lists them. */
export function locksHeldBy(pid: number): string[] {
  return readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((line) => line.split(/\s+/)[4] === String(pid));
}
