// The fleet registry: the desired fleet as JSON, in the original's `nix/instances.json`
// schema (so a fleet migrates by copying the file) plus this project's optional `ami`,
// `agentPublicKey` and `agent` (the member's agent runtime overrides). No cdktf here: the
// jobs read and write the registry without loading the CDKTF app.
//
// Every value ends up in IAM policies, user data or resource names, so the checks are
// strict: a bootstrap prefix or secret name with a wildcard, or one that contains another
// entry's, would let one host read another's bootstrap bundle or token.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { agentOverrideSchema } from '../lib/agent-config.js';
import { isInstanceName, NAME_RULE } from '../lib/config.js';
import { UsageError } from '../lib/errors.js';
import { FLEET_SECRETS_PREFIX } from './names.js';

/** A registry that cannot be used; nothing was synthesized or changed. */
export class RegistryError extends UsageError {}

const entrySchema = z
  .object({
    // nixosConfigurations.<host> and the host's name: a DNS label (no leading, trailing or
    // doubled "-"), unique across the registry (the flake would silently keep one of two).
    host: z
      .string()
      .max(63, 'must be a host name of at most 63 characters')
      .regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, 'must be a host name (a-z, 0-9, single "-" between them)'),
    instanceType: z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'must be an EC2 instance type like t3.large'),
    bootstrapPrefix: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$/, 'must be an S3 key prefix like bootstrap/clawdinator-1')
      .refine((p) => !p.endsWith('/') && !p.includes('//') && !p.split('/').includes('..'), {
        message: 'must be an S3 key prefix without "..", "//" or a trailing "/"',
      }),
    // Under clawdinator/ (the instance roles' boundary), but not in the fleet-wide or
    // per-host folders, which other hosts or the deployer can reach.
    discordTokenSecret: z
      .string()
      .regex(/^clawdinator\/[A-Za-z0-9/_+=.@-]{1,500}$/, 'must be a secret name under clawdinator/ (no wildcards)')
      .refine((s) => !s.startsWith(FLEET_SECRETS_PREFIX) && !s.startsWith('clawdinator/host/'), {
        message: 'must not be under clawdinator/fleet/ or clawdinator/host/',
      }),
    ami: z
      .string()
      .regex(/^ami-[0-9a-f]{8,17}$/, 'must be an AMI id like ami-0123456789abcdef0')
      .optional(),
    agentPublicKey: z.string().includes('PUBLIC KEY', { message: 'must be a PEM public key' }).optional(),
    // Deploys and image rollouts change the members flagged so first (registry order otherwise).
    canary: z.boolean().optional(),
    // The member's agent runtime, where it differs from the fleet's (lib/agent-config.ts):
    // role, channels, model, raw openclaw settings. Checked here, so a registry that turns the
    // Discord interrupt rule off or opens DMs is refused before anything uses it.
    agent: agentOverrideSchema.optional(),
  })
  .strict();

export type RegistryEntry = z.output<typeof entrySchema>;
export type FleetRegistry = Record<string, RegistryEntry>;

/** Validates registry data; `source` names the file in errors. */
export function parseRegistry(data: unknown, source: string): FleetRegistry {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new RegistryError(`fleet registry ${source}: expected a JSON object of name → entry`);
  }
  const registry: FleetRegistry = {};
  for (const [name, raw] of Object.entries(data)) {
    if (!isInstanceName(name)) {
      throw new RegistryError(`fleet registry ${source}: "${name}" is not a valid name (${NAME_RULE})`);
    }
    const parsed = entrySchema.safeParse(raw);
    if (!parsed.success) throw new RegistryError(`fleet registry ${source}: ${name}: ${issueText(parsed.error)}`);
    registry[name] = parsed.data;
  }
  checkDisjoint(registry, source);
  return registry;
}

export function readRegistry(path: string): FleetRegistry {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new RegistryError(`fleet registry ${path} cannot be read (${code})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new RegistryError(`fleet registry ${path} is not valid JSON`);
  }
  return parseRegistry(data, path);
}

function issueText(error: z.ZodError): string {
  const issue = error.issues[0] as z.ZodIssue;
  if (issue.code === 'unrecognized_keys') return `unknown field "${[...issue.path, issue.keys[0]].join('.')}"`;
  const field = issue.path.join('.') || 'entry';
  if (issue.code === 'invalid_type' && issue.received === 'undefined') return `${field} is missing`;
  if (issue.code === 'invalid_type') return `${field} must be a ${issue.expected}`;
  return `${field} ${issue.message}`;
}

/** Hosts must not share a host name, a token or a bootstrap bundle, nor reach into each other's prefix. */
function checkDisjoint(registry: FleetRegistry, source: string): void {
  const entries = Object.entries(registry);
  for (const [i, [a, ea]] of entries.entries()) {
    for (const [b, eb] of entries.slice(i + 1)) {
      if (ea.host === eb.host) {
        throw new RegistryError(`fleet registry ${source}: ${a} and ${b} share the host name ${ea.host}`);
      }
      if (ea.discordTokenSecret === eb.discordTokenSecret) {
        throw new RegistryError(`fleet registry ${source}: ${a} and ${b} share the Discord token secret`);
      }
      const pa = `${ea.bootstrapPrefix}/`;
      const pb = `${eb.bootstrapPrefix}/`;
      if (pa.startsWith(pb) || pb.startsWith(pa)) {
        throw new RegistryError(`fleet registry ${source}: the bootstrap prefixes of ${a} and ${b} overlap`);
      }
    }
  }
}
