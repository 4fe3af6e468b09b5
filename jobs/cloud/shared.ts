// Small rules both clouds share, so the AWS adapter and the simulated cloud accept and refuse
// the same inputs and shape results the same way.
import { UsageError } from '../../lib/errors.js';
import type { CommandStatus } from './types.js';

/** DiskContainer.Format of VM Import from the image file's extension. */
export function diskFormat(key: string): 'RAW' | 'VHD' | 'VMDK' {
  const ext = /\.([a-z0-9]+)$/i.exec(key)?.[1]?.toLowerCase();
  if (ext === 'raw' || ext === 'img') return 'RAW';
  if (ext === 'vhd') return 'VHD';
  if (ext === 'vmdk') return 'VMDK';
  throw new UsageError(`ImportSnapshot: cannot tell the disk format of ${key}: expected .raw, .img, .vhd or .vmdk`);
}

/** deletePrefix refuses an empty prefix: it would empty the bucket. */
export function checkPrefix(prefix: string): void {
  if (prefix === '') throw new UsageError('DeleteObjects: refusing an empty prefix (it would empty the bucket)');
}

/** Last `max` characters of command output, the part that says how it ended. */
export function tail(text: string, max = 4000): string {
  return text.length > max ? text.slice(text.length - max) : text;
}

export function isTerminalCommandStatus(status: string): status is CommandStatus {
  return status === 'Success' || status === 'Failed' || status === 'Cancelled' || status === 'TimedOut';
}

/** `items` cut into lists of at most `size`. */
export function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Runs `run` over `items` with at most `limit` in flight, to stay under an API's rate. */
export async function forEachLimited<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await run(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A short list of ids for an error line: the first three and how many more. */
export function idList(ids: string[]): string {
  const shown = ids.slice(0, 3).join(',');
  return ids.length > 3 ? `${shown} and ${ids.length - 3} more` : shown;
}
