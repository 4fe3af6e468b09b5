// Model usage per member per UTC day, as the model proxy (jobs/proxy/) counts it from the
// providers' responses: one Redis hash per member and day, a field per model and count
// (`<model>|input`, `|output`, `|cacheRead`, `|cacheWrite`, `|requests`), kept 40 days. The
// member's worker reads today's into its heartbeat; /status prices it with the settings'
// prices; the proxy checks the daily budget against it after each request and, the first
// time it is crossed that day, posts one alert (a SET NX per member and day).
//
// These values are inert text to the control plane: a forged count can distort a report or
// send a false alert, never start an action. Input counts are what the provider bills as
// uncached input; cached reads and cache writes are counted apart, since they cost apart.
import type { Redis } from 'ioredis';
import { z } from 'zod';

export const METRICS = ['input', 'output', 'cacheRead', 'cacheWrite', 'requests'] as const;
export type Metric = (typeof METRICS)[number];
export type ModelUsage = Record<Metric, number>;

/** What one response used. */
export interface UsageRecord {
  model: string;
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
}

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const modelUsage = z.object({
  input: count,
  output: count,
  cacheRead: count,
  cacheWrite: count,
  requests: count,
});
/** A member's usage on one day; also the heartbeat's optional `usage` field. */
export const dayUsageSchema = z.object({
  day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  models: z.record(z.string().max(100), modelUsage).refine((m) => Object.keys(m).length <= 50, 'at most 50 models'),
});
export type DayUsage = z.output<typeof dayUsageSchema>;

export type ModelPrices = Record<string, { input: number; output: number; cacheRead?: number; cacheWrite?: number }>;

const KEEP_SECONDS = 40 * 86_400;
const MODEL = /^[A-Za-z0-9._:@/-]{1,100}$/;

export const usageKeys = {
  day: (day: string, member: string) => `clawdinator:usage:${day}:${member}`,
  alerted: (day: string, member: string) => `clawdinator:usage-alert:${day}:${member}`,
} as const;

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The model name as stored: anything odd from upstream is filed under `unknown`. */
export function modelName(raw: unknown): string {
  return typeof raw === 'string' && MODEL.test(raw) ? raw : 'unknown';
}

function emptyUsage(): ModelUsage {
  return { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, requests: 0 };
}

/** The hash as a DayUsage; unparseable fields are left out. */
export function parseUsageHash(day: string, hash: Record<string, string>): DayUsage {
  const models: Record<string, ModelUsage> = {};
  for (const [field, value] of Object.entries(hash)) {
    const bar = field.lastIndexOf('|');
    const model = field.slice(0, bar);
    const metric = field.slice(bar + 1) as Metric;
    const n = Number(value);
    if (bar <= 0 || !METRICS.includes(metric) || !Number.isSafeInteger(n) || n < 0 || !MODEL.test(model)) continue;
    if (models[model] === undefined && Object.keys(models).length >= 50) continue;
    models[model] ??= emptyUsage();
    models[model][metric] = n;
  }
  return { day, models };
}

/** Adds responses' usage to a day and returns the day's totals, in one round trip. */
export async function recordUsage(
  redis: Redis,
  member: string,
  records: UsageRecord[],
  day: string,
): Promise<DayUsage> {
  const key = usageKeys.day(day, member);
  const sums = new Map<string, ModelUsage>();
  for (const usage of records) {
    const model = modelName(usage.model);
    const sum = sums.get(model) ?? emptyUsage();
    sum.requests += 1;
    for (const metric of ['input', 'output', 'cacheRead', 'cacheWrite'] as const) {
      sum[metric] += Math.max(0, Math.floor(usage[metric]));
    }
    sums.set(model, sum);
  }
  const tx = redis.multi();
  for (const [model, sum] of sums) {
    for (const metric of METRICS) if (sum[metric] > 0) tx.hincrby(key, `${model}|${metric}`, sum[metric]);
  }
  tx.expire(key, KEEP_SECONDS);
  tx.hgetall(key);
  const results = (await tx.exec()) ?? [];
  const last = results.at(-1);
  if (last === undefined || last[0]) throw last?.[0] ?? new Error('usage: no reply from Redis');
  return parseUsageHash(day, last[1] as Record<string, string>);
}

/**
 * Collects the responses' usage and writes it in one round trip per interval, off the
 * requests' path: the proxy adds no Redis round trip to any request, and a busy agent costs
 * one write per interval, not one per response. A stop flushes what is pending.
 */
export class UsageBatcher {
  private pending = new Map<string, UsageRecord[]>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: {
      redis: Redis;
      member: string;
      flushMs: number;
      /** The day's totals after each write (the budget check). */
      /** After each write, with the day's totals (tests wait on it). */
      onWritten?: (usage: DayUsage) => Promise<void>;
      onError: (err: unknown) => void;
      now?: () => number;
    },
  ) {}

  add(usage: UsageRecord): void {
    const day = utcDay(this.options.now?.() ?? Date.now());
    const list = this.pending.get(day) ?? [];
    list.push(usage);
    this.pending.set(day, list);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), this.options.flushMs);
      this.timer.unref();
    }
  }

  /** Writes what is pending (after any write already under way). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batches = this.pending;
    this.pending = new Map();
    this.flushing = this.flushing.then(async () => {
      for (const [day, records] of batches) {
        try {
          const written = await recordUsage(this.options.redis, this.options.member, records, day);
          await this.options.onWritten?.(written);
        } catch (err) {
          this.options.onError(err);
        }
      }
    });
    return this.flushing;
  }
}

export async function readUsage(redis: Redis, member: string, day: string): Promise<DayUsage> {
  return parseUsageHash(day, await redis.hgetall(usageKeys.day(day, member)));
}

export interface UsageTotals extends ModelUsage {
  /** Estimated USD, from the prices; null when no model was priced. */
  costUsd: number | null;
  /** Models with usage but no price: the estimate leaves them out. */
  unpriced: string[];
}

/**
 * The price of a model: an exact entry, else the longest `prefix*` entry it starts with. A key
 * may carry the provider (`anthropic/claude-opus-4-6`) while responses name the model bare
 * (`claude-opus-4-6-20260101`): both spellings match.
 */
export function priceOf(prices: ModelPrices, model: string): ModelPrices[string] | undefined {
  const spellings = (key: string) => [key, key.includes('/') ? key.slice(key.indexOf('/') + 1) : key];
  let best: { length: number; price: ModelPrices[string] } | undefined;
  for (const [key, price] of Object.entries(prices)) {
    if (!key.endsWith('*')) {
      if (spellings(key).includes(model)) return price;
      continue;
    }
    for (const prefix of spellings(key.slice(0, -1))) {
      if (model.startsWith(prefix) && (best === undefined || prefix.length > best.length)) {
        best = { length: prefix.length, price };
      }
    }
  }
  return best?.price;
}

export function usageTotals(usage: DayUsage, prices: ModelPrices): UsageTotals {
  const totals: UsageTotals = { ...emptyUsage(), costUsd: null, unpriced: [] };
  let cost = 0;
  let priced = false;
  for (const [model, u] of Object.entries(usage.models)) {
    for (const m of METRICS) totals[m] += u[m];
    const price = priceOf(prices, model);
    if (price === undefined) {
      if (u.input + u.output + u.cacheRead + u.cacheWrite > 0) totals.unpriced.push(model);
      continue;
    }
    priced = true;
    cost +=
      (u.input * price.input +
        u.output * price.output +
        u.cacheRead * (price.cacheRead ?? price.input) +
        u.cacheWrite * (price.cacheWrite ?? price.input)) /
      1_000_000;
  }
  totals.costUsd = priced ? cost : null;
  totals.unpriced.sort();
  return totals;
}

/** `12.3k in / 4.5k out, ~$1.23` (or what is known of it). */
export function formatUsage(totals: UsageTotals): string {
  const cached =
    totals.cacheRead + totals.cacheWrite > 0 ? ` (+${tokens(totals.cacheRead + totals.cacheWrite)} cached)` : '';
  const cost = totals.costUsd === null ? 'cost unknown' : `~$${totals.costUsd.toFixed(2)}`;
  const unpriced = totals.unpriced.length > 0 ? `, no price for ${totals.unpriced.join(', ')}` : '';
  return `${tokens(totals.input)} in${cached} / ${tokens(totals.output)} out, ${totals.requests} requests, ${cost}${unpriced}`;
}

function tokens(n: number): string {
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(1)}M`;
  if (n >= 1000) return `${(n / 1000).toFixed(1)}k`;
  return String(n);
}

/**
 * Whether the day's cost crossed the budget for the first time today: true once per member
 * and day, whichever proxy asks (SET NX), so the alert is posted once.
 */
export async function crossedBudget(
  redis: Redis,
  member: string,
  usage: DayUsage,
  prices: ModelPrices,
  budgetUsd: number,
): Promise<UsageTotals | null> {
  const totals = usageTotals(usage, prices);
  if (totals.costUsd === null || totals.costUsd <= budgetUsd) return null;
  const first = await redis.set(usageKeys.alerted(usage.day, member), String(Date.now()), 'EX', 3 * 86_400, 'NX');
  return first === 'OK' ? totals : null;
}
