// Where the project's own files are (templates, workspace, infra), whether running bundled
// (dist/…, dist/chunks/…) or from source (vitest runs the TypeScript directly): the nearest
// folder above this module that holds the project's package.json.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the project root above ${start}`);
    dir = parent;
  }
  return dir;
}

export const projectRoot = findRoot(dirname(fileURLToPath(import.meta.url)));

export function projectPath(...parts: string[]): string {
  return resolve(projectRoot, ...parts);
}
