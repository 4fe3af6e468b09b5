// The host from chat and the terminal: `/doctor` and `/logs`, `clawdinator fleet doctor|logs`.
// Each is one SSM command on the member's instance through our document, answered by the
// script the module installs on the host — no SSH, no shell line built here. Every value is
// checked before any call (a member of the registry, a unit of the allow-list, a line count
// within the cap); what comes back was redacted on the host and is redacted again here.
import {
  DEFAULT_LOG_UNIT,
  LOG_LINES_DEFAULT,
  LOG_LINES_MAX,
  LOG_UNITS,
  type LogUnit,
} from '../../infra/host-document.js';
import type { FleetRegistry } from '../../infra/registry.js';
import { isInstanceName, NAME_RULE } from '../../lib/config.js';
import { OperationError, UsageError } from '../../lib/errors.js';
import type { Cloud } from '../cloud/types.js';
import { type DoctorCheck, describeInvocation, formatDoctor, parseDoctor, runHostAction } from './command.js';
import { inertLines, redactor } from './redact.js';

export interface HostOpsDeps {
  cloud: Pick<Cloud, 'listFleetInstances' | 'sendCommand' | 'waitForInvocation'>;
  registry: () => Promise<FleetRegistry>;
}

/** A member name as given (Discord option, CLI argument): checked before anything is looked up. */
export function checkMember(name: unknown): string {
  if (!isInstanceName(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 40)) : 'that';
    throw new UsageError(`${shown} is not a member name (${NAME_RULE})`);
  }
  return name;
}

/** A deploy's target as given: `all`, or a member's name by the name rule. */
export function checkTarget(target: unknown): string {
  if (target === undefined || target === 'all') return 'all';
  if (!isInstanceName(target)) throw new UsageError('target: all, or one member like clawdinator-2');
  return target;
}

export function checkUnit(unit: unknown): LogUnit {
  if (unit === undefined || unit === null || unit === '') return DEFAULT_LOG_UNIT;
  if (typeof unit !== 'string' || !(LOG_UNITS as readonly string[]).includes(unit)) {
    throw new UsageError(`unit: one of ${LOG_UNITS.join(', ')}`);
  }
  return unit as LogUnit;
}

export function checkLines(lines: unknown): number {
  if (lines === undefined || lines === null || lines === '') return LOG_LINES_DEFAULT;
  const n =
    typeof lines === 'number' ? lines : typeof lines === 'string' && /^\d{1,6}$/.test(lines) ? Number(lines) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > LOG_LINES_MAX) {
    throw new UsageError(`lines: a whole number from 1 to ${LOG_LINES_MAX}`);
  }
  return n;
}

/** The running instance of a registry member; one line when there is none. */
export async function memberInstance(deps: HostOpsDeps, name: string): Promise<string> {
  const registry = await deps.registry();
  if (registry[name] === undefined) throw new UsageError(`${name} is not in the fleet registry`);
  const running = (await deps.cloud.listFleetInstances()).find((i) => i.name === name && i.state === 'running');
  if (running === undefined) throw new OperationError(`${name} has no running instance to ask`);
  return running.instanceId;
}

export interface DoctorReport {
  member: string;
  checks: DoctorCheck[];
  text: string;
}

/** The original's verification checklist, run on the member by the shipped script. */
export async function doctorMember(deps: HostOpsDeps, name: unknown): Promise<DoctorReport> {
  const member = checkMember(name);
  const instanceId = await memberInstance(deps, member);
  const result = await runHostAction(deps.cloud, instanceId, { action: 'doctor' }, { comment: `doctor ${member}` });
  const checks = parseDoctor(result);
  return { member, checks, text: formatDoctor(member, checks) };
}

export interface LogsRequest {
  name: unknown;
  unit?: unknown;
  lines?: unknown;
}

export interface LogsReport {
  member: string;
  unit: LogUnit;
  /** The lines asked for (fewer when the journal holds fewer). */
  lines: number;
  text: string;
}

/** The last lines of a unit's journal on the member, redacted on the host (and here). */
export async function memberLogs(deps: HostOpsDeps, request: LogsRequest): Promise<LogsReport> {
  const member = checkMember(request.name);
  const unit = checkUnit(request.unit);
  const lines = checkLines(request.lines);
  const instanceId = await memberInstance(deps, member);
  const result = await runHostAction(
    deps.cloud,
    instanceId,
    { action: 'logs', unit, lines },
    { comment: `logs ${member} ${unit}` },
  );
  if (result.status !== 'Success')
    throw new OperationError(`logs of ${unit} on ${member}: ${describeInvocation(result)}`);
  const text = redactor()(inertLines(result.stdout)).trimEnd();
  return { member, unit, lines, text };
}
