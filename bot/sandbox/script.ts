// Sandbox scripts: console lines run one after another, each waiting for the jobs it started.
//   # a comment            skipped, as are blank lines
//   /status                must succeed (and so must every job it starts)
//   !/memory write …       must be refused or fail (the handler's error, or a job that fails)
// The run says how many lines did what they expected; the script passes only if all did.
import { readFile } from 'node:fs/promises';
import { UsageError } from '../../lib/errors.js';
import type { LineResult } from './run.js';

export interface ScriptLine {
  /** 1-based line number in the file. */
  number: number;
  /** The console line, without the `!`. */
  text: string;
  expectFailure: boolean;
}

export function parseScript(text: string): ScriptLine[] {
  const out: ScriptLine[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const expectFailure = line.startsWith('!');
    out.push({ number: i + 1, text: expectFailure ? line.slice(1).trim() : line, expectFailure });
  });
  return out;
}

export async function readScript(path: string): Promise<ScriptLine[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--script: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  return parseScript(text);
}

export interface ScriptSummary {
  ok: number;
  failed: { line: ScriptLine; why: string }[];
  /** Stopped before the end (Ctrl-C, SIGTERM). */
  interrupted: boolean;
}

export interface ScriptRunner {
  runLine(line: string): Promise<LineResult>;
  print(text: string): void;
  /** True once the run should stop (a signal). */
  stopping(): boolean;
}

export async function runScript(lines: ScriptLine[], runner: ScriptRunner): Promise<ScriptSummary> {
  const summary: ScriptSummary = { ok: 0, failed: [], interrupted: false };
  for (const line of lines) {
    if (runner.stopping()) {
      summary.interrupted = true;
      break;
    }
    runner.print(`\n${line.expectFailure ? '!' : ''}> ${line.text}`);
    const result = await runner.runLine(line.text);
    const timedOut = result.jobs.some((j) => j.kind === 'timeout');
    const failed = !result.ok;
    if (timedOut) {
      summary.failed.push({ line, why: 'a job it started did not finish in time' });
    } else if (failed === line.expectFailure) {
      summary.ok++;
    } else {
      summary.failed.push({
        line,
        why: line.expectFailure ? 'expected a refusal or failure, but it succeeded' : 'failed',
      });
    }
    if (runner.stopping()) summary.interrupted = true;
  }
  return summary;
}

export function summaryLine(summary: ScriptSummary): string {
  const n = summary.ok;
  const m = summary.failed.length;
  return `${n} ${n === 1 ? 'line' : 'lines'} ok, ${m} failed${summary.interrupted ? ' (interrupted)' : ''}`;
}
