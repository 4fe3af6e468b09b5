// Values read back from Redis (or any store a hostile writer may reach) are parsed, never
// trusted: not JSON, or not of the schema's shape, is one answer — null.
import type { z } from 'zod';

export function parseStored<S extends z.ZodTypeAny>(schema: S, raw: string): z.output<S> | null {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return null;
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? parsed.data : null;
}
