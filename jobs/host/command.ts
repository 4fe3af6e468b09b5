// Asking a host for something over SSM: the control plane's side of the host script
// (nix/host/clawdinator-host.sh) run through our document (infra/host-document.ts). Each ask
// is one SendCommand and its polls; the values are checked against the document's rules
// before any call, and what comes back is parsed here — it is the host's answer, read as
// untrusted text (an agent could have planted journal lines; the switch's output is nix's).
import { z } from 'zod';
import { HOST_DOCUMENT, type HostParameters, hostCommandParameters } from '../../infra/host-document.js';
import { OperationError, UsageError } from '../../lib/errors.js';
import type { Cloud, InvocationResult } from '../cloud/types.js';
import { inertLines, redactor } from './redact.js';

/** How long one command may take on the host (the document's own limit is 600 s). */
export const HOST_COMMAND_TIMEOUT_SECONDS = 120;

export type HostCloud = Pick<Cloud, 'sendCommand' | 'waitForInvocation'>;

/** Runs one action on one instance and waits for it; the values are checked first. */
export async function runHostAction(
  cloud: HostCloud,
  instanceId: string,
  params: HostParameters,
  options: { comment: string; timeoutSeconds?: number },
): Promise<InvocationResult> {
  let parameters: Record<string, string[]>;
  try {
    parameters = hostCommandParameters(params);
  } catch (err) {
    throw new UsageError(`refused before asking the host: ${(err as Error).message}`);
  }
  const commandId = await cloud.sendCommand(
    [instanceId],
    { document: HOST_DOCUMENT, parameters },
    { comment: options.comment },
  );
  return cloud.waitForInvocation(commandId, instanceId, {
    timeoutSeconds: options.timeoutSeconds ?? HOST_COMMAND_TIMEOUT_SECONDS,
  });
}

// ── the switch ──────────────────────────────────────────────────────────────────────────

const revision = z.string().max(64);
const runId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/);

/** `switch-start`'s answer: what ran before (recorded by the host before it switched). */
export const switchStartSchema = z.object({
  run: runId,
  sha: z.string().regex(/^[0-9a-f]{40}$/),
  previous: revision,
  /** started: a new switch; running/done: this run started earlier (a resumed step); already: nothing to do. */
  state: z.enum(['started', 'running', 'done', 'already']),
});
export type SwitchStart = z.output<typeof switchStartSchema>;

/** `switch-status`'s answer: the run's result file, or that it still runs. */
export const switchStatusSchema = z.union([
  z.object({ run: runId, state: z.literal('running') }),
  z.object({ run: runId, state: z.literal('unknown') }),
  z.object({
    run: runId,
    state: z.literal('done'),
    sha: z.string(),
    previous: revision,
    ok: z.boolean(),
    /** Where it ended: build (nix), switch (activation), health (the host's own check), done. */
    phase: z.enum(['token', 'build', 'switch', 'health', 'done']),
    /** /run/current-system/configurationRevision after the run (and its rollback, if any). */
    revision,
    rolledBack: z.boolean(),
    units: z.record(z.string().max(80), z.string().max(40)),
    at: z.string().max(40),
    /** The last lines of the switch's output, redacted on the host. */
    tail: z.string().max(8000),
  }),
]);
export type SwitchStatus = z.output<typeof switchStatusSchema>;
export type SwitchResult = Extract<SwitchStatus, { state: 'done' }>;

/** The last JSON line of a command's output, parsed with `schema`; one line of error otherwise. */
export function lastJson<S extends z.ZodTypeAny>(result: InvocationResult, schema: S, what: string): z.output<S> {
  const lines = result.stdout.trim().split('\n');
  const last = lines.at(-1) ?? '';
  let data: unknown;
  try {
    data = JSON.parse(last);
  } catch {
    throw new OperationError(`${what}: the host gave no answer (${describeInvocation(result)})`);
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) throw new OperationError(`${what}: the host's answer is not understood`);
  return parsed.data;
}

/** Status and exit code, and the last line of stderr (redacted), for an error line. */
export function describeInvocation(result: InvocationResult): string {
  const clean = redactor();
  const err = clean(result.stderr.trim().split('\n').at(-1) ?? '').slice(0, 200);
  return `${result.status}${result.exitCode === null ? '' : `, exit ${result.exitCode}`}${err ? `: ${err}` : ''}`;
}

/** The last `lines` lines of a text, at most `max` characters, redacted again here. */
export function outputTail(text: string, lines = 20, max = 1500, secrets: string[] = []): string {
  const clean = redactor(secrets);
  const kept = clean(text).trimEnd().split('\n').slice(-lines).join('\n');
  return kept.length > max ? `…${kept.slice(kept.length - max)}` : kept;
}

// ── doctor ──────────────────────────────────────────────────────────────────────────────

export interface DoctorCheck {
  name: string;
  state: 'ok' | 'fail' | 'skip';
  evidence: string;
}

const CHECK_LINE = /^(ok|fail|skip)\t([a-z0-9/][a-z0-9 ./_-]{0,60})\t(.{0,300})$/;

/** doctor's lines: `ok|fail|skip<TAB>check<TAB>evidence`; anything else is not a check. */
export function parseDoctor(result: InvocationResult, secrets: string[] = []): DoctorCheck[] {
  const clean = redactor(secrets);
  const checks: DoctorCheck[] = [];
  for (const line of result.stdout.split('\n')) {
    const m = CHECK_LINE.exec(inertLines(line));
    if (m === null) continue;
    checks.push({ state: m[1] as DoctorCheck['state'], name: m[2] as string, evidence: clean(m[3] as string) });
  }
  if (checks.length === 0)
    throw new OperationError(`doctor: the host gave no checklist (${describeInvocation(result)})`);
  return checks;
}

/** The checklist as Discord and the terminal show it: ✅/❌ and one line of evidence each. */
export function formatDoctor(member: string, checks: DoctorCheck[]): string {
  const failed = checks.filter((c) => c.state === 'fail').length;
  const head =
    failed === 0 ? `🩺 ${member}: every check passed` : `🩺 ${member}: ${failed} of ${checks.length} checks failed`;
  const icon = { ok: '✅', fail: '❌', skip: '➖' } as const;
  return [head, ...checks.map((c) => `${icon[c.state]} ${c.name} — ${c.evidence}`)].join('\n');
}
