// The project's version, from its package.json (what heartbeats report).
import { readFileSync } from 'node:fs';
import { projectPath } from './paths.js';

const pkg = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string };

export const version: string = pkg.version;
