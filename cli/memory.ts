// `clawdinator memory …`: the shared memory from a shell. A drop-in for the agents'
// `memory-read`/`memory-write`/`memory-edit` tools, taking the same flock(2) locks.
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../lib/config.js';
import { OperationError } from '../lib/errors.js';
import { MemoryError, MemoryStore } from '../memory/store.js';

interface WaitOption {
  wait?: number;
}

function parseWait(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 600) {
    throw new InvalidArgumentError('expected seconds from 0 to 600');
  }
  return n;
}

function parseSha(value: string): string {
  if (!/^[0-9a-fA-F]{64}$/.test(value)) throw new InvalidArgumentError('expected 64 hexadecimal characters');
  return value.toLowerCase();
}

function openStore(): MemoryStore {
  const config = loadConfig(['memoryDir', 'memoryMaxBytes', 'memoryLockWaitSeconds']);
  return new MemoryStore({
    root: config.memoryDir,
    maxBytes: config.memoryMaxBytes,
    waitSeconds: config.memoryLockWaitSeconds,
  });
}

/** Reads stdin, stopping one byte past the cap so an oversize input never sits in memory. */
async function readStdin(maxBytes: number, path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > maxBytes) {
      process.stdin.destroy();
      throw new MemoryError('too-large', `too large: input for ${path} is over the cap of ${maxBytes} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

function write(text: string): void {
  process.stdout.write(text);
}

const waitOption = ['--wait <seconds>', 'how long to wait for the lock (default 5)', parseWait] as const;

export function command(): Command {
  const memory = new Command('memory')
    .description('read and write the shared memory under CLAWDINATOR_MEMORY_DIR (default /memory)')
    .showHelpAfterError(false);

  memory
    .command('read')
    .description('print a file, under a shared lock')
    .argument('<path>', 'file, relative to the memory folder (or absolute inside it)')
    .option(...waitOption)
    .action(async (path: string, opts: WaitOption) => {
      const result = await openStore().read(path, { waitSeconds: opts.wait });
      process.stdout.write(result.content);
    });

  memory
    .command('write')
    .description('replace a file with stdin, in place, under an exclusive lock')
    .argument('<path>', 'file, relative to the memory folder')
    .option(...waitOption)
    .option('--if-sha256 <hex>', 'write only if the current content has this SHA-256', parseSha)
    .action(async (path: string, opts: WaitOption & { ifSha256?: string }) => {
      const store = openStore();
      const content = await readStdin(store.maxBytes, path);
      const result = await store.write(path, content, { waitSeconds: opts.wait, ifSha256: opts.ifSha256 });
      write(`wrote ${result.path} (${result.bytes} bytes, sha256 ${result.sha256})\n`);
    });

  memory
    .command('append')
    .description('append stdin to a file (adding a final newline if missing)')
    .argument('<path>', 'file, relative to the memory folder')
    .option(...waitOption)
    .action(async (path: string, opts: WaitOption) => {
      const store = openStore();
      const content = await readStdin(store.maxBytes, path);
      await store.append(path, content, { waitSeconds: opts.wait });
    });

  memory
    .command('edit')
    .description('run a command while holding the exclusive lock (one argument runs through bash -c, like memory-edit)')
    .argument('<path>', 'file, relative to the memory folder')
    .argument('<command...>', 'the command, after --')
    .option(...waitOption)
    .action(async (path: string, argv: string[], opts: WaitOption) => {
      const [file, ...args] = argv.length === 1 ? ['bash', '-c', argv[0] as string] : argv;
      const code = await openStore().withExclusiveLock(path, () => runCommand(file as string, args), {
        waitSeconds: opts.wait,
      });
      if (code !== 0) throw new OperationError(`edit command exited with ${code}`);
    });

  memory
    .command('list')
    .description('list files with size and modification time')
    .argument('[dir]', 'directory, relative to the memory folder', '')
    .option('--json', 'print a JSON array of {path, size, mtime}')
    .action(async (dir: string, opts: { json?: boolean }) => {
      const entries = await openStore().list(dir);
      if (opts.json) {
        write(`${JSON.stringify(entries)}\n`);
        return;
      }
      const width = Math.max(0, ...entries.map((e) => String(e.size).length));
      for (const e of entries) write(`${String(e.size).padStart(width)}  ${e.mtime}  ${e.path}\n`);
    });

  memory
    .command('init')
    .description('lay out daily/, discord/, github/, audit/, index.md and the templates (never overwrites)')
    .action(async () => {
      const { memoryDir } = loadConfig(['memoryDir']);
      // Loaded here, not at start: init alone needs it (and node:crypto with it).
      const { initMemory } = await import('../memory/init.js');
      const result = await initMemory(memoryDir);
      for (const p of result.created) write(`created ${p}\n`);
      for (const p of result.kept) write(`kept    ${p}\n`);
    });

  return memory;
}

async function runCommand(file: string, args: string[]): Promise<number> {
  // node:child_process on first use: it costs ≈ 5 ms of every `memory read` otherwise.
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit' });
    child.on('error', (err) =>
      reject(new OperationError(`cannot run ${file}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)),
    );
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
