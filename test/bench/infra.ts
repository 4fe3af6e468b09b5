// Bench rows of the infra app (issue: infrastructure as code). Each synth runs in its own
// process (dist/test/bench/infra-synth.js) so wall time and peak RSS are its own.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectPath } from '../../lib/paths.js';
import { median, ms, type Row } from './table.js';

const ENTRY = projectPath('dist', 'test', 'bench', 'infra-synth.js');
const INSTANCES = 10;
const RUNS = 7;

interface Measure {
  ms: number;
  maxRssMiB: number;
}

function synthOnce(mode: 'project' | 'floor' | 'barrel'): Measure {
  const outdir = mkdtempSync(join(tmpdir(), `bench-synth-${mode}-`));
  try {
    const r = spawnSync(process.execPath, [ENTRY, mode, outdir, String(INSTANCES)], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH },
    });
    if (r.status !== 0) throw new Error(`infra-synth ${mode} exited ${r.status}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Measure;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

const mib = (v: number) => `${v.toFixed(0)} MiB`;

export async function synthBudget(): Promise<Row[]> {
  synthOnce('project');
  synthOnce('floor');
  const project: Measure[] = [];
  const floor: Measure[] = [];
  // Alternated, so drift in machine speed hits both alike. The best of N is each one's
  // own cost: other processes on this 2-core machine only ever add to it.
  for (let i = 0; i < RUNS; i++) {
    project.push(synthOnce('project'));
    floor.push(synthOnce('floor'));
  }
  const best = (all: Measure[], key: keyof Measure) => Math.min(...all.map((m) => m[key]));
  const typical = (all: Measure[], key: keyof Measure) => median(all.map((m) => m[key]));
  const wallRatio = best(project, 'ms') / best(floor, 'ms');
  const rssRatio = best(project, 'maxRssMiB') / best(floor, 'maxRssMiB');
  const what = `base + ${INSTANCES} instance stacks, in-process (own process, best of ${RUNS}, median in brackets)`;
  const floorName = 'bare cdktf app, same resources, deep imports';
  return [
    {
      what: `infra synth wall: ${what}`,
      project: `${ms(best(project, 'ms'))} (${ms(typical(project, 'ms'))})`,
      floor: `${floorName}: ${ms(best(floor, 'ms'))} (${ms(typical(floor, 'ms'))})`,
      ratio: wallRatio,
      budget: '≤ 1.3×',
      ok: wallRatio <= 1.3,
    },
    {
      what: `infra synth peak RSS: ${what}`,
      project: `${mib(best(project, 'maxRssMiB'))} (${mib(typical(project, 'maxRssMiB'))})`,
      floor: `${floorName}: ${mib(best(floor, 'maxRssMiB'))} (${mib(typical(floor, 'maxRssMiB'))})`,
      ratio: rssRatio,
      budget: '≤ 1.3×',
      ok: rssRatio <= 1.3,
    },
  ];
}

/** For reference: the same floor through the provider's barrel import, and the cdktf CLI. */
export async function synthReference(): Promise<Row[]> {
  const barrel = synthOnce('barrel');
  const floor = synthOnce('floor');
  const out = mkdtempSync(join(tmpdir(), 'bench-cdktf-cli-'));
  const start = process.hrtime.bigint();
  // The CLI runs cdktf.json's app (node dist/infra/main.js) on the project's registry.
  const r = spawnSync('npx', ['cdktf', 'synth', '--output', out], {
    cwd: projectPath(),
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CHECKPOINT_DISABLE: '1' },
  });
  const cliMs = Number(process.hrtime.bigint() - start) / 1e6;
  rmSync(out, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`npx cdktf synth exited ${r.status}: ${r.stderr}`);
  return [
    {
      what: `infra synth, barrel import \`from '@cdktf/provider-aws'\` (reference: why deep imports)`,
      project: `${ms(barrel.ms)}, ${mib(barrel.maxRssMiB)}`,
      floor: `deep imports: ${ms(floor.ms)}, ${mib(floor.maxRssMiB)}`,
      ratio: barrel.ms / floor.ms,
      budget: '— (reference)',
      ok: null,
    },
    {
      what: '`npx cdktf synth` (reference: the CLI the jobs do not use; base + 1 instance)',
      project: ms(cliMs),
      floor: '—',
      ratio: null,
      budget: '— (reference)',
      ok: null,
    },
  ];
}
