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
  /**
   * Each error: its summary (the text after "Error: ") on the first line, then its detail,
   * paragraphs separated by a blank line (terraform wraps text-mode detail at 80 columns).
   */
  errors: string[];
}

/** Max length of a failure's cause: the summary is always whole, the detail may be cut. */
const MAX_CAUSE = 600;

/**
 * Collects terraform's text-mode diagnostics ("Error: summary", a blank line, the detail,
 * maybe inside a box) from lines as they come, keeping the detail's paragraphs.
 */
export class DiagnosticLines {
  readonly errors: string[] = [];
  private current = -1;

  line(line: string): void {
    const bare = line.replace(/^[│╷╵] ?/, '');
    if (bare.startsWith('Error: ')) {
      this.current = this.errors.push(bare.slice('Error: '.length).trim()) - 1;
    } else if (bare.startsWith('Warning: ')) {
      this.current = -1;
    } else if (this.current >= 0) {
      const text = bare.trim();
      const error = this.errors[this.current] as string;
      // A blank line ends a paragraph; the summary's own blank line is not a paragraph.
      if (text === '') {
        if (error.includes('\n') && !error.endsWith('\n\n')) this.errors[this.current] = `${error}\n`;
      } else {
        this.errors[this.current] = `${error}\n${text}`;
      }
    }
  }
}

/** Diagnostics in a text ("Error: …" blocks), e.g. a simulated failure's message. */
export function diagnosticsIn(text: string): string[] {
  const parser = new DiagnosticLines();
  for (const line of text.split('\n')) parser.line(line);
  return parser.errors;
}

/**
 * The first line that says why: the first error's summary, then the first paragraph of its
 * detail unwrapped ("Failed to query available provider packages: Could not retrieve the list
 * of available versions for provider hashicorp/aws: could not connect to registry.terraform.io: …"),
 * not a wrapped line cut before the cause. Long details are cut after the summary.
 */
export function terraformCause(errors: string[]): string {
  const [first] = errors;
  if (first === undefined) return 'no error message';
  const [summary = '', ...rest] = first.split('\n');
  const paragraph: string[] = [];
  for (const line of rest) {
    if (line.trim() === '') {
      if (paragraph.length > 0) break;
      continue;
    }
    paragraph.push(line.trim());
  }
  const detail = paragraph.join(' ');
  const cause = detail === '' ? summary.trim() : `${summary.trim()}: ${detail}`;
  if (cause.length <= MAX_CAUSE || summary.length >= MAX_CAUSE) return cause;
  return `${cause.slice(0, MAX_CAUSE - 1)}…`;
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
    const diagnostics = new DiagnosticLines();
    const errors = diagnostics.errors;
    const captured: Buffer[] = [];

    const onText = (raw: string) => {
      const line = raw.replace(ANSI, '').trimEnd();
      onLine(line);
      // Text-mode diagnostics: "Error: summary" then the detail, maybe inside a box.
      diagnostics.line(line);
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
        // The detail's own newlines separate its paragraphs (JSON mode does not wrap).
        const detail = (diagnostic.detail ?? '').replace(/\n(?!\n)/g, '\n\n');
        errors.push([diagnostic.summary ?? 'error', detail].join('\n').trim());
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
