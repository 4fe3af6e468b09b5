// What a host was built from: /etc/clawdinator/build-info.json, written by the NixOS module at
// build time (nix/module.nix: this project's revision, whether flake.lock pinned it, the
// package version; nix/agent.nix adds the agent runtime's pinned revisions and nixpkgs'), read
// by `clawdinator version` on the host. Each worker also copies it into Redis
// (`clawdinator:build-info:<host>`, refreshed with its heartbeat), so `/status name:` on any
// gateway can show what a member runs. Inert text to the control plane: shown, never acted on.
import { readFile } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { z } from 'zod';

const rev = z.string().max(64);
const pinned = z.object({
  rev: rev.nullable().optional(),
  lastModified: z.number().int().nonnegative().nullable().optional(),
});

// Not strict: an older or newer module writes fewer or more fields.
export const buildInfoSchema = z.object({
  revision: rev.optional(),
  locked: z.boolean().optional(),
  version: z.string().max(64).optional(),
  runtime: z
    .object({
      name: z.string().max(40).optional(),
      version: z.string().max(64).nullable().optional(),
      rev: rev.nullable().optional(),
      nixOpenclaw: pinned.optional(),
    })
    .optional(),
  nixpkgs: pinned.optional(),
});
export type BuildInfo = z.output<typeof buildInfoSchema>;

export const buildInfoKey = (host: string) => `clawdinator:build-info:${host}`;

export async function readBuildInfoFile(path: string): Promise<BuildInfo | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  return parseBuildInfo(text);
}

export function parseBuildInfo(text: string | null): BuildInfo | null {
  if (text === null || text.length > 16_384) return null;
  try {
    const parsed = buildInfoSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** The worker's copy for the fleet, kept a little longer than its heartbeat. */
export async function publishBuildInfo(redis: Redis, host: string, info: BuildInfo, ttlSeconds: number): Promise<void> {
  await redis.set(buildInfoKey(host), JSON.stringify(info), 'EX', ttlSeconds);
}

export async function readBuildInfos(redis: Redis, hosts: string[]): Promise<Map<string, BuildInfo | null>> {
  const out = new Map<string, BuildInfo | null>();
  if (hosts.length === 0) return out;
  const values = await redis.mget(hosts.map(buildInfoKey));
  for (const [i, host] of hosts.entries()) out.set(host, parseBuildInfo(values[i] ?? null));
  return out;
}

/** `3d4h` from an epoch-seconds timestamp (a flake input's lastModified). */
export function ageOf(lastModified: number | null | undefined, nowMs: number): string {
  if (lastModified === null || lastModified === undefined) return 'unknown';
  const seconds = Math.max(0, Math.floor(nowMs / 1000) - lastModified);
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return d > 0 ? `${d}d${h}h` : h > 0 ? `${h}h${m}m` : `${m}m`;
}

const short = (r: string | null | undefined) => (r ? r.slice(0, 12) : 'unknown');

/** The original's clawdinator-version lines. */
export function formatBuildInfo(info: BuildInfo, nowMs: number): string[] {
  const lock = info.locked === undefined ? '' : info.locked ? ', flake.lock pinned' : ', built without flake.lock';
  const rt = info.runtime;
  return [
    `clawdinators: ${short(info.revision)} (v${info.version ?? '?'}${lock})`,
    rt
      ? `${rt.name ?? 'runtime'}: ${rt.version ?? '?'} (rev ${short(rt.rev)}) from nix-openclaw ${short(rt.nixOpenclaw?.rev)} (lock age ${ageOf(rt.nixOpenclaw?.lastModified, nowMs)})`
      : 'runtime: not in this build',
    `nixpkgs: ${short(info.nixpkgs?.rev)} (lock age ${ageOf(info.nixpkgs?.lastModified, nowMs)})`,
  ];
}
