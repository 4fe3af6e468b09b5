// What a simulated host does when the control plane runs our document on it
// (infra/host-document.ts): the sim's stand-in for the shipped script
// (nix/host/clawdinator-host.sh), answering in the same formats (jobs/host/command.ts parses
// both). Each host has a revision (/run/current-system/configurationRevision) and when it was
// switched to it, the generation before, unit states, a journal per unit and the secret files
// it holds (so `/logs` has something to redact).
//
// A switch runs "detached" as on a host: `switch-start` answers at once with the revision
// before; the switch ends `timings.switchMs` later on the sim's clock, and `switch-status`
// reads its result. It can fail, as a real one can:
//   - the `switch` fault (`faults.arm('switch', {times, message})`, `/sim fail switch`): the
//     host's own health check fails after the switch, the host rolls back to its previous
//     generation by itself, and the result says so with the error in its output tail;
//   - a revision listed in `brokenRevisions`: the switch and the host's check pass, but the
//     worker never reports again (a bad setting) — only the control plane's heartbeat check
//     finds it, and its rollback brings the host back.
// Listeners hear each switch's end (the sandbox and the test fleet restart the host's
// heartbeat with the new revision, or stop it when the worker does not come back).
import {
  checkHostParameters,
  HOST_DOCUMENT,
  type HostAction,
  LOG_LINES_MAX,
  LOG_UNITS,
} from '../../infra/host-document.js';
import { redactor } from '../host/redact.js';
import type { SimCore } from './sim-core.js';
import type { SimHost } from './sim-ec2.js';
import type { SimCommandResult, SimCommandRun } from './sim-ssm.js';

/** The revision a host runs when nothing else says (its image has no revision tag). */
export const SIM_BASE_REVISION = 'ba5eba5eba5eba5eba5eba5eba5eba5eba5eba5e';
const FULL_SHA = /^[0-9a-f]{40}$/;

export interface SimHostsOptions {
  /** Revision of a host by name (default: its image's `clawdinator:revision`, else SIM_BASE_REVISION). */
  revisions?: Record<string, string>;
  /** Switches to these revisions pass the host's check but the worker never reports again. */
  brokenRevisions?: string[];
  /** The secret files every host holds (name → value), as under /run/clawdinator-ops. */
  hostSecrets?: Record<string, string>;
  /** Lines added to every host's journal of a unit (a test plants a secret there). */
  journal?: Partial<Record<string, string[]>>;
}

export interface SimSwitchEvent {
  host: SimHost;
  revision: string;
  /** False: the worker does not come back (no heartbeat until the next switch). */
  workerUp: boolean;
}

interface SimRun {
  run: string;
  sha: string;
  previous: string;
  doneAt: number;
  outcome: 'ok' | 'fail' | 'silent';
  error: string;
  applied: boolean;
  revisionAfter: string;
  at: string;
}

interface HostState {
  host: SimHost;
  revision: string;
  switchedAt: number;
  units: Record<string, 'active' | 'failed' | 'inactive'>;
  journal: Record<string, string[]>;
  runs: Map<string, SimRun>;
}

export class SimHosts {
  private readonly states = new Map<string, HostState>();
  private readonly listeners = new Set<(event: SimSwitchEvent) => void>();
  private readonly events = new AbortController();
  private readonly broken: Set<string>;

  constructor(
    private readonly core: SimCore,
    private readonly imageRevision: (imageId: string) => string | undefined,
    private readonly options: SimHostsOptions = {},
  ) {
    this.broken = new Set(options.brokenRevisions ?? []);
    core.faults.define(
      'switch',
      "a host's switch: its own health check fails after the switch and it rolls back to its previous generation",
    );
  }

  /** The revision a host runs now (its heartbeat's, when its worker is up). */
  revisionOf(host: SimHost): { revision: string; switchedAt: number } {
    const state = this.state(host);
    return { revision: state.revision, switchedAt: state.switchedAt };
  }

  onSwitched(listener: (event: SimSwitchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.events.abort();
  }

  /** Our document on one host; anything else is not ours to answer. */
  handle(run: SimCommandRun): SimCommandResult | undefined {
    if (run.document !== HOST_DOCUMENT) return undefined;
    const p = Object.fromEntries(Object.entries(run.parameters).map(([k, v]) => [k, v[0] ?? '']));
    const state = this.state(run.host);
    this.settle(state);
    switch (p.action as HostAction) {
      case 'switch-start':
        return this.switchStart(state, p.sha ?? '', p.run ?? '');
      case 'switch-status':
        return this.switchStatus(state, p.run ?? '');
      case 'doctor':
        return { exitCode: 0, stdout: this.doctor(state) };
      case 'logs':
        return this.logs(state, p.unit ?? '', Number(p.lines));
      default:
        return { exitCode: 2, stderr: `clawdinator-host: unknown action ${p.action}` };
    }
  }

  /** SSM's own check of a document's parameters (InvalidParameters), before anything runs. */
  static check(document: string, parameters: Record<string, string[]>): string | null {
    if (document !== HOST_DOCUMENT) return null;
    const values: Record<string, string> = {};
    for (const [name, list] of Object.entries(parameters)) {
      if (list.length !== 1) return `${name}: one value expected`;
      values[name] = list[0] as string;
    }
    return checkHostParameters(values);
  }

  // ── the actions ─────────────────────────────────────────────────────────────────────

  private switchStart(state: HostState, sha: string, run: string): SimCommandResult {
    if (!FULL_SHA.test(sha) || run === '')
      return { exitCode: 2, stderr: 'clawdinator-host: switch-start needs a sha and a run' };
    const known = state.runs.get(run);
    const answer = (previous: string, s: string) => ({
      exitCode: 0,
      stdout: `switch ${run}: ${s}\n${JSON.stringify({ run, sha, previous, state: s })}\n`,
    });
    if (known !== undefined) return answer(known.previous, known.applied ? 'done' : 'running');
    if (state.revision === sha) return answer(state.revision, 'already');
    const fault = this.core.faults.take('switch');
    const outcome: SimRun['outcome'] = fault !== undefined ? 'fail' : this.broken.has(sha) ? 'silent' : 'ok';
    const now = this.core.clock.now();
    const record: SimRun = {
      run,
      sha,
      previous: state.revision,
      doneAt: now + this.core.timings.switchMs,
      outcome,
      error:
        fault?.message ??
        `clawdinator-worker.service: Main process exited, code=exited, status=1/FAILURE (switch to ${sha.slice(0, 12)})`,
      applied: false,
      revisionAfter: state.revision,
      at: new Date(now).toISOString(),
    };
    state.runs.set(run, record);
    this.log(
      state,
      'clawdinator-deploy',
      `switch ${run}: ${record.previous.slice(0, 12)} → ${sha.slice(0, 12)} started`,
    );
    this.core.clock.sleep(record.doneAt - now, this.events.signal).then(
      () => this.apply(state, record),
      () => {}, // close(): the event is cancelled
    );
    return answer(record.previous, 'started');
  }

  private switchStatus(state: HostState, run: string): SimCommandResult {
    const record = state.runs.get(run);
    const line = (value: unknown) => ({ exitCode: 0, stdout: `${JSON.stringify(value)}\n` });
    if (record === undefined) return line({ run, state: 'unknown' });
    if (!record.applied) return line({ run, state: 'running' });
    const clean = this.redactor();
    const tail =
      record.outcome === 'fail'
        ? [
            `building the system configuration for ${record.sha.slice(0, 12)}...`,
            'activating the configuration...',
            record.error,
            `health check failed: clawdinator-worker is failed; rolling back to ${record.previous.slice(0, 12)}`,
            'switching to the previous generation...',
          ]
        : [`building the system configuration for ${record.sha.slice(0, 12)}...`, 'activating the configuration...'];
    return line({
      run,
      state: 'done',
      sha: record.sha,
      previous: record.previous,
      ok: record.outcome !== 'fail',
      phase: record.outcome === 'fail' ? 'health' : 'done',
      revision: record.revisionAfter,
      rolledBack: record.outcome === 'fail',
      units: { 'clawdinator-gateway': state.units['clawdinator-gateway'], 'clawdinator-worker': 'active' },
      at: record.at,
      tail: clean(tail.join('\n')),
    });
  }

  private doctor(state: HostState): string {
    const secrets = Object.keys(this.options.hostSecrets ?? {}).sort();
    const unit = (name: string, what: string) =>
      `${state.units[name] === 'active' ? 'ok' : 'fail'}\t${what}\t${name}.service ${state.units[name] ?? 'inactive'}`;
    const lines = [
      `ok\tbootstrap\tclawdinator-bootstrap.service exited; bootstrapped from bootstrap/${state.host.name} (simulated)`,
      'ok\tmemory mount\t127.0.0.1:/ on /memory type nfs4 (simulated)',
      `ok\tsecrets\t${secrets.length > 0 ? secrets.map((s) => `${s} 0400`).join(', ') : 'none held'} (simulated)`,
      unit('clawdinator-gateway', 'gateway'),
      unit('clawdinator-worker', 'worker'),
      'skip\tagent runtime\tno clawdinator-agent unit on this host',
      'ok\t/memory shared\t/memory is nfs4',
      'ok\trepos seeded\t3 repositories in /var/lib/clawd/repo-seeds (simulated)',
      'ok\tdisk\t/ 23% used',
      'ok\tmemory pressure\t61% available, some avg60 0.00',
      'ok\tclock\tNTP synchronized',
      `ok\trevision\t${state.revision} since ${new Date(state.switchedAt).toISOString()}`,
    ];
    return `${this.redactor()(lines.join('\n'))}\n`;
  }

  private logs(state: HostState, unit: string, lines: number): SimCommandResult {
    if (!(LOG_UNITS as readonly string[]).includes(unit) || !(lines >= 1)) {
      return { exitCode: 2, stderr: 'clawdinator-host: logs needs a unit of the allow-list and a line count' };
    }
    const kept = (state.journal[unit] ?? []).slice(-Math.min(lines, LOG_LINES_MAX));
    if (kept.length === 0) return { exitCode: 0, stdout: `-- No entries for ${unit} --\n` };
    return { exitCode: 0, stdout: `${this.redactor()(kept.join('\n'))}\n` };
  }

  // ── the host's life ─────────────────────────────────────────────────────────────────

  private apply(state: HostState, record: SimRun): void {
    if (record.applied) return;
    record.applied = true;
    if (record.outcome === 'fail') {
      // The host's own check failed: back on the previous generation, worker restarted.
      record.revisionAfter = record.previous;
      this.log(state, 'clawdinator-worker', record.error);
      this.log(
        state,
        'clawdinator-deploy',
        `switch ${record.run}: health check failed; rolled back to ${record.previous.slice(0, 12)}`,
      );
      this.emit(state, state.revision, true);
      return;
    }
    state.revision = record.sha;
    state.switchedAt = record.doneAt;
    record.revisionAfter = record.sha;
    this.log(state, 'clawdinator-deploy', `switch ${record.run}: now on ${record.sha.slice(0, 12)}`);
    this.log(
      state,
      'clawdinator-worker',
      record.outcome === 'silent' ? 'redis: connection refused (worker not reporting)' : 'worker ready',
    );
    this.emit(state, record.sha, record.outcome === 'ok');
  }

  /** Switches whose end is due are applied when the host is next asked (a manual clock). */
  private settle(state: HostState): void {
    const now = this.core.clock.now();
    for (const record of state.runs.values()) if (!record.applied && now >= record.doneAt) this.apply(state, record);
  }

  private emit(state: HostState, revision: string, workerUp: boolean): void {
    for (const listener of this.listeners) listener({ host: state.host, revision, workerUp });
  }

  private state(host: SimHost): HostState {
    let state = this.states.get(host.instanceId);
    if (state === undefined) {
      const tagged = this.imageRevision(host.imageId);
      const revision =
        this.options.revisions?.[host.name] ??
        (tagged !== undefined && FULL_SHA.test(tagged) ? tagged : SIM_BASE_REVISION);
      const journal: Record<string, string[]> = {
        'clawdinator-bootstrap': [`bootstrap: installed bootstrap/${host.name} (simulated)`],
        'clawdinator-gateway': ['gateway ready'],
        'clawdinator-worker': ['worker ready'],
      };
      for (const [unit, lines] of Object.entries(this.options.journal ?? {})) {
        journal[unit] = [...(journal[unit] ?? []), ...(lines ?? [])];
      }
      state = {
        host,
        revision,
        switchedAt: this.core.clock.now(),
        units: { 'clawdinator-gateway': 'active', 'clawdinator-worker': 'active', 'clawdinator-bootstrap': 'active' },
        journal,
        runs: new Map(),
      };
      this.states.set(host.instanceId, state);
    }
    return state;
  }

  private log(state: HostState, unit: string, line: string): void {
    const stamp = new Date(this.core.clock.now()).toISOString();
    const lines = state.journal[unit] ?? [];
    lines.push(`${stamp} ${state.host.name} ${unit}: ${line}`);
    state.journal[unit] = lines.slice(-1000);
  }

  /** What the shipped script does on a host: redact by the values it holds, and by pattern. */
  private redactor(): (text: string) => string {
    return redactor(Object.values(this.options.hostSecrets ?? {}));
  }
}
