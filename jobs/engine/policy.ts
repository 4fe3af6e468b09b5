// The worker decides again who may do what, whatever the gateway decided: a signature says
// who asked, the policy says whether they may. Discord users by the same authorization
// config as the bot; agents only for peers, never themselves (but the host-local requests
// about themselves), within a rate; schedules only
// the scheduled job types; operators (their own signing key) everything.
import type { Redis } from 'ioredis';
import type { AuthorizationPolicy } from '../../lib/authorize.js';
import { authorize } from '../../lib/authorize.js';
import { RefusedError } from '../../lib/errors.js';
import type { Principal } from './envelope.js';
import type { AnyJobType } from './job-type.js';
import { keys } from './keys.js';

export interface PolicyContext {
  policy: AuthorizationPolicy;
  redis: Redis;
  agentRequestsPerHour: number;
}

export function checkPolicy(
  ctx: Pick<PolicyContext, 'policy'>,
  type: AnyJobType,
  data: unknown,
  principal: Principal,
): void {
  switch (principal.kind) {
    case 'discord': {
      const decision = authorize(ctx.policy, type.permission, {
        userId: principal.userId,
        userName: principal.userName,
        roles: principal.roles,
        guildId: principal.guildId,
        channelId: principal.channelId,
      });
      if (!decision.allowed) throw new RefusedError(`rejected: not allowed: ${decision.reason}`);
      return;
    }
    case 'agent': {
      if (!type.agentAllowed) throw new RefusedError(`rejected: not allowed: agents cannot ask for ${type.name}`);
      const target = type.instanceOf?.(data);
      // "Never itself" is the rule for fleet actions; a host-local request is about itself only.
      if (type.agentAllowed === 'own-host') {
        if (target !== principal.host)
          throw new RefusedError(`rejected: not allowed: an agent asks for ${type.name} for its own host only`);
        return;
      }
      if (target === principal.host)
        throw new RefusedError(`rejected: not allowed: an agent cannot ${type.name} its own host`);
      return;
    }
    case 'schedule':
      if (!type.scheduled) throw new RefusedError(`rejected: not allowed: ${type.name} is not a scheduled job`);
      return;
    case 'cli':
      return;
  }
}

/** Counts an agent's request against its hourly allowance; refuses beyond it. */
export async function chargeAgentRate(ctx: PolicyContext, principal: Principal, now = Date.now()): Promise<void> {
  if (principal.kind !== 'agent') return;
  const key = keys.agentRate(principal.host, Math.floor(now / 3_600_000));
  const count = await ctx.redis.incr(key);
  if (count === 1) await ctx.redis.expire(key, 7200);
  if (count > ctx.agentRequestsPerHour) {
    throw new RefusedError(
      `rejected: rate limit: ${principal.host} may ask for ${ctx.agentRequestsPerHour} fleet actions per hour`,
    );
  }
}
