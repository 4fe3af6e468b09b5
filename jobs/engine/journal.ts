// The journal of open jobs (`keys.openJobs`): job id → {queue, at, data}, written at enqueue,
// kept current at each step save, deleted when the job is finalized (finalize.ts). BullMQ
// deletes a removed job's data with it; its finalizer reads the data here, and the sweep
// finds the jobs that ended without being finalized.

/** One open job in the journal. */
export interface OpenJob {
  queue: string;
  /** When the entry was first written (ms). */
  at: number;
  /** The job's data as BullMQ holds it: the envelope with its saved steps. */
  data: unknown;
}

/** The entry's JSON; its head (queue and time) is written first, so UPDATE_OPEN_JOB keeps it. */
export function openJobEntry(queue: string, data: unknown, at = Date.now()): string {
  return `{"queue":${JSON.stringify(queue)},"at":${Math.floor(at)},"data":${JSON.stringify(data)}}`;
}

/**
 * Keeps an entry current (a step saved) without recreating one already finalized. The data
 * is spliced in as it came (no re-encoding in Lua, which would change numbers and the bytes
 * the step signature covers). KEYS[1] journal; ARGV job id, the data's JSON.
 */
export const UPDATE_OPEN_JOB = `local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local head = string.match(raw, '^({"queue":"[^"]*","at":%d+,"data":)')
if not head then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], head .. ARGV[2] .. '}')
return 1`;

export function parseOpenJob(raw: string): OpenJob | undefined {
  try {
    const entry = JSON.parse(raw) as Partial<OpenJob>;
    if (typeof entry.queue !== 'string' || typeof entry.at !== 'number') return undefined;
    return entry as OpenJob;
  } catch {
    return undefined;
  }
}
