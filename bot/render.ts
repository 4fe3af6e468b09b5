// Shaping replies for Discord's limits: a message holds 2 000 characters; anything longer
// goes out as an attachment, never silently truncated.
import type { Reply } from './types.js';

export const MESSAGE_LIMIT = 2000;

/** A heading plus a code block when it fits in one message, else the heading plus a file. */
export function textOrFile(heading: string, body: string, fileName: string, lang = ''): Reply {
  const fence = body.includes('```') ? null : `\`\`\`${lang}\n${body}${body.endsWith('\n') ? '' : '\n'}\`\`\``;
  const inline = fence === null ? null : `${heading}\n${fence}`;
  if (inline !== null && inline.length <= MESSAGE_LIMIT) return { content: inline };
  return { content: `${heading} — attached as ${fileName}`, files: [{ name: fileName, data: Buffer.from(body) }] };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
