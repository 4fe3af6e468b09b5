// Runs one terraform (or tofu) command: output line by line to a callback, errors collected,
// cancellation through an AbortSignal.
//
// Cancelling sends SIGINT to terraform's process group, as Ctrl-C in a terminal does:
// terraform stops gracefully (it writes the state and releases its lock), its provider
// plugins ignore SIGINT by design and finish their calls, and a provisioner's commands are
// interrupted. SIGTERM to the group would kill the provider plugins mid-call (they ignore
// only SIGINT), leaving resources created but not recorded in the state. After the grace
// period the whole group gets SIGKILL.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { OperationError } from '../../lib/errors.js';

export class TerraformCancelledError extends OperationError {}

export interface ExecOptions {
  bin: string;
  args: string[];
  cwd: string;
  onLine: (line: string) => void;
  signal?: AbortSignal;
  graceMs: number;
  /** stdout holds terraform's `-json` UI messages: stream their `@message`. */
  json?: boolean;
  /** Keep stdout instead of streaming it (`show -json`, `output -json`: values, never logged). */
  capture?: boolean;
}

export interface ExecResult {
  code: number;
  /** stdout, when captured. */
  stdout: string;
  /** Each error: its summary and detail (diagnostics), or the text after "Error:". */
  errors: string[];
}

// Terraform colours some lines even with -no-color (force-unlock's result).
// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes start with ESC
const ANSI = /\u001b\[[0-9;]*m/g;

export function execTerraform(options: ExecOptions): Promise<ExecResult> {
  const { bin, args, cwd, onLine, signal, graceMs } = options;
  if (signal?.aborted) return Promise.reject(cancelled(args));
  return new Promise((resolve, reject) => {
    // Its own process group, so a cancel reaches terraform's children too.
    const child = spawn(bin, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const errors: string[] = [];
    const captured: Buffer[] = [];
    let current = -1;

    const onText = (raw: string) => {
      const line = raw.replace(ANSI, '').trimEnd();
      onLine(line);
      // Text-mode diagnostics: "Error: summary" then the detail, maybe inside a box.
      const bare = line.replace(/^[│╷╵] ?/, '');
      if (bare.startsWith('Error: ')) {
        current = errors.push(bare.slice('Error: '.length)) - 1;
      } else if (bare.startsWith('Warning: ')) {
        current = -1;
      } else if (current >= 0 && bare.trim() !== '') {
        errors[current] += `\n${bare}`;
      }
    };
    const onJson = (raw: string) => {
      let message: {
        '@message'?: unknown;
        type?: unknown;
        diagnostic?: { severity?: string; summary?: string; detail?: string };
      };
      try {
        message = JSON.parse(raw);
      } catch {
        // Terraform prints some lines as text even with -json ("Interrupt received.").
        onText(raw);
        return;
      }
      const diagnostic = message.type === 'diagnostic' ? message.diagnostic : undefined;
      if (typeof message['@message'] === 'string') onLine(message['@message']);
      if (diagnostic?.severity === 'error') {
        errors.push([diagnostic.summary ?? 'error', diagnostic.detail ?? ''].join('\n').trim());
        for (const line of (diagnostic.detail ?? '').split('\n')) if (line.trim() !== '') onLine(`  ${line}`);
      }
    };

    if (options.capture) child.stdout.on('data', (chunk: Buffer) => captured.push(chunk));
    else createInterface({ input: child.stdout }).on('line', options.json ? onJson : onText);
    createInterface({ input: child.stderr }).on('line', onText);

    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (sig: NodeJS.Signals) => {
      try {
        process.kill(-(child.pid as number), sig);
      } catch {
        // The group is already gone.
      }
    };
    const onAbort = () => {
      killGroup('SIGINT');
      killTimer = setTimeout(() => killGroup('SIGKILL'), graceMs);
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    child.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      const code = (err as NodeJS.ErrnoException).code ?? err.message;
      reject(
        new OperationError(`cannot run ${bin} (${code}): install terraform or tofu, or set CLAWDINATOR_TERRAFORM_BIN`),
      );
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      clearTimeout(killTimer);
      // Stray members of the group (a provisioner's command) must not outlive a cancel.
      if (signal?.aborted) {
        killGroup('SIGKILL');
        reject(cancelled(args));
        return;
      }
      resolve({ code: code ?? (sig ? 128 : 1), stdout: Buffer.concat(captured).toString('utf8'), errors });
    });
  });
}

function cancelled(args: string[]): TerraformCancelledError {
  return new TerraformCancelledError(`cancelled: terraform ${args[0]} was stopped`);
}
