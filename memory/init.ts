// `memory init`: lays out the store the way every host expects it. Idempotent and never
// overwrites: a concurrent init on another host or an existing file is left alone. Runs as
// the ops user over a folder the agent writes, so it opens everything as the store does
// (walk.ts): from a descriptor of the root, never through a planted link.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { projectPath } from '../lib/paths.js';
import { MemoryError } from './errors.js';
import { at, ioError, openDirAt, openRoot, requireProcFd } from './walk.js';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

export const MEMORY_DIRS = ['daily', 'discord', 'github', 'audit'] as const;
export const MEMORY_TEMPLATES = ['project.md', 'ops.md', 'discord.md', 'architecture.md'] as const;

const INDEX = `# Memory Index

The CLAWDINATOR fleet's shared memory ("hive mind"). Read before acting; write what the next
host needs to know.

- \`project.md\` — mission, priorities, decisions
- \`ops.md\` — runbook and the fleet's lifecycle log
- \`discord.md\` — Discord channels and norms
- \`architecture.md\` — how the fleet is built
- \`daily/\` — one file per day of notes (\`daily/YYYY-MM-DD.md\`)
- \`discord/\` — per-channel notes
- \`github/\` — org activity, synced by the control plane
- \`audit/\` — every ops-bot command, one line each (\`audit/YYYY-MM-DD.md\`)
`;

export interface InitResult {
  created: string[];
  kept: string[];
}

export async function initMemory(root: string): Promise<InitResult> {
  requireProcFd();
  const result: InitResult = { created: [], kept: [] };
  // The root itself is configured, not the agent's: made like any directory.
  await mkdir(root, { recursive: true });
  const rootDir = await openRoot(root);
  try {
    for (const name of MEMORY_DIRS) {
      const made = await mkdir(at(rootDir, name)).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'EEXIST') return false;
          throw ioError(name, err);
        },
      );
      // Whatever holds the name must be a real directory (a planted symlink is refused).
      const dir = await openDirAt(rootDir, name, name, { create: false });
      if (dir === null) throw new MemoryError('io', `I/O error on ${name}: it vanished while being made`);
      await dir.close();
      (made ? result.created : result.kept).push(`${name}/`);
    }
    const files: [string, () => Promise<string>][] = [
      ['index.md', async () => INDEX],
      ...MEMORY_TEMPLATES.map((name): [string, () => Promise<string>] => [
        name,
        () => readFile(projectPath('memory', 'templates', name), 'utf8'),
      ]),
    ];
    for (const [name, content] of files) {
      const created = await createExclusive(rootDir, name, content);
      (created ? result.created : result.kept).push(name);
    }
  } finally {
    await rootDir.close();
  }
  return result;
}

/**
 * Writes a temp file (new, unpredictably named, never through a link) and hard-links it into
 * place: link(2) fails when the name exists, whatever it is, so an existing file is never
 * replaced and nobody ever sees a half-written one. (For the instant between link and
 * unlink the new file has two links, and the store refuses it as it would a missing one.)
 */
async function createExclusive(dir: FileHandle, name: string, content: () => Promise<string>): Promise<boolean> {
  const temp = at(dir, `.${name}.${randomBytes(12).toString('hex')}.init`);
  const handle = await open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o664).catch((err) => {
    throw ioError(name, err);
  });
  try {
    try {
      await handle.writeFile(await content());
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await link(temp, at(dir, name));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err instanceof MemoryError ? err : ioError(name, err);
  } finally {
    await unlink(temp);
  }
}
