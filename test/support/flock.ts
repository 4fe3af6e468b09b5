// Holds a util-linux flock(1) lock on a file from another process, the way the agents'
// shell tools do, and tells when the lock is really held.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

export interface HeldLock {
  release(): Promise<void>;
  exited: Promise<number>;
}

export async function holdFlock(file: string, mode: '-x' | '-s', seconds: number): Promise<HeldLock> {
  // `echo` runs only once flock(1) has the lock; the group is killed on release because
  // the command inherits the locked descriptor.
  const child: ChildProcess = spawn('flock', [mode, file, 'sh', '-c', `echo locked; exec sleep ${seconds}`], {
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('error', reject);
    child.once('close', () => reject(new Error('flock exited before taking the lock')));
  });
  return {
    exited,
    async release() {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    },
  };
}

/** Exit code of `flock -n <mode> FILE true`: 0 when the lock was free, 1 when held. */
export function tryFlock(file: string, mode: '-x' | '-s' = '-x'): number {
  return spawnSync('flock', ['-n', mode, file, 'true']).status ?? -1;
}
