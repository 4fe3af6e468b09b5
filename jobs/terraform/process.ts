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
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { OperationError } from '../../lib/errors.js';

export class TerraformCancelledError extends OperationError {}

// What terraform inherits from this process: enough to run and to reach AWS, nothing that
// configures terraform itself (TF_*, a HOME with .terraformrc or .terraform.d plugins) and
// none of this project's settings (which name secret files).
const PASSED =
  /^(PATH|TMPDIR|LANG|LC_[A-Z]+|TZ|SSL_CERT_FILE|SSL_CERT_DIR|NIX_SSL_CERT_FILE|(HTTPS?|NO)_PROXY|(https?|no)_proxy|AWS_[A-Z0-9_]+)$/;

/**
 * The environment terraform runs in: HOME is `home` (a directory of this project's, so no
 * .terraformrc or plugin dir of a user is obeyed), TF_CLI_CONFIG_FILE is `cliConfigFile`
 * (explicit: on hosts the module's, which allows only the bundled providers). The AWS shared
 * credentials and config files stay the invoking user's, so an operator's profile still works.
 */
export function terraformEnv(options: {
  home: string;
  cliConfigFile: string;
  from?: NodeJS.ProcessEnv;
}): Record<string, string> {
  const from = options.from ?? process.env;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(from)) if (v !== undefined && PASSED.test(k)) env[k] = v;
  const userHome = from.HOME;
  if (userHome !== undefined && userHome !== '') {
    env.AWS_SHARED_CREDENTIALS_FILE ??= join(userHome, '.aws', 'credentials');
    env.AWS_CONFIG_FILE ??= join(userHome, '.aws', 'config');
  }
  return {
    ...env,
    HOME: options.home,
    TF_CLI_CONFIG_FILE: options.cliConfigFile,
    TF_IN_AUTOMATION: '1',
    CHECKPOINT_DISABLE: '1',
  };
}

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
  /** The whole environment terraform gets (terraformEnv); never this process's own. */
  env: Record<string, string>;
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
    const child = spawn(bin, args, { cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
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
