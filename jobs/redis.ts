// Connections to the fleet's Redis (ElastiCache with TLS and auth in production). The
// password comes from a file, never from the URL, so it can't leak through a logged URL.
import { Redis, type RedisOptions } from 'ioredis';
import { readSecretFile } from '../lib/config.js';

export interface RedisSettings {
  redisUrl: string;
  redisPasswordFile?: string;
}

export function redisOptions(settings: RedisSettings): RedisOptions {
  const url = new URL(settings.redisUrl);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return {
    host: url.hostname,
    port: url.port === '' ? 6379 : Number(url.port),
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    password: settings.redisPasswordFile
      ? readSecretFile(settings.redisPasswordFile, 'CLAWDINATOR_REDIS_PASSWORD_FILE')
      : undefined,
    db: Number.isInteger(db) ? db : 0,
    tls: url.protocol === 'rediss:' ? { servername: url.hostname } : undefined,
    // BullMQ needs commands to wait through reconnects rather than fail after N retries.
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
  };
}

export function createRedis(options: RedisOptions): Redis {
  return new Redis(options);
}

export type { Redis, RedisOptions };
