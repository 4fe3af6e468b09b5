// The local-file registry backend: infra/fleet.json (or the sandbox's copy) on this machine.
//
// The optimistic check is the content's SHA-256, as the GitHub backend's is the blob sha:
// read, apply the mutator, and write only if the file still has the hash that was read.
// The check and the write happen under an exclusive flock(2) on a lock file beside the
// registry, so two processes (or two jobs in one) cannot both pass the check. The new
// content is renamed into place: readers that do not lock (synth, readRegistry) never see
// half a file. Each written change adds a line to `.<name>.history`, the file backend's
// stand-in for the commit log.
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, appendFile, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type FleetRegistry, parseRegistry, RegistryError } from '../../infra/registry.js';
import { OperationError, RefusedError } from '../../lib/errors.js';
import { LockTimeout, lockFd } from '../../memory/lock.js';
import { RegistryConflictError, type RegistryMutator, type RegistrySnapshot, type RegistryStore } from './types.js';

const DEFAULT_ATTEMPTS = 5;
const LOCK_WAIT_MS = 10_000;

export interface FileRegistryOptions {
  /** Reads and re-applications before an update gives up on a registry that keeps changing. */
  attempts?: number;
}

export class FileRegistryStore implements RegistryStore {
  private readonly attempts: number;

  constructor(
    readonly path: string,
    options: FileRegistryOptions = {},
  ) {
    this.attempts = options.attempts ?? DEFAULT_ATTEMPTS;
  }

  /** The history of written changes: one line per update, "<time> <hash> <message>". */
  get historyPath(): string {
    return join(dirname(this.path), `.${basename(this.path)}.history`);
  }

  async read(): Promise<RegistrySnapshot> {
    const text = await this.readText();
    return { registry: this.parse(text), version: hash(text) };
  }

  /** The file and its folder (lock, temp file, history) must be writable by this process. */
  async preflight(): Promise<void> {
    for (const target of [this.path, dirname(this.path)]) {
      try {
        await access(target, constants.W_OK);
      } catch (err) {
        throw new RefusedError(
          `refused: fleet registry ${this.path} cannot be written (${errnoCode(err)} on ${target}): make it and its folder writable by this user`,
        );
      }
    }
  }

  async update(mutator: RegistryMutator, options: { message: string }): Promise<FleetRegistry> {
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      const before = await this.read();
      const wanted = mutator(structuredClone(before.registry));
      // Validated before writing: a mutator's mistake never reaches the file.
      const registry = parseRegistry(wanted, this.path);
      const text = `${JSON.stringify(registry, null, 2)}\n`;
      if (JSON.stringify(registry) === JSON.stringify(before.registry)) return registry;
      if (await this.writeIf(before.version, text, options.message)) return registry;
    }
    throw new RegistryConflictError(
      `fleet registry ${this.path} changed ${this.attempts} times during "${options.message}": nothing written, try again`,
    );
  }

  /** Writes `text` if the file still has `version`; false when it changed since. */
  private async writeIf(version: string, text: string, message: string): Promise<boolean> {
    const lock = await open(join(dirname(this.path), `.${basename(this.path)}.lock`), 'a');
    try {
      await lockFd(lock.fd, 'exclusive', LOCK_WAIT_MS).catch((err) => {
        if (err instanceof LockTimeout) throw new OperationError(`fleet registry ${this.path} is locked (waited 10 s)`);
        throw err;
      });
      if (hash(await this.readText()) !== version) return false;
      const temp = join(dirname(this.path), `.${basename(this.path)}.${randomBytes(6).toString('hex')}.tmp`);
      try {
        const handle = await open(temp, 'wx', 0o644);
        try {
          await handle.writeFile(text);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(temp, this.path);
      } catch (err) {
        await unlink(temp).catch(() => {});
        throw new OperationError(`fleet registry ${this.path} cannot be written (${errnoCode(err)})`);
      }
      const line = `${new Date().toISOString()} ${hash(text).slice(0, 12)} ${message.replace(/\s+/g, ' ')}\n`;
      await appendFile(this.historyPath, line);
      return true;
    } finally {
      // Closing the descriptor drops the lock.
      await lock.close();
    }
  }

  private async readText(): Promise<string> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (err) {
      throw new RegistryError(`fleet registry ${this.path} cannot be read (${errnoCode(err)})`);
    }
  }

  private parse(text: string): FleetRegistry {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new RegistryError(`fleet registry ${this.path} is not valid JSON`);
    }
    return parseRegistry(data, this.path);
  }
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'unreadable';
}
