// Option limits shared by the fleet commands, enforced by Discord before anything reaches us
// (and checked again by the jobs: Discord-side limits are a convenience, not a boundary).
import { NAME_MAX } from '../../lib/config.js';

export { NAME_MAX };
export const NAME_MIN = 'clawdinator-1'.length;
export const AMI_MIN = 'ami-12345678'.length;
export const AMI_MAX = 'ami-0123456789abcdef0'.length;
export const REV_MAX = 64;
