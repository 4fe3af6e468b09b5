// Reads the token counts out of a provider's response as it streams past the model proxy,
// without holding the response back: the chunks go to the client as they come, the meter
// looks at copies.
//
//   JSON bodies      the body's `usage` (collected up to a cap, parsed at the end)
//   SSE streams      each `data:` line that carries a usage object, as it arrives:
//                    Anthropic `message_start` (message.usage: input, cache) and
//                    `message_delta` (usage: cumulative output); OpenAI chat completions'
//                    last chunk (with stream_options.include_usage, which the proxy makes
//                    sure of); OpenAI responses' `response.completed` (response.usage)
//
// Counts of one response are merged by maximum: Anthropic repeats cumulative counts, and a
// maximum never double-counts a repeated one.
import { StringDecoder } from 'node:string_decoder';
import type { UsageRecord } from '../usage.js';

export type ApiKind = 'anthropic-messages' | 'openai-chat' | 'openai-responses';

const MAX_JSON_BYTES = 16 * 1024 * 1024;
/** A line longer than this carries text, not usage: it is skipped, not buffered. */
const MAX_LINE = 1024 * 1024;
const HAS_USAGE = /"usage"\s*:\s*\{/;

export interface Meter {
  push(chunk: Buffer): void;
  /** The response's usage, or null when it carried none. */
  result(): UsageRecord | null;
}

export function createMeter(kind: ApiKind, contentType: string | undefined): Meter {
  const found: UsageRecord = { model: '', input: 0, output: 0, cacheRead: 0, cacheWrite: 0 };
  let seen = false;
  const take = (o: unknown) => {
    const u = usageOf(kind, o);
    if (u === null) return;
    seen = true;
    if (found.model === '' && u.model !== '') found.model = u.model;
    found.input = Math.max(found.input, u.input);
    found.output = Math.max(found.output, u.output);
    found.cacheRead = Math.max(found.cacheRead, u.cacheRead);
    found.cacheWrite = Math.max(found.cacheWrite, u.cacheWrite);
  };

  if ((contentType ?? '').toLowerCase().startsWith('text/event-stream')) {
    const decoder = new StringDecoder('utf8');
    let pending = '';
    let skipping = false;
    const line = (text: string) => {
      if (!text.startsWith('data:') || !HAS_USAGE.test(text)) return;
      try {
        take(JSON.parse(text.slice(5)));
      } catch {
        // not JSON: nothing to count on this line
      }
    };
    return {
      push(chunk) {
        const text = pending + decoder.write(chunk);
        const lines = text.split('\n');
        pending = lines.pop() ?? '';
        for (const l of lines) {
          if (skipping) {
            skipping = false;
            continue;
          }
          line(l.endsWith('\r') ? l.slice(0, -1) : l);
        }
        if (pending.length > MAX_LINE) {
          pending = '';
          skipping = true;
        }
      },
      result() {
        if (!skipping && pending !== '') line(pending + decoder.end());
        return seen ? { ...found, model: found.model || 'unknown' } : null;
      },
    };
  }

  const chunks: Buffer[] = [];
  let size = 0;
  return {
    push(chunk) {
      size += chunk.length;
      if (size <= MAX_JSON_BYTES) chunks.push(chunk);
    },
    result() {
      if (size > MAX_JSON_BYTES) return null;
      try {
        take(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        return null;
      }
      return seen ? { ...found, model: found.model || 'unknown' } : null;
    },
  };
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

function obj(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

/** The usage one JSON object (a body, or an SSE event) carries, normalized. */
function usageOf(kind: ApiKind, raw: unknown): UsageRecord | null {
  const o = obj(raw);
  if (o === null) return null;
  const message = obj(o.message);
  const response = obj(o.response);
  const usage = obj(o.usage) ?? obj(message?.usage) ?? obj(response?.usage);
  if (usage === null) return null;
  const model = [o.model, message?.model, response?.model].find((m) => typeof m === 'string' && m !== '') as
    | string
    | undefined;
  if (kind === 'anthropic-messages') {
    return {
      model: model ?? '',
      input: num(usage.input_tokens),
      output: num(usage.output_tokens),
      cacheRead: num(usage.cache_read_input_tokens),
      cacheWrite: num(usage.cache_creation_input_tokens),
    };
  }
  // OpenAI counts cached input inside the input (prompt) tokens.
  const input = kind === 'openai-chat' ? num(usage.prompt_tokens) : num(usage.input_tokens);
  const details = obj(kind === 'openai-chat' ? usage.prompt_tokens_details : usage.input_tokens_details);
  const cached = Math.min(input, num(details?.cached_tokens));
  return {
    model: model ?? '',
    input: input - cached,
    output: kind === 'openai-chat' ? num(usage.completion_tokens) : num(usage.output_tokens),
    cacheRead: cached,
    cacheWrite: 0,
  };
}
