// Idle-RSS measurement shared by the bench rows: a process started, left idle ~3 s once it says
// it is ready, its resident set read from procfs, then stopped.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { projectRoot } from '../../lib/paths.js';

export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 'NaN') / 1024;
}

/**
 * Starts `node argv…` in the project root, waits until its stdout or stderr contains `ready`,
 * then ~3 s idle, reads its RSS and stops it (SIGTERM). `env`: the whole environment (default:
 * this process's).
 */
export async function idleRss(argv: string[], ready: string, env?: NodeJS.ProcessEnv): Promise<number> {
  const child = spawn(process.execPath, argv, { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const on = (d: Buffer) => {
      out += d.toString();
      if (out.includes(ready)) resolve();
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    void exited.then((code) =>
      reject(new Error(`${argv.join(' ').slice(0, 200)} exited (${code}) before it was ready: ${out.slice(-300)}`)),
    );
  });
  await new Promise((r) => setTimeout(r, 3000));
  const rss = rssMiB(child.pid as number);
  child.kill('SIGTERM');
  await exited;
  return rss;
}
