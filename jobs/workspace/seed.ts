// The agent's workspace, refreshed from the templates at every start of its runtime (the
// original rsynced them over, losing what the agent changed). Here a template replaces a
// workspace file only while that file is still what was seeded last time:
//
//   missing in the workspace                    → copied (added)
//   equal to the new template                   → left (unchanged)
//   equal to the template seeded last time      → replaced by the new one (updated)
//   anything else (the agent edited it, or it   → kept as it is, and reported with where
//   was there before any seeding)                 the new template is
//   a template that left the set                → removed if untouched, else kept
//
// "Seeded last time" is a manifest of each template's SHA-256, kept outside the workspace
// (the bootstrap replaces the workspace on a re-initialization; the manifest must not go with
// it). Files the agent made itself are never looked at.
//
// Then the tool list the module rendered at build time (/etc/clawdinator/tools.md) is appended
// to TOOLS.md below a marker line; what is below the marker is rewritten at every start, what
// is above it follows the rules above.
//
// It runs as the agent's user, in the agent's own home: no privilege boundary is crossed.
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { HEARTBEAT_CRON_JOB } from '../../lib/agent-config.js';
import { errorLine } from '../../lib/errors.js';

export const TOOLS_FILE = 'TOOLS.md';
export const TOOLS_MARKER =
  '<!-- clawdinator: the installed tool list below is rewritten at every start, from /etc/clawdinator/tools.md; edit above this line -->';

export interface SeedOptions {
  templates: string;
  workspace: string;
  manifest: string;
  /** The rendered tool list; missing: nothing appended (reported). */
  toolsFile: string;
}

export interface SeedResult {
  added: string[];
  updated: string[];
  unchanged: string[];
  /** Relative path → why it was kept. */
  kept: Record<string, string>;
  removed: string[];
  toolList: 'appended' | 'no tool list' | 'no TOOLS.md';
}

interface Manifest {
  version: 1;
  files: Record<string, string>;
}

/** A file's content as the rules compare it: above the tool-list marker, trailing newlines as one. */
export function coreOf(content: string): string {
  const at = content.indexOf(TOOLS_MARKER);
  const head = at === -1 ? content : content.slice(0, at);
  return head.replace(/\n*$/, '\n');
}

const hashOf = (text: string) => createHash('sha256').update(coreOf(text)).digest('hex');

export async function seedWorkspace(options: SeedOptions): Promise<SeedResult> {
  const result: SeedResult = { added: [], updated: [], unchanged: [], kept: {}, removed: [], toolList: 'no tool list' };
  const previous = await readManifest(options.manifest);
  const next: Manifest = { version: 1, files: {} };
  const templates = await listFiles(options.templates);

  for (const rel of templates) {
    const template = await readFile(join(options.templates, rel), 'utf8');
    const wanted = hashOf(template);
    const target = join(options.workspace, rel);
    const current = await readRegular(target);
    if (current.kind === 'other') {
      result.kept[rel] = 'not a regular file here';
      if (previous.files[rel] !== undefined) next.files[rel] = previous.files[rel];
      continue;
    }
    if (current.kind === 'missing') {
      await writeAtomic(target, template);
      result.added.push(rel);
      next.files[rel] = wanted;
      continue;
    }
    const have = hashOf(current.text);
    if (have === wanted) {
      result.unchanged.push(rel);
      next.files[rel] = wanted;
    } else if (previous.files[rel] !== undefined && have === previous.files[rel]) {
      // TOOLS.md gets its tool list back below (appendToolList).
      await writeAtomic(target, template);
      result.updated.push(rel);
      next.files[rel] = wanted;
    } else {
      result.kept[rel] =
        previous.files[rel] === undefined ? 'it was here before seeding' : 'changed here since it was seeded';
      if (previous.files[rel] !== undefined) next.files[rel] = previous.files[rel];
    }
  }

  for (const [rel, seeded] of Object.entries(previous.files)) {
    if (templates.includes(rel)) continue;
    const current = await readRegular(join(options.workspace, rel));
    if (current.kind !== 'file') continue;
    if (hashOf(current.text) === seeded) {
      await unlink(join(options.workspace, rel));
      result.removed.push(rel);
    } else {
      result.kept[rel] = 'its template was removed, but it was changed here';
    }
  }

  result.toolList = await appendToolList(options.workspace, options.toolsFile);
  await writeAtomic(options.manifest, `${JSON.stringify(next, null, 2)}\n`);
  return result;
}

async function appendToolList(workspace: string, toolsFile: string): Promise<SeedResult['toolList']> {
  let tools: string;
  try {
    tools = await readFile(toolsFile, 'utf8');
  } catch {
    return 'no tool list';
  }
  const target = join(workspace, TOOLS_FILE);
  const current = await readRegular(target);
  if (current.kind !== 'file') return 'no TOOLS.md';
  const head = coreOf(current.text);
  const text = `${head}\n${TOOLS_MARKER}\n\n${tools.replace(/\n*$/, '\n')}`;
  if (text !== current.text) await writeAtomic(target, text);
  return 'appended';
}

type Current = { kind: 'missing' } | { kind: 'other' } | { kind: 'file'; text: string };

async function readRegular(path: string): Promise<Current> {
  try {
    const st = await lstat(path);
    if (!st.isFile()) return { kind: 'other' };
    return { kind: 'file', text: await readFile(path, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ENOTDIR') return { kind: 'other' };
    throw err;
  }
}

async function readManifest(path: string): Promise<Manifest> {
  try {
    const data = JSON.parse(await readFile(path, 'utf8')) as Partial<Manifest>;
    const files = data.files ?? {};
    if (typeof files !== 'object' || Array.isArray(files)) return { version: 1, files: {} };
    return {
      version: 1,
      files: Object.fromEntries(
        Object.entries(files).filter(([, v]) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v)),
      ) as Record<string, string>,
    };
  } catch {
    // Missing or unreadable: nothing was seeded before, so nothing is replaced that differs.
    return { version: 1, files: {} };
  }
}

async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const partial = `${path}.seed-${randomBytes(6).toString('hex')}`;
  await writeFile(partial, text, { mode: 0o644, flag: 'wx' });
  await rename(partial, path);
}

/** Relative paths (with /) of the regular files under `root`, sorted. */
async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => {
      const dir = (e as { parentPath?: string }).parentPath ?? e.path;
      return relative(root, join(dir, e.name)).split(sep).join('/');
    })
    .sort();
}

export interface RuntimeFiles {
  stateDir: string;
  gatewayToken: string;
  cronStore: string;
}

/**
 * What the runtime reads at start besides its configuration: its log dir, the gateway's auth
 * token (random, made once, readable by the agent only) and the cron store holding the hourly
 * heartbeat (added when missing; a job the agent tuned is left as it is).
 */
export async function prepareRuntimeFiles(files: RuntimeFiles): Promise<string[]> {
  const notes: string[] = [];
  await mkdir(join(files.stateDir, 'logs'), { recursive: true, mode: 0o750 });
  try {
    const handle = await open(
      files.gatewayToken,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    try {
      await handle.writeFile(`${randomBytes(32).toString('base64url')}\n`);
    } finally {
      await handle.close();
    }
    notes.push('gateway token: made');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }

  let store: { version?: unknown; jobs?: unknown } | null = null;
  try {
    store = JSON.parse(await readFile(files.cronStore, 'utf8')) as { version?: unknown; jobs?: unknown };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      notes.push(`cron store ${files.cronStore} kept as it is: ${errorLine(err)}`);
      return notes;
    }
  }
  if (store === null) {
    await writeAtomic(files.cronStore, `${JSON.stringify({ version: 1, jobs: [HEARTBEAT_CRON_JOB] }, null, 2)}\n`);
    notes.push('cron store: made with the hourly heartbeat');
  } else if (
    Array.isArray(store.jobs) &&
    !store.jobs.some((j) => (j as { id?: unknown })?.id === HEARTBEAT_CRON_JOB.id)
  ) {
    await writeAtomic(
      files.cronStore,
      `${JSON.stringify({ ...store, jobs: [...store.jobs, HEARTBEAT_CRON_JOB] }, null, 2)}\n`,
    );
    notes.push('cron store: hourly heartbeat added');
  }
  return notes;
}
