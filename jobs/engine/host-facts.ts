// What a worker's heartbeat says about the host it runs on, learned by the host itself:
//
//   instanceId     from IMDSv2 (jobs/bootstrap/identity.ts), asked again at every beat until it
//                  answers, then kept (an instance's id never changes). Until then the
//                  heartbeat says `unavailable` and why, so a host that cannot learn it shows
//                  in /status and its log instead of reporting `unknown` forever.
//   revision       the build info the module writes (/etc/clawdinator/build-info.json), else
//                  /run/current-system/configurationRevision; re-read at every beat, so a
//                  `nixos-rebuild switch` shows without restarting the worker.
//   locked         whether that build came from a flake with a committed flake.lock.
//   memoryShared   whether the memory dir is the shared file system (NFS: EFS through its TLS
//                  tunnel), not a local directory left by a failed mount.
//   switchedAt     when /run/current-system last changed (a switch replaces the link): since
//                  when the host runs its revision, shown by /status.
//
// `--instance-id` / `--revision` given to the worker override what is learned.
import { lstat, readFile, statfs } from 'node:fs/promises';
import { errorLine } from '../../lib/errors.js';

/** f_type of an NFS mount (linux/magic.h NFS_SUPER_MAGIC). */
export const NFS_SUPER_MAGIC = 0x6969;
export const CURRENT_SYSTEM_REVISION = '/run/current-system/configurationRevision';
export const CURRENT_SYSTEM = '/run/current-system';
export const INSTANCE_ID_UNAVAILABLE = 'unavailable';

export interface HostFacts {
  instanceId: string;
  /** Why the instance id is unavailable; absent once it is known. */
  instanceIdError?: string;
  revision: string;
  /** null: the build info does not say (no build info). */
  locked: boolean | null;
  memoryShared: boolean;
  /** When the current system was switched to; absent where there is no /run/current-system. */
  switchedAt?: number;
}

export interface HostFactsOptions {
  /** Overrides (the worker's flags). */
  instanceId?: string;
  revision?: string;
  imds: { instanceId(): Promise<string> };
  buildInfoFile: string;
  revisionFile?: string;
  /** The current system's link (default /run/current-system). */
  currentSystem?: string;
  memoryDir: string;
  /** Called when the instance id cannot be learned, once per distinct reason. */
  onUnavailable?: (reason: string) => void;
  /** The file system type of a path (tests). */
  fsType?: (path: string) => Promise<number>;
}

const MAX_REVISION = 64;

/** A function giving this host's facts now; call it at every heartbeat. */
export function hostFacts(options: HostFactsOptions): () => Promise<HostFacts> {
  let known = options.instanceId;
  let lastReason: string | undefined;
  const fsType = options.fsType ?? (async (path: string) => (await statfs(path)).type);

  async function instanceId(): Promise<Pick<HostFacts, 'instanceId' | 'instanceIdError'>> {
    if (known !== undefined) return { instanceId: known };
    try {
      known = await options.imds.instanceId();
      return { instanceId: known };
    } catch (err) {
      const reason = errorLine(err).slice(0, 300);
      if (reason !== lastReason) options.onUnavailable?.(reason);
      lastReason = reason;
      return { instanceId: INSTANCE_ID_UNAVAILABLE, instanceIdError: reason };
    }
  }

  async function build(): Promise<Pick<HostFacts, 'revision' | 'locked'>> {
    const info = await readBuildInfo(options.buildInfoFile);
    const revision =
      options.revision ??
      info?.revision ??
      (await readText(options.revisionFile ?? CURRENT_SYSTEM_REVISION)) ??
      'unknown';
    return { revision: revision.slice(0, MAX_REVISION) || 'unknown', locked: info?.locked ?? null };
  }

  async function memoryShared(): Promise<boolean> {
    try {
      return (await fsType(options.memoryDir)) === NFS_SUPER_MAGIC;
    } catch {
      return false;
    }
  }

  async function switchedAt(): Promise<Pick<HostFacts, 'switchedAt'>> {
    try {
      const at = Math.floor((await lstat(options.currentSystem ?? CURRENT_SYSTEM)).mtimeMs);
      return at > 0 ? { switchedAt: at } : {};
    } catch {
      return {};
    }
  }

  return async () => {
    const [id, b, shared, switched] = await Promise.all([instanceId(), build(), memoryShared(), switchedAt()]);
    return { ...id, ...b, memoryShared: shared, ...switched };
  };
}

async function readText(path: string): Promise<string | null> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return text === '' ? null : text;
  } catch {
    return null;
  }
}

async function readBuildInfo(path: string): Promise<{ revision?: string; locked?: boolean } | null> {
  const text = await readText(path);
  if (text === null) return null;
  try {
    const data = JSON.parse(text) as { revision?: unknown; locked?: unknown };
    return {
      revision: typeof data.revision === 'string' && data.revision !== '' ? data.revision : undefined,
      locked: typeof data.locked === 'boolean' ? data.locked : undefined,
    };
  } catch {
    return null;
  }
}
