// The journal of open jobs (`keys.openJobs`): job id → {queue, at, data}, written at enqueue,
// kept current at each step save, deleted when the job is finalized (finalize.ts). BullMQ
// deletes a removed job's data with it; its finalizer reads the data here, and the sweep
// finds the jobs that ended without being finalized.
import { keys } from './keys.js';

/** One open job in the journal. */
export interface OpenJob {
  queue: string;
  /** When the entry was first written (ms). */
  at: number;
  /** The job's data as BullMQ holds it: the envelope with its saved steps. */
  data: unknown;
}

/** The entry's head (queue and first-write time): UPDATE_OPEN_JOB keeps it and splices the data after it. */
function openJobHead(queue: string, at: number): string {
  return `{"queue":${JSON.stringify(queue)},"at":${Math.floor(at)},"data":`;
}

/** The entry's JSON; its head (queue and time) is written first, so UPDATE_OPEN_JOB keeps it. */
export function openJobEntry(queue: string, data: unknown, at = Date.now()): string {
  return `${openJobHead(queue, at)}${JSON.stringify(data)}}`;
}

/**
 * The entry written after enqueue, once the job is added (in the enqueuer's next batch) —
 * unless the job was finalized already (a job that ran and ended before this write arrived)
 * or a step save wrote a newer entry.
 * KEYS: journal, the job's finalized marker. ARGV: job id, the entry.
 */
export const OPEN_JOB = `if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])`;

/** The arguments of OPEN_JOB for `redis.eval`. */
export type OpenJobArgs = [string, number, string, string, string, string];

export function openJobArgs(jobId: string, queue: string, data: unknown): OpenJobArgs {
  return [OPEN_JOB, 2, keys.openJobs, keys.finalized(jobId), jobId, openJobEntry(queue, data)];
}

/**
 * Keeps an entry current (a step saved). The data is spliced in as it came (no re-encoding
 * in Lua, which would change numbers and the bytes the step signature covers). An entry not
 * written yet (the enqueue's write comes after the add) is created here, one already
 * finalized never again. KEYS: journal, the job's finalized marker. ARGV: job id, the data's
 * JSON, the head for a new entry ('' to create none).
 */
export const UPDATE_OPEN_JOB = `local raw = redis.call('HGET', KEYS[1], ARGV[1])
local head
if raw then
  head = string.match(raw, '^({"queue":"[^"]*","at":%d+,"data":)')
  if not head then return 0 end
elseif ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then
  head = ARGV[3]
else
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], head .. ARGV[2] .. '}')
return 1`;

/**
 * The arguments of UPDATE_OPEN_JOB for `redis.eval`. A scheduler's run is never journaled
 * (`create` false): no enqueue adds it, and its request is the template, signed once for every
 * run — as old as the schedule.
 */
export function updateOpenJobArgs(
  jobId: string,
  queue: string,
  dataJson: string,
  create = true,
): [string, number, string, string, string, string, string] {
  const head = create ? openJobHead(queue, Date.now()) : '';
  return [UPDATE_OPEN_JOB, 2, keys.openJobs, keys.finalized(jobId), jobId, dataJson, head];
}

export function parseOpenJob(raw: string): OpenJob | undefined {
  try {
    const entry = JSON.parse(raw) as Partial<OpenJob>;
    if (typeof entry.queue !== 'string' || typeof entry.at !== 'number') return undefined;
    return entry as OpenJob;
  } catch {
    return undefined;
  }
}
