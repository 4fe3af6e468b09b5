#!/usr/bin/env node
// The `clawdinator` entry. It knows the command groups by name only and imports a group's
// module when that group is asked for, so `clawdinator memory read` loads the memory store
// and nothing else (no discord.js, BullMQ or AWS SDK). This is the only place that turns an
// error into an exit code: 0 ok, 1 operation failed, 2 usage error. Errors are one line on
// stderr; `--debug` adds the stack.
import type { Command } from 'commander';
import { ClawError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, errorLine } from '../lib/errors.js';

interface CommandGroup {
  summary: string;
  load: () => Promise<{ command: () => Command }>;
}

const groups: Record<string, CommandGroup> = {
  memory: { summary: 'read and write the shared memory (hive mind)', load: () => import('./memory.js') },
  gateway: { summary: 'run the ops bot’s Discord gateway', load: () => import('./gateway.js') },
  'register-commands': {
    summary: 'register the slash commands in the configured guilds',
    load: () => import('./register-commands.js'),
  },
  worker: { summary: 'run the fleet’s jobs, schedules and this host’s heartbeat', load: () => import('./worker.js') },
  fleet: {
    summary: 'the fleet: status, spawn, retire, replace, update, doctor, logs',
    load: () => import('./fleet.js'),
  },
  jobs: { summary: 'list, show, retry and cancel the fleet’s jobs', load: () => import('./jobs.js') },
  request: { summary: 'ask for a fleet action on a peer, as this host’s agent', load: () => import('./request.js') },
  infra: { summary: 'Day 0 and the CDKTF stacks: init, synth, plan, apply', load: () => import('./infra.js') },
  ami: {
    summary: 'the base image (AMI): rebuild, build, upload, import, list, prune',
    load: () => import('./ami.js'),
  },
  sandbox: { summary: 'the whole control plane here, on a simulated cloud', load: () => import('./sandbox.js') },
  bootstrap: { summary: 'install this host’s bootstrap bundle (run at boot)', load: () => import('./bootstrap.js') },
  host: { summary: 'what the host script needs on a host: redact, deploy-token', load: () => import('./host.js') },
  github: { summary: 'the agents’ GitHub App token; the org sync into the memory', load: () => import('./github.js') },
  repos: { summary: 'prepare the agents’ repo seeds (clone, pack, upload)', load: () => import('./repos.js') },
  'seed-repos': { summary: 'update ~/repos from the repo seeds, as the agent', load: () => import('./seed-repos.js') },
  'agent-config': {
    summary: 'print a member’s merged agent runtime configuration as JSON',
    load: () => import('./agent-config.js'),
  },
  'model-proxy': {
    summary: 'serve the agent’s model requests with the keys it never holds, metering usage',
    load: () => import('./model-proxy.js'),
  },
  'seed-workspace': {
    summary: 'refresh the agent’s workspace from the templates, keeping its own edits',
    load: () => import('./seed-workspace.js'),
  },
  version: { summary: 'what this host runs: project, agent runtime, nixpkgs', load: () => import('./version.js') },
};

function usage(): string {
  const width = Math.max(...Object.keys(groups).map((n) => n.length));
  const lines = Object.entries(groups).map(([name, g]) => `  ${name.padEnd(width)}  ${g.summary}`);
  return [
    'Usage: clawdinator <command> [options]',
    '',
    'Control plane of a CLAWDINATOR fleet.',
    '',
    'Commands:',
    ...lines,
    '',
    'Options:',
    '  --debug     print stack traces of errors',
    '  -h, --help  show help (also: clawdinator <command> --help)',
    '',
  ].join('\n');
}

async function run(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [name, ...rest] = args;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const group = groups[name];
  if (group === undefined) {
    process.stderr.write(`clawdinator: unknown command "${name}" (see clawdinator --help)\n`);
    return EXIT_USAGE;
  }
  try {
    const { command } = await group.load();
    const program = command().name(`clawdinator ${name}`);
    configureErrors(program, name);
    await program.parseAsync(rest, { from: 'user' });
    return Number(process.exitCode ?? EXIT_OK);
  } catch (err) {
    return report(err, debug);
  }
}

/** Commander prints usage errors itself; make them one prefixed line, and never exit. */
function configureErrors(cmd: Command, name: string): void {
  cmd.exitOverride();
  cmd.configureOutput({ outputError: (text, write) => write(`clawdinator ${name}: ${text.replace(/^error: /, '')}`) });
  for (const sub of cmd.commands) configureErrors(sub, name);
}

function report(err: unknown, debug: boolean): number {
  const commanderCode = (err as { code?: unknown }).code;
  if (typeof commanderCode === 'string' && commanderCode.startsWith('commander.')) {
    // Commander has already printed its message (help, version or a usage error).
    const ok = ['commander.helpDisplayed', 'commander.help', 'commander.version'];
    return ok.includes(commanderCode) ? EXIT_OK : EXIT_USAGE;
  }
  process.stderr.write(`clawdinator: ${errorLine(err)}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return err instanceof ClawError ? err.exitCode : EXIT_FAILED;
}

const code = await run(process.argv.slice(2));
// Let pending stdout writes drain (a large `memory read` into a pipe) before exiting.
process.stdout.write('', () => process.exit(code));
