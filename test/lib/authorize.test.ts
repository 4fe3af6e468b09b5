import { describe, expect, it } from 'vitest';
import { authorize } from '../../lib/authorize.js';
import {
  ALICE,
  actor,
  BOB,
  GUILD,
  OPERATOR_ROLE,
  OPS_CHANNEL,
  OTHER_CHANNEL,
  policy,
  READER_ROLE,
} from '../support/bot.js';

describe('authorize', () => {
  it('allows operators everything in the ops channel', () => {
    expect(authorize(policy, 'spawn', actor())).toEqual({ allowed: true });
    expect(authorize(policy, 'memory write', actor())).toEqual({ allowed: true });
  });

  it('opens reads wider than writes, by the most specific key', () => {
    const reader = actor({ userId: BOB, roles: [READER_ROLE], channelId: OTHER_CHANNEL });
    expect(authorize(policy, 'memory read', reader)).toEqual({ allowed: true });
    // Allowed nowhere: told so, not sent looking for another channel.
    expect(authorize(policy, 'memory write', reader)).toEqual({
      allowed: false,
      reason: 'You are not allowed to use /memory write.',
    });
    expect(authorize(policy, 'memory write', actor({ channelId: OTHER_CHANNEL }))).toEqual({
      allowed: false,
      reason: '/memory write is not available in this channel.',
    });
    expect(authorize(policy, 'memory write', { ...reader, channelId: OPS_CHANNEL })).toEqual({
      allowed: false,
      reason: 'You are not allowed to use /memory write.',
    });
  });

  it('denies by default: DMs, unlisted guilds, an empty policy', () => {
    expect(authorize(policy, 'status', actor({ guildId: null }))).toEqual({
      allowed: false,
      reason: 'Commands are not available in direct messages.',
    });
    expect(authorize(policy, 'status', actor({ guildId: '100000000000000009' })).allowed).toBe(false);
    expect(authorize({}, 'status', actor()).allowed).toBe(false);
  });

  it('allows listed users without a role, and a list of rules', () => {
    const p = {
      spawn: [
        { guilds: [GUILD], roles: [], users: [BOB] },
        { guilds: [GUILD], roles: [OPERATOR_ROLE], users: [] },
      ],
    };
    expect(authorize(p, 'spawn', actor({ userId: BOB, roles: [] })).allowed).toBe(true);
    expect(authorize(p, 'spawn', actor({ userId: ALICE, roles: [] })).allowed).toBe(false);
    expect(authorize(p, 'spawn', actor()).allowed).toBe(true);
  });

  it('never names roles, users or channels of the policy in a refusal', () => {
    const d = authorize(policy, 'spawn', actor({ roles: [], channelId: OTHER_CHANNEL }));
    expect(d.allowed).toBe(false);
    const text = JSON.stringify(d);
    for (const id of [OPERATOR_ROLE, READER_ROLE, OPS_CHANNEL, GUILD]) expect(text).not.toContain(id);
  });
});
