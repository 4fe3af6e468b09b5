// Which jobs a console line started, and how they ended: the sandbox wraps the handlers'
// BotJobs so every enqueue is recorded, and the relay reports each job's events. A script
// waits after each line until the jobs it started reached their result (or asked for a
// confirmation, which the next line answers), so its output comes out in a fixed order.
import type { JobEvent } from '../../jobs/engine/notify.js';
import type { BotJobAdmin, BotJobs } from '../engine.js';

export type JobEnd =
  | { jobId: string; kind: 'result'; ok: boolean; text: string }
  /** The job waits for a human: a button to press. */
  | { jobId: string; kind: 'confirm'; text: string }
  /** No result event came, but the job's state says it ended (e.g. a duplicate of a finished job). */
  | { jobId: string; kind: 'state'; ok: boolean; text: string }
  | { jobId: string; kind: 'timeout'; text: string };

/** A job's state as BullMQ keeps it (and why it failed), for the fallback check; null when gone. */
export type JobStateLookup = (jobId: string, queue: string) => Promise<{ state: string; reason?: string } | null>;

const KEEP_ENDED = 1000;
/** A job that BullMQ says has ended gets this long for its result event to arrive. */
const EVENT_GRACE_MS = 1500;
const STATE_POLL_MS = 500;

export class JobTracker {
  private started: { jobId: string; queue: string }[] = [];
  private readonly ended = new Map<string, JobEnd>();
  private readonly waiters = new Map<string, ((end: JobEnd) => void)[]>();

  constructor(private readonly lookup?: JobStateLookup) {}

  /** The handlers' BotJobs, recording every job they start. */
  wrap(inner: BotJobs): BotJobs {
    return {
      ...inner,
      enqueue: async (request) => this.record(await inner.enqueue(request)),
    };
  }

  /** The /jobs handlers' admin: a retry starts a job too. */
  wrapAdmin(inner: BotJobAdmin): BotJobAdmin {
    return {
      ...inner,
      retry: async (...args) => this.record(await inner.retry(...args)),
    };
  }

  private record<R extends { jobId: string; queue: string }>(result: R): R {
    this.started.push({ jobId: result.jobId, queue: result.queue });
    return result;
  }

  /** Jobs started since the last call. */
  take(): { jobId: string; queue: string }[] {
    const out = this.started;
    this.started = [];
    return out;
  }

  /** Called by the relay for every event it reads. */
  event(event: JobEvent): void {
    if (event.jobId === undefined) return;
    if (event.kind === 'result')
      this.settle({ jobId: event.jobId, kind: 'result', ok: event.ok === true, text: event.text });
    else if (event.kind === 'confirm') this.settle({ jobId: event.jobId, kind: 'confirm', text: event.text });
  }

  /** Waits for each job's end; a job not ended within `timeoutMs` ends as a timeout. */
  async wait(jobs: { jobId: string; queue: string }[], timeoutMs: number): Promise<JobEnd[]> {
    const deadline = Date.now() + timeoutMs;
    return Promise.all(jobs.map((j) => this.waitOne(j.jobId, j.queue, deadline)));
  }

  private settle(end: JobEnd): void {
    const previous = this.ended.get(end.jobId);
    // A confirmation is a pause, not the end: a later result replaces it.
    if (previous !== undefined && previous.kind !== 'confirm') return;
    this.ended.set(end.jobId, end);
    if (this.ended.size > KEEP_ENDED) this.ended.delete(this.ended.keys().next().value as string);
    for (const resolve of this.waiters.get(end.jobId) ?? []) resolve(end);
    this.waiters.delete(end.jobId);
  }

  private waitOne(jobId: string, queue: string, deadline: number): Promise<JobEnd> {
    const known = this.ended.get(jobId);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise<JobEnd>((resolve) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let endedSince: number | undefined;
      const finish = (end: JobEnd) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const rest = (this.waiters.get(jobId) ?? []).filter((w) => w !== finish);
        if (rest.length > 0) this.waiters.set(jobId, rest);
        else this.waiters.delete(jobId);
        resolve(end);
      };
      this.waiters.set(jobId, [...(this.waiters.get(jobId) ?? []), finish]);
      const check = async () => {
        if (done) return;
        if (Date.now() >= deadline) {
          finish({ jobId, kind: 'timeout', text: `${jobId} did not finish in time` });
          return;
        }
        if (this.lookup) {
          const found: { state: string; reason?: string } | null = await this.lookup(jobId, queue).catch(() => ({
            state: 'unknown',
          }));
          if (done) return;
          const state = found?.state ?? null;
          if (state === 'completed' || state === 'failed' || state === null) {
            endedSince ??= Date.now();
            if (Date.now() - endedSince >= EVENT_GRACE_MS) {
              const text =
                state === null ? `${jobId} is gone` : `${jobId} ${state}${found?.reason ? `: ${found.reason}` : ''}`;
              finish({ jobId, kind: 'state', ok: state === 'completed', text });
              return;
            }
          } else {
            endedSince = undefined;
          }
        }
        timer = setTimeout(check, Math.min(STATE_POLL_MS, Math.max(0, deadline - Date.now())));
      };
      timer = setTimeout(check, Math.min(STATE_POLL_MS, Math.max(0, deadline - Date.now())));
    });
  }
}
