// Audit lines go to the shared memory in batches: under a burst of interactions, one lock
// and one append per batch instead of one per interaction (200 appends contending for one
// file's lock would delay every handler's reply).
import type { Logger } from '../lib/log.js';
import type { MemoryStore } from '../memory/store.js';

export class AuditLog {
  private pending = new Map<string, string[]>();
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly memory: MemoryStore,
    private readonly log: Logger,
  ) {}

  /** Queues a line for `audit/<day>.md`; resolves once it is written (or failed and logged). */
  write(day: string, line: string): Promise<void> {
    const path = `audit/${day}.md`;
    const lines = this.pending.get(path) ?? [];
    lines.push(line);
    this.pending.set(path, lines);
    if (this.flushing === null) this.flushing = this.flush();
    return this.flushing;
  }

  private async flush(): Promise<void> {
    // Let the other interactions of this burst queue their lines first.
    await new Promise((r) => setImmediate(r));
    while (this.pending.size > 0) {
      const batch = this.pending;
      this.pending = new Map();
      for (const [path, lines] of batch) {
        try {
          await this.memory.append(path, lines.join('\n'), { waitSeconds: 5 });
        } catch (err) {
          // The commands already ran; a full or locked audit file must not turn them into errors.
          this.log.error({ err: (err as Error).message, path, lines: lines.length }, 'audit write failed');
        }
      }
    }
    this.flushing = null;
  }
}
