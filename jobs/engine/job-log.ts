// A job's log in Redis (BullMQ's job log, read by `jobs show` and `/jobs show`): what
// terraform and SSM said while the job ran, so a failure's cause is kept with the job and not
// only on one worker's stdout. Redacted (secrets by value where the job knows them, and by
// pattern) and bounded: the last JOB_LOG_LINES lines of at most JOB_LOG_LINE_CHARS each.
import { Job, type MinimalQueue } from 'bullmq';
import { LineRedactor } from '../../lib/redact.js';

/** Lines kept per job (older ones are trimmed by BullMQ as new ones come). */
export const JOB_LOG_LINES = 500;
/** Longer lines are cut: one line of a plan must not fill the log's budget. */
export const JOB_LOG_LINE_CHARS = 1000;

// biome-ignore lint/suspicious/noControlCharactersInRegex: terminals' escapes and control characters are what it removes
const CONTROL = /\u001b\[[0-9;]*[A-Za-z]|[\u0000-\u0008\u000b-\u001f\u007f]/g;

/** One log line as it is stored: control characters out, length capped. */
export function logLine(text: string): string {
  const line = text.replace(CONTROL, '').replace(/\t/g, '  ').trimEnd();
  return line.length > JOB_LOG_LINE_CHARS ? `${line.slice(0, JOB_LOG_LINE_CHARS - 1)}…` : line;
}

/** Appends one line to a job's log; a job that is gone (removed) has no log to write. */
export async function appendJobLog(queue: MinimalQueue, jobId: string, line: string): Promise<void> {
  await Job.addJobLog(queue, jobId, logLine(line), JOB_LOG_LINES);
}

/**
 * The log of one running job: lines are redacted and written in order without making the
 * caller wait (terraform's output streams line by line); `flush` waits for what was written.
 */
export class JobLog {
  private readonly redactor = new LineRedactor();
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly write: (line: string) => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** A secret value this job's log must never show (e.g. a key the job just made). */
  secret(value: string): void {
    this.redactor.add(value);
  }

  line(text: string): void {
    for (const part of text.split('\n')) {
      const line = this.redactor.line(part);
      this.chain = this.chain.then(() => this.write(line)).catch(this.onError);
    }
  }

  /** Redacts a text the way this log does (for the job's final message). */
  redact(text: string): string {
    return this.redactor.text(text);
  }

  flush(): Promise<void> {
    return this.chain;
  }
}
