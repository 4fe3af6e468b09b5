// nix/units.json, the description of a host's units that nix/module.nix builds its systemd
// units from, as the tests read it; and the one substitution that runs it off a host: every
// absolute host path is re-rooted under a temp dir (`/run/clawdinator-ops/x` becomes
// `<root>/run/clawdinator-ops/x`).
import { readFileSync } from 'node:fs';
import { projectPath } from '../../lib/paths.js';

export type IdName = 'ops' | 'agent' | 'memory';

export interface UnitDescription {
  description: string;
  user: 'root' | 'dynamic' | IdName;
  group: 'root' | 'dynamic' | IdName;
  supplementaryGroups?: IdName[];
  type: 'oneshot' | 'simple';
  command: string[];
  environment: Record<string, string>;
  moduleEnvironment: string[];
  settings: boolean;
  secrets: string[];
  after: string[];
  wants: string[];
  wantsMountsFor: string[];
  conditionPathExists?: string;
}

export interface HostContract {
  version: number;
  ids: {
    ops: { user: string; uid: number; group: string; gid: number };
    agent: { user: string; uid: number; group: string; gid: number };
    memory: { group: string; gid: number };
  };
  paths: Record<string, string>;
  directories: { path: string; mode: string; user: 'root' | IdName; group: 'root' | IdName }[];
  opsSecrets: Record<string, string>;
  /** Files the bootstrap derives into the ops dir (not fetched, not secret). */
  opsDerived: Record<string, string>;
  memoryMount: {
    what: string;
    where: string;
    type: string;
    options: string[];
    after: string[];
    requires: string[];
    conditionPathExists: string;
  };
  /** Scripts the module installs, run as root by SSM through the named document. */
  hostScripts: Record<string, { source: string; document: string; runtimeInputs: string[] }>;
  order: string[];
  units: Record<string, UnitDescription>;
}

export const UNITS_FILE = projectPath('nix', 'units.json');

export function readContract(): HostContract {
  return JSON.parse(readFileSync(UNITS_FILE, 'utf8')) as HostContract;
}

/** A host path under `root`; anything else (a word, a URL) as it is. */
export function reroot(root: string, value: string): string {
  return value.startsWith('/') ? `${root}${value}` : value;
}

/** uid or gid of a name in the contract (root is 0). */
export function idOf(contract: HostContract, name: 'root' | IdName, kind: 'uid' | 'gid'): number {
  if (name === 'root') return 0;
  if (name === 'memory') return contract.ids.memory.gid;
  return contract.ids[name][kind];
}
