// Sandbox scripts: console lines run one after another, each waiting for the jobs it started.
//   # a comment            skipped, as are blank lines
//   /status                must succeed (and so must every job it starts)
//   !/memory write …       must be refused or fail (the handler's refusal or error, or a job
//                          that fails) — not crash: "Something went wrong" or the harness
//                          falling over is never the failure a script expects
//   !{words} /spawn …      the same, and the refusal's or failure's text must contain the
//                          words (case and spacing aside)
// The run says how many lines did what they expected; the script passes only if all did.
import { readFile } from 'node:fs/promises';
import { errorLine, UsageError } from '../../lib/errors.js';
import type { LineResult } from './run.js';

export interface ScriptLine {
  /** 1-based line number in the file. */
  number: number;
  /** The console line, without the `!` and its words. */
  text: string;
  expectFailure: boolean;
  /** `!{words}`: what the refusal or failure must say. */
  expectWords?: string;
}

export function parseScript(text: string): ScriptLine[] {
  const out: ScriptLine[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const number = i + 1;
    if (!line.startsWith('!')) {
      out.push({ number, text: line, expectFailure: false });
      return;
    }
    const rest = line.slice(1).trim();
    if (!rest.startsWith('{')) {
      out.push({ number, text: rest, expectFailure: true });
      return;
    }
    const close = rest.indexOf('}');
    const words = close < 0 ? '' : rest.slice(1, close).trim();
    if (words === '') {
      throw new UsageError(`--script line ${number}: expected !{words} /command, with the words between the braces`);
    }
    out.push({ number, text: rest.slice(close + 1).trim(), expectFailure: true, expectWords: words });
  });
  return out;
}

/** Case and runs of spaces do not matter when a line names the words of its failure. */
const normalize = (text: string) => text.toLowerCase().replace(/\s+/g, ' ').trim();

/** Why the line did not do what it expected, or undefined when it did. */
export function verdict(line: ScriptLine, result: LineResult): string | undefined {
  if (result.jobs.some((j) => j.kind === 'timeout')) return 'a job it started did not finish in time';
  const failures = result.failures ?? [];
  const crash = failures.find((f) => f.kind === 'crashed');
  if (!line.expectFailure) {
    if (result.ok) return undefined;
    const first = crash ?? failures[0];
    return first === undefined ? 'failed' : `${first.kind === 'crashed' ? 'crashed' : 'failed'}: ${first.text}`;
  }
  if (result.ok) return 'expected a refusal or failure, but it succeeded';
  if (crash !== undefined) return `expected a refusal or failure, but it crashed: ${crash.text}`;
  const words = line.expectWords;
  if (words === undefined || failures.some((f) => normalize(f.text).includes(normalize(words)))) return undefined;
  const said = failures.map((f) => f.text).join(' / ') || 'nothing';
  return `expected a refusal or failure saying "${words}", but it said: ${said}`;
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
    let result: LineResult;
    try {
      result = await runner.runLine(line.text);
    } catch (err) {
      // The harness fell over: never what a line expects, and the script goes on.
      runner.print(`⚠️ crashed: ${errorLine(err)}`);
      result = { ok: false, jobs: [], failures: [{ kind: 'crashed', text: errorLine(err) }] };
    }
    const why = verdict(line, result);
    if (why === undefined) summary.ok++;
    else summary.failed.push({ line, why });
    if (runner.stopping()) summary.interrupted = true;
  }
  return summary;
}

export function summaryLine(summary: ScriptSummary): string {
  const n = summary.ok;
  const m = summary.failed.length;
  return `${n} ${n === 1 ? 'line' : 'lines'} ok, ${m} failed${summary.interrupted ? ' (interrupted)' : ''}`;
}
