// Running a sandbox script through the built binary, as a user's shell would (only PATH and
// HOME from this environment), and reading one script line's output back.
import { spawn } from 'node:child_process';
import { CLI, type CliResult } from './cli.js';

export function runSandbox(cwd: string, args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** The output of one script line (the `nth` time it appears): from its echo to the next line's. */
export function section(stdout: string, line: string, nth = 0): string {
  const parts = stdout.split(/\n(?=!?> )/).filter((p) => p.replace(/^!/, '').startsWith(`> ${line}\n`));
  const part = parts[nth];
  if (part === undefined) throw new Error(`no output for line ${line} (#${nth})`);
  return part;
}
