// Bench rows of the shared memory (issue: foundation and memory).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flockSync } from 'fs-ext';
import { projectPath } from '../../lib/paths.js';
import { lockFd } from '../../memory/lock.js';
import { checkLines } from '../support/lines.js';
import { median, ms, percentile, type Row } from './table.js';

const CLI = projectPath('dist', 'cli', 'main.js');
const WORKER = projectPath('dist', 'test', 'bench', 'append-worker.js');

function wallMs(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}`);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export async function coldStart(): Promise<Row[]> {
  const root = mkdtempSync(join(tmpdir(), 'bench-mem-'));
  writeFileSync(join(root, 'ops.md'), '# Ops\n'.repeat(50));
  const env = { ...process.env, CLAWDINATOR_MEMORY_DIR: root };
  const project: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < 3; i++) wallMs(process.execPath, [CLI, 'memory', 'read', 'ops.md'], env);
  // Alternate the two so drift in machine speed hits both alike.
  const ratios: number[] = [];
  for (let i = 0; i < 40; i++) {
    project.push(wallMs(process.execPath, [CLI, 'memory', 'read', 'ops.md'], env));
    floor.push(wallMs(process.execPath, ['-e', '0'], env));
    ratios.push((project.at(-1) as number) / (floor.at(-1) as number));
  }
  // The median of pair-by-pair ratios: robust to the machine's speed drifting mid-run.
  const ratio = median(ratios);
  return [
    {
      what: '`clawdinator memory read` cold start, median of 40 (ratio: median of pairs)',
      project: ms(median(project)),
      floor: `\`node -e 0\` ${ms(median(floor))}`,
      ratio,
      budget: '≤ 1.6×',
      ok: ratio <= 1.6,
    },
  ];
}

function runAll(commands: [string, string[]][]): Promise<number[]> {
  return Promise.all(
    commands.map(
      ([cmd, args]) =>
        new Promise<number>((resolve) => spawn(cmd, args, { stdio: 'inherit' }).on('close', (c) => resolve(c ?? -1))),
    ),
  );
}

export async function appendThroughput(): Promise<Row[]> {
  const procs = 16;
  const perProc = 200;
  // The shell floor costs a process per append (≈ 70 s for all 3 200); its rate does not
  // depend on the count, so a shorter run measures it unless BENCH_FULL=1.
  const shellPerProc = process.env.BENCH_FULL === '1' ? perProc : 25;
  const ids = Array.from({ length: procs }, (_, i) => String(i));
  const pad = 'x'.repeat(80);

  const root = mkdtempSync(join(tmpdir(), 'bench-append-'));
  let start = process.hrtime.bigint();
  const codes = await runAll(ids.map((id) => [process.execPath, [WORKER, root, 'load.md', id, String(perProc)]]));
  const projectSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (codes.some((c) => c !== 0)) throw new Error('an append worker failed');
  const check = checkLines(readFileSync(join(root, 'load.md'), 'utf8'), ids, perProc);

  const shellFile = join(root, 'shell.md');
  writeFileSync(shellFile, '');
  const loop = (id: string) =>
    `for i in $(seq 0 ${shellPerProc - 1}); do printf 'w${id} %s ${pad} end\\n' "$i" | flock -x -w 5 "$1" bash -c 'cat >> "$1"' _ "$1"; done`;
  start = process.hrtime.bigint();
  await runAll(ids.map((id) => ['bash', ['-c', loop(id), '_', shellFile]]));
  const shellSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  const shellCheck = checkLines(readFileSync(shellFile, 'utf8'), ids, shellPerProc);

  const projectRate = (procs * perProc) / projectSeconds;
  const shellRate = (procs * shellPerProc) / shellSeconds;
  // Higher is better here, so the ratio is floor/project to keep "lower is better".
  const ratio = shellRate / projectRate;
  const clean = check.lost === 0 && check.torn === 0 && check.duplicated === 0;
  return [
    {
      what: `memory: ${procs} long-lived processes × ${perProc} locked appends, one file`,
      project: `${projectRate.toFixed(0)} appends/s (${projectSeconds.toFixed(1)} s); lost ${check.lost}, torn ${check.torn}`,
      floor: `shell \`flock -x … cat >>\`, a process per append: ${shellRate.toFixed(0)} appends/s (${procs}×${shellPerProc}; lost ${shellCheck.lost}, torn ${shellCheck.torn})`,
      ratio,
      budget: '0 lost, 0 torn; throughput ≥ 1× floor (ratio ≤ 1)',
      ok: clean && projectRate >= shellRate,
    },
  ];
}

export async function lockLatency(): Promise<Row[]> {
  const root = mkdtempSync(join(tmpdir(), 'bench-lock-'));
  const file = join(root, 'ops.md');
  writeFileSync(file, 'x\n');
  const rounds = 2000;
  const project: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let fd = openSync(file, 'r+');
    let t = process.hrtime.bigint();
    await lockFd(fd, 'exclusive', 5000);
    project.push(Number(process.hrtime.bigint() - t) / 1e6);
    closeSync(fd);
    fd = openSync(file, 'r+');
    t = process.hrtime.bigint();
    flockSync(fd, 'ex');
    floor.push(Number(process.hrtime.bigint() - t) / 1e6);
    closeSync(fd);
  }
  const p50 = percentile(project, 50);
  const p99 = percentile(project, 99);
  const f50 = percentile(floor, 50);
  const f99 = percentile(floor, 99);
  return [
    {
      what: `memory: exclusive lock acquire, uncontended, p50 / p99 of ${rounds}`,
      project: `${(p50 * 1000).toFixed(1)} µs / ${(p99 * 1000).toFixed(1)} µs`,
      floor: `bare fs-ext \`flockSync(fd, 'ex')\` ${(f50 * 1000).toFixed(1)} µs / ${(f99 * 1000).toFixed(1)} µs`,
      ratio: p99 / f99,
      budget: '— (no budget in DESIGN.md)',
      ok: null,
    },
  ];
}
