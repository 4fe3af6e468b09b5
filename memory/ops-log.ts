// The control plane's log in ops.md: one line per lifecycle change, appended below a marker
// line, in the original's style ("- 2026-11-24 20:41 UTC spawn clawdinator-3: … (job …)").
// ops.md is shared with the agents and capped like every memory file, so the log keeps
// itself small: when ops.md would grow past three quarters of the cap, the control plane's
// lines of past months move to `ops/YYYY-MM.md` (and, if that is not enough, this month's
// too), under ops.md's lock. What the agents wrote — everything above the marker, and any
// line of theirs below it — is never moved or changed.
//
// A file without the marker (an older ops.md) gets it appended at its end; its earlier
// lines are left where they are. Moving is crash-safe: lines are added to the month's file
// (skipping those already there) before ops.md is rewritten, so a crash in between leaves
// them in both places and the next rotation does not duplicate them.
import type { MemoryStore } from './store.js';

export const OPS_PATH = 'ops.md';
export const OPS_LOG_MARKER =
  '<!-- clawdinator: the control plane appends its log below this line; past months move to ops/YYYY-MM.md -->';
/** A line the control plane wrote: its month, from the time it starts with. */
const LOG_LINE = /^- (\d{4}-\d{2})-\d{2} \d{2}:\d{2} UTC .* \(job [^()\s]+\)$/;

export interface OpsLine {
  /** The line, without a newline. */
  line: string;
  /** Already in ops.md (a retried step): nothing is appended. */
  tag: string;
  now: Date;
}

/** The month file a control-plane line of `month` (YYYY-MM) moves to. */
export const archivePath = (month: string) => `ops/${month}.md`;

/**
 * Appends the line below the marker, rotating first when ops.md would pass the threshold.
 * Throws the store's error when it cannot (a lock held too long, not a file, still too large).
 */
export async function appendOpsLine(memory: MemoryStore, entry: OpsLine): Promise<void> {
  const rotateAt = Math.floor((memory.maxBytes * 3) / 4);
  const thisMonth = entry.now.toISOString().slice(0, 7);
  await memory.update(
    OPS_PATH,
    async (current) => {
      const text = current.toString('utf8');
      if (text.includes(entry.tag)) return null;
      const { head, log } = splitLog(text);
      let kept = log;
      const compose = () => `${head}${OPS_LOG_MARKER}\n${[...kept, entry.line].map((l) => `${l}\n`).join('')}`;
      if (Buffer.byteLength(compose()) > rotateAt) {
        // Past months first; this month's lines only when that does not free enough.
        const moved = new Map<string, string[]>();
        const move = (which: (month: string) => boolean) => {
          kept = kept.filter((l) => {
            const month = LOG_LINE.exec(l)?.[1];
            if (month === undefined || !which(month)) return true;
            moved.set(month, [...(moved.get(month) ?? []), l]);
            return false;
          });
        };
        move((month) => month < thisMonth);
        if (Buffer.byteLength(compose()) > rotateAt) move(() => true);
        for (const month of [...moved.keys()].sort()) {
          await archive(memory, month, moved.get(month) as string[]);
        }
      }
      return compose();
    },
    // An ops.md already over the cap is read so that moving the log out can bring it back.
    { readLimit: memory.maxBytes * 2 },
  );
}

/** Everything before the marker (ending with a newline), and the lines after it. */
function splitLog(text: string): { head: string; log: string[] } {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.trim() === OPS_LOG_MARKER);
  if (at < 0) return { head: text === '' || text.endsWith('\n') ? text : `${text}\n`, log: [] };
  const log = lines.slice(at + 1);
  if (log.at(-1) === '') log.pop();
  return {
    head: lines
      .slice(0, at)
      .map((l) => `${l}\n`)
      .join(''),
    log,
  };
}

/** Adds the lines to `ops/<month>.md` (each once), under that file's own lock. */
async function archive(memory: MemoryStore, month: string, lines: string[]): Promise<void> {
  await memory.update(archivePath(month), async (current) => {
    const text = current.toString('utf8');
    const have = new Set(text.split('\n'));
    const missing = lines.filter((l) => !have.has(l));
    if (missing.length === 0) return null;
    const start = text === '' ? `# Ops log ${month}\n\nMoved from ops.md by the control plane.\n\n` : text;
    return `${start}${start.endsWith('\n') ? '' : '\n'}${missing.map((l) => `${l}\n`).join('')}`;
  });
}
