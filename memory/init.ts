// `memory init`: lays out the store the way every host expects it. Idempotent and never
// overwrites: a concurrent init on another host or an existing file is left alone.
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { projectPath } from '../lib/paths.js';

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
  const result: InitResult = { created: [], kept: [] };
  await mkdir(root, { recursive: true });
  for (const dir of MEMORY_DIRS) {
    const made = await mkdir(join(root, dir), { recursive: true });
    (made === undefined ? result.kept : result.created).push(`${dir}/`);
  }
  const files: [string, () => Promise<string>][] = [
    ['index.md', async () => INDEX],
    ...MEMORY_TEMPLATES.map((name): [string, () => Promise<string>] => [
      name,
      () => readFile(projectPath('memory', 'templates', name), 'utf8'),
    ]),
  ];
  for (const [name, content] of files) {
    const created = await createExclusive(join(root, name), content);
    (created ? result.created : result.kept).push(name);
  }
  return result;
}

/**
 * Writes a temp file and hard-links it into place: link(2) fails when the name exists, so an
 * existing file is never replaced and nobody ever sees a half-written one.
 */
async function createExclusive(path: string, content: () => Promise<string>): Promise<boolean> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.init`);
  await writeFile(temp, await content(), { mode: 0o664 });
  try {
    await link(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(temp);
  }
}
