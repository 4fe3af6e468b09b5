// Builds what the handlers use from the configuration, for the gateway and the sandbox alike.
import { auditTrailFromConfig } from '../jobs/audit.js';
import { loadConfig } from '../lib/config.js';
import type { Logger } from '../lib/log.js';
import { MemoryStore } from '../memory/store.js';
import type { BotDeps } from './types.js';

export const BOT_SETTINGS = ['memoryDir', 'memoryMaxBytes', 'memoryLockWaitSeconds', 'authorization'] as const;

export function botDepsFromConfig(log: Logger, attachmentOrigins: string[]): BotDeps {
  const config = loadConfig(BOT_SETTINGS);
  const memory = new MemoryStore({
    root: config.memoryDir,
    maxBytes: config.memoryMaxBytes,
    waitSeconds: config.memoryLockWaitSeconds,
  });
  return {
    memory,
    audit: auditTrailFromConfig(memory, log),
    policy: config.authorization,
    log,
    attachmentOrigins,
    now: () => new Date(),
  };
}
