// The notification stream: workers never talk to Discord. They append events (progress,
// result, alert, confirmation request) to one Redis stream; the gateways read it as one
// consumer group, so each event is rendered once, by whichever gateway gets it.
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { replySchema } from './envelope.js';
import { keys } from './keys.js';

export const jobEventSchema = z.object({
  kind: z.enum(['progress', 'result', 'alert', 'confirm']),
  jobId: z.string().max(120).optional(),
  type: z.string().max(60).optional(),
  reply: replySchema.optional(),
  text: z.string().max(4000),
  step: z.string().max(100).optional(),
  percent: z.number().min(0).max(100).optional(),
  ok: z.boolean().optional(),
  startedAt: z.number().optional(),
  at: z.number(),
  buttons: z
    .array(
      z.object({
        id: z.string().max(100),
        label: z.string().max(80),
        style: z.enum(['primary', 'secondary', 'success', 'danger']),
      }),
    )
    .max(5)
    .optional(),
});
export type JobEvent = z.output<typeof jobEventSchema>;

const MAX_EVENTS = 10_000;
export const GATEWAY_GROUP = 'gateways';

/** The XADD arguments of an event, for a caller that pipelines it with other commands. */
export function eventArgs(event: Omit<JobEvent, 'at'>): [string, string, string, string, string, string, string] {
  const full: JobEvent = { ...event, at: Date.now() };
  return [keys.events, 'MAXLEN', '~', String(MAX_EVENTS), '*', 'event', JSON.stringify(full)];
}

export async function publish(redis: Redis, event: Omit<JobEvent, 'at'>): Promise<void> {
  await redis.xadd(...eventArgs(event));
}

export interface ConsumerOptions {
  consumer: string;
  blockMs?: number;
  /** Events left unacknowledged this long by a dead gateway are taken over. */
  claimIdleMs?: number;
}

/** Reads the stream as one member of the gateways' group until stopped. */
export function consumeEvents(
  redis: Redis,
  options: ConsumerOptions,
  handle: (event: JobEvent) => Promise<void>,
  onError: (err: unknown) => void,
): { stop(): Promise<void> } {
  let running = true;
  const blockMs = options.blockMs ?? 2000;
  const claimIdleMs = options.claimIdleMs ?? 30_000;

  async function process(entries: [string, string[]][]): Promise<void> {
    for (const [id, fields] of entries) {
      const raw = fields[fields.indexOf('event') + 1];
      let parsed: JobEvent | undefined;
      try {
        const result = jobEventSchema.safeParse(JSON.parse(raw ?? ''));
        if (result.success) parsed = result.data;
      } catch {
        // malformed: acknowledged below and dropped
      }
      if (parsed !== undefined) {
        try {
          await handle(parsed);
        } catch (err) {
          onError(err);
        }
      }
      await redis.xack(keys.events, GATEWAY_GROUP, id);
    }
  }

  const loop = (async () => {
    await redis.xgroup('CREATE', keys.events, GATEWAY_GROUP, '$', 'MKSTREAM').catch((err: Error) => {
      if (!err.message.includes('BUSYGROUP')) throw err;
    });
    let lastClaim = 0;
    while (running) {
      try {
        if (Date.now() - lastClaim > claimIdleMs) {
          lastClaim = Date.now();
          const claimed = (await redis.xautoclaim(
            keys.events,
            GATEWAY_GROUP,
            options.consumer,
            claimIdleMs,
            '0-0',
            'COUNT',
            100,
          )) as [string, [string, string[]][]];
          await process(claimed[1].filter((e) => Array.isArray(e[1])));
        }
        const res = (await redis.xreadgroup(
          'GROUP',
          GATEWAY_GROUP,
          options.consumer,
          'COUNT',
          100,
          'BLOCK',
          blockMs,
          'STREAMS',
          keys.events,
          '>',
        )) as [string, [string, string[]][]][] | null;
        if (res) for (const [, entries] of res) await process(entries);
      } catch (err) {
        if (!running) break;
        onError(err);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  })();

  return {
    async stop() {
      running = false;
      redis.disconnect();
      await loop.catch(() => {});
    },
  };
}
