// Test fixtures for the bot: a policy, an actor, deps over a temp memory folder.

import type { Actor, BotDeps } from '../../bot/types.js';
import { AuditTrail } from '../../jobs/audit.js';
import type { Principal } from '../../jobs/engine/envelope.js';
import type { AuthorizationPolicy } from '../../lib/authorize.js';
import { createLogger } from '../../lib/log.js';
import { initMemory } from '../../memory/init.js';
import { MemoryStore } from '../../memory/store.js';
import { tempDir } from './cli.js';

export const GUILD = '100000000000000001';
export const OPS_CHANNEL = '200000000000000001';
export const OTHER_CHANNEL = '200000000000000002';
export const OPERATOR_ROLE = '300000000000000001';
export const READER_ROLE = '300000000000000002';
export const ALICE = '400000000000000001';

/** Alice as a job's principal: an operator in the ops channel, for whom the gateway signs. */
export const alicePrincipal: Extract<Principal, { kind: 'discord' }> = {
  kind: 'discord',
  userId: ALICE,
  userName: 'alice',
  roles: [OPERATOR_ROLE],
  guildId: GUILD,
  channelId: OPS_CHANNEL,
};
export const BOB = '400000000000000002';

/** Operators may do everything in the ops channel; readers may read memory anywhere in the guild. */
export const policy: AuthorizationPolicy = {
  '*': { guilds: [GUILD], channels: [OPS_CHANNEL], roles: [OPERATOR_ROLE], users: [] },
  'memory read': { guilds: [GUILD], roles: [OPERATOR_ROLE, READER_ROLE], users: [] },
  'memory list': { guilds: [GUILD], roles: [OPERATOR_ROLE, READER_ROLE], users: [] },
};

export function actor(overrides: Partial<Actor> = {}): Actor {
  return {
    userId: ALICE,
    userName: 'alice',
    roles: [OPERATOR_ROLE],
    guildId: GUILD,
    channelId: OPS_CHANNEL,
    ...overrides,
  };
}

export async function botDeps(options: { maxBytes?: number } = {}): Promise<BotDeps & { root: string }> {
  const root = tempDir('clawdinator-bot-');
  await initMemory(root);
  const memory = new MemoryStore({ root, maxBytes: options.maxBytes ?? 1024 * 1024, waitSeconds: 5 });
  const log = createLogger('silent');
  return {
    root,
    memory,
    audit: new AuditTrail({ log, memory }),
    policy,
    log,
    attachmentOrigins: [],
    now: () => new Date('2026-11-24T12:00:00Z'),
  };
}
