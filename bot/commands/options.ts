// Option limits shared by the fleet commands, enforced by Discord before anything reaches us
// (and checked again by the jobs: Discord-side limits are a convenience, not a boundary).
import { PermissionFlagsBits } from 'discord-api-types/v10';
import { NAME_MAX } from '../../lib/config.js';

export { NAME_MAX };

/**
 * Default member permissions of the commands that change the fleet: only members with Manage
 * Server see them until a guild admin grants them to roles (Server Settings → Integrations).
 * On top of this project's own policy, which still decides (and the workers check again).
 */
export const DESTRUCTIVE_DEFAULT_PERMISSIONS = PermissionFlagsBits.ManageGuild;
export const NAME_MIN = 'clawdinator-1'.length;
export const AMI_MIN = 'ami-12345678'.length;
export const AMI_MAX = 'ami-0123456789abcdef0'.length;
export const REV_MAX = 64;
