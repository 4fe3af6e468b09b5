// `clawdinator sandbox`: the whole control plane on one machine, against a simulated cloud.
// Interactive: type slash commands at the prompt and see what Discord would show. With
// `--script FILE`: run its lines, each waiting for the jobs it started; exit 0 only if every
// line did what it expected (a `!` line must be refused or fail). Ctrl-C, SIGTERM and SIGHUP
// stop everything the sandbox started; the directory (memory, registry, log) stays.
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { DEFAULT_SPEED, helpText, type Sandbox, startSandbox } from '../bot/sandbox/run.js';
import { parseScript, readScript, runScript, type ScriptLine, summaryLine, verdict } from '../bot/sandbox/script.js';
import { SANDBOX_AMI, SANDBOX_OPERATOR_ROLE, TOKEN_POOL } from '../bot/sandbox/world.js';
import { hasSetting, loadConfig } from '../lib/config.js';
import { errorLine, OperationError } from '../lib/errors.js';

interface SandboxCliOptions {
  dir: string;
  fast?: boolean;
  speed: number;
  as?: string;
  script?: string;
  timeout: number;
}

function parseSpeed(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 100_000) {
    throw new InvalidArgumentError('expected a factor above 0 (1 is real time), at most 100000');
  }
  return n;
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 86_400) {
    throw new InvalidArgumentError('expected seconds from 1 to 86400');
  }
  return n;
}

export function command(): Command {
  return new Command('sandbox')
    .description(
      'the control plane on this machine: real handlers, workers and schedules, a simulated cloud, a local Redis, memory and registry',
    )
    .option('--dir <path>', 'working directory for memory, fleet registry, keys and log (kept)', './.sandbox')
    .option('--fast', 'the simulated cloud does everything at once (no boot or import times)')
    .option('--speed <factor>', 'how much faster than real time the simulated cloud runs', parseSpeed, DEFAULT_SPEED)
    .option('--as <user>', 'act as another guild member (a user id or a name) without the operator role')
    .option('--script <file>', 'run the lines of a file ("-" for stdin) and exit: 0 if each did what it expected')
    .option(
      '--timeout <seconds>',
      'how long a line waits for the jobs it started (script and piped input)',
      parseSeconds,
      600,
    )
    .addHelpText(
      'after',
      '\nScript lines: blank lines and # comments are skipped; a line starting with ! must be refused or fail (not crash), and !{words} /command must say those words.\nRedis: CLAWDINATOR_REDIS_URL if set, else redis-server from PATH on a free loopback port.',
    )
    .action(async (opts: SandboxCliOptions) => {
      const script = opts.script === undefined ? undefined : await loadScript(opts.script);
      const config = loadConfig(['logLevel', 'fleetMaxSize', 'spawnsPerHour']);
      const redis = hasSetting('redisUrl') ? loadConfig(['redisUrl', 'redisPasswordFile']) : undefined;

      let stopRequested = false;
      let onStop: () => void = () => {};
      const stopSignal = new Promise<void>((resolve) => {
        onStop = () => {
          stopRequested = true;
          resolve();
        };
      });
      const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
      for (const s of signals) process.once(s, onStop);

      // A script is written against a first start (clawdinator-1 alone): one run on a kept
      // sandbox finds the fleet an earlier run left, and its failures should say so.
      const kept = existsSync(join(opts.dir, 'fleet.json'));
      const out = new Printer();
      let sandbox: Sandbox | undefined;
      try {
        sandbox = await startSandbox({
          dir: opts.dir,
          fast: opts.fast,
          speed: opts.speed,
          as: opts.as,
          redis,
          fleetMaxSize: config.fleetMaxSize,
          spawnsPerHour: config.spawnsPerHour,
          logLevel: config.logLevel,
          print: (text) => out.print(text),
        });
        out.print(banner(sandbox, opts, config.fleetMaxSize));
        if (stopRequested) return;
        if (script !== undefined) {
          await scripted(sandbox, script, opts, out, stopSignal, () => stopRequested, kept);
        } else {
          await interactive(sandbox, opts, out, stopSignal);
        }
      } finally {
        for (const s of signals) process.removeListener(s, onStop);
        await out.close();
        await sandbox?.stop();
      }
    });
}

async function loadScript(path: string): Promise<ScriptLine[]> {
  if (path !== '-') return readScript(path);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return parseScript(Buffer.concat(chunks).toString('utf8'));
}

function banner(sandbox: Sandbox, opts: SandboxCliOptions, cap: number): string {
  const where = (p: string) => relative(process.cwd(), p) || '.';
  const pace = opts.fast ? 'everything at once (--fast)' : `${opts.speed}× real time`;
  const who = sandbox.actor.roles.includes(SANDBOX_OPERATOR_ROLE)
    ? `${sandbox.actor.userName} (operator: allowed everything)`
    : `${sandbox.actor.userName} (member: may read memory and see /status only)`;
  return [
    `clawdinator sandbox in ${where(sandbox.dir)}`,
    `  redis    ${sandbox.redisUrl}${sandbox.ownRedis ? ' (redis-server started for the sandbox)' : ' (CLAWDINATOR_REDIS_URL: a Redis of its own, never the fleet’s)'}`,
    `  cloud    simulated, ${pace}: AMI ${SANDBOX_AMI} available, Discord token secrets clawdinator-1…${TOKEN_POOL}`,
    `  fleet    registry ${where(sandbox.registryPath)}, cap ${cap} members; each member online with its worker`,
    `  memory   ${where(`${sandbox.dir}/memory`)}   log ${where(`${sandbox.dir}/sandbox.log`)}`,
    `  github   simulated at ${sandbox.github.url}: org ${sandbox.github.org} synced into github/prs.md and github/issues.md`,
    `  you      ${who}`,
  ].join('\n');
}

async function scripted(
  sandbox: Sandbox,
  lines: ScriptLine[],
  opts: SandboxCliOptions,
  out: Printer,
  stopSignal: Promise<void>,
  stopping: () => boolean,
  kept: boolean,
): Promise<void> {
  const run = runScript(lines, {
    runLine: (line) => sandbox.runLine(line, { waitMs: opts.timeout * 1000 }),
    print: (text) => out.print(text),
    stopping,
  });
  // A signal ends the run at once, even while a line waits for its jobs.
  run.catch(() => {});
  const summary = await Promise.race([run, stopSignal.then(() => null)]);
  if (summary === null) {
    out.print(`\ninterrupted`);
    throw new OperationError('sandbox: interrupted before the script ended');
  }
  out.print(`\n${summaryLine(summary)}`);
  const first = summary.failed[0];
  if (first !== undefined || summary.interrupted) {
    const where = first ? `: line ${first.line.number} (${first.line.text}) ${first.why}` : '';
    const hint = kept
      ? ` (${opts.dir} was kept from an earlier run, with the fleet it left: remove it or pass another --dir for a fresh start)`
      : '';
    throw new OperationError(
      `sandbox: ${summary.failed.length} of ${lines.length} script lines did not do what they expected${where}${hint}`,
    );
  }
}

async function interactive(
  sandbox: Sandbox,
  opts: SandboxCliOptions,
  out: Printer,
  stopSignal: Promise<void>,
): Promise<void> {
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: 'clawdinator> ' });
  out.attach(rl, tty);
  out.print('Type help for the commands, exit to stop.');
  // Ctrl-C at the prompt (readline takes it in raw mode) stops like SIGINT.
  rl.on('SIGINT', () => rl.close());
  void stopSignal.then(() => rl.close());
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === 'exit' || line === 'quit') break;
    if (line === 'help' || line === '?') {
      out.print(helpText());
    } else if (line !== '' && !line.startsWith('#')) {
      let parsed: ScriptLine | undefined;
      try {
        parsed = parseScript(line)[0];
      } catch (err) {
        out.print(`⚠️ ${errorLine(err)}`);
      }
      if (parsed !== undefined) {
        // Piped input is not echoed by a terminal: show which line the output belongs to.
        if (!tty) out.print(`\n> ${line}`);
        out.busy = true;
        // Typed at a terminal, job progress arrives while you type; piped in, each line waits
        // for its jobs so the output stays in order.
        const running = sandbox.runLine(parsed.text, { waitMs: tty ? undefined : opts.timeout * 1000 });
        running.catch(() => {});
        const result = await Promise.race([running, stopSignal.then(() => null)]);
        out.busy = false;
        if (result === null) break;
        const why = parsed.expectFailure ? verdict(parsed, result) : undefined;
        if (why !== undefined) out.print(`(${why})`);
      }
    }
    out.prompt();
  }
  rl.close();
  out.detach();
  if (tty) process.stdout.write('\n');
}

/** Console output; at a terminal, a message arriving while you type keeps your line below it. */
class Printer {
  busy = false;
  private rl: Interface | undefined;
  private tty = false;

  attach(rl: Interface, tty: boolean): void {
    this.rl = rl;
    this.tty = tty;
  }

  detach(): void {
    this.rl = undefined;
  }

  print(text: string): void {
    if (this.rl && this.tty && !this.busy) {
      process.stdout.write(`\r\x1b[K${text}\n`);
      this.rl.prompt(true);
      return;
    }
    process.stdout.write(`${text}\n`);
  }

  prompt(): void {
    if (this.rl && this.tty) this.rl.prompt();
  }

  async close(): Promise<void> {
    this.rl = undefined;
    await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  }
}
