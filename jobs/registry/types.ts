// Where the jobs read and change the fleet registry. In production the project's GitHub repo
// (the contents API, the blob sha as the optimistic lock, the message as the commit message);
// the local-file backend (file.ts) serves the sandbox, tests and day 0.
//
// Every change is a mutator applied to the registry as last read, written only if nobody
// changed it meanwhile; otherwise the store reads again and re-applies the mutator, which is
// where a conflicting change is noticed (the mutator throws: "already in the registry").
import type { FleetRegistry } from '../../infra/registry.js';
import { OperationError } from '../../lib/errors.js';

export interface RegistrySnapshot {
  registry: FleetRegistry;
  /** The content's hash (file) or blob sha (GitHub): what an update checks against. */
  version: string;
}

/** Gets a copy of the registry; returns the registry wanted, or the same content for no change. */
export type RegistryMutator = (registry: FleetRegistry) => FleetRegistry;

export interface RegistryStore {
  read(): Promise<RegistrySnapshot>;
  /** Applies `mutator` to the current registry and writes it; returns what was written. */
  update(mutator: RegistryMutator, options: { message: string }): Promise<FleetRegistry>;
  /**
   * Checks, before a job creates anything, that an update could be written at all (the
   * store's permission, a protected branch): throws a RefusedError naming cause and fix.
   */
  preflight?(): Promise<void>;
}

/** The registry kept changing under an update: nothing was written. */
export class RegistryConflictError extends OperationError {}
