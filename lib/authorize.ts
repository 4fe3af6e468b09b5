// Deny-by-default authorization of every interaction. The policy comes from the config file
// (`authorization`, see lib/config.ts): the most specific key present decides —
// "memory write", then "memory", then "*" — so reads can be opened wider than writes.
// Refusals say why in terms of the caller (DM, this channel, your roles), never which
// roles, users or channels the policy lists: "not allowed" when no rule names the member in
// this guild, "not available in this channel" only when one does, for other channels.

import type { Actor } from './actor.js';
import type { AuthorizationConfig, AuthorizationRule } from './config.js';

export type AuthorizationPolicy = AuthorizationConfig;

export type Decision = { allowed: true } | { allowed: false; reason: string };

export function policyKeys(permission: string): string[] {
  const [command] = permission.split(' ');
  return [...new Set([permission, command as string, '*'])];
}

export function authorize(policy: AuthorizationPolicy, permission: string, actor: Actor): Decision {
  const label = `/${permission}`;
  if (actor.guildId === null) return { allowed: false, reason: 'Commands are not available in direct messages.' };
  const key = policyKeys(permission).find((k) => policy[k] !== undefined);
  const entry = key === undefined ? undefined : policy[key];
  const rules: AuthorizationRule[] = entry === undefined ? [] : Array.isArray(entry) ? entry : [entry];
  // The rules that name this member in this guild: none means the command is not theirs
  // anywhere, so "not in this channel" would send them looking for a channel that allows it.
  const theirs = rules.filter(
    (r) =>
      r.guilds.includes(actor.guildId as string) &&
      (r.users.includes(actor.userId) || r.roles.some((role) => actor.roles.includes(role))),
  );
  if (theirs.length === 0) return { allowed: false, reason: `You are not allowed to use ${label}.` };
  if (!theirs.some((r) => r.channels === undefined || r.channels.includes(actor.channelId))) {
    return { allowed: false, reason: `${label} is not available in this channel.` };
  }
  return { allowed: true };
}
