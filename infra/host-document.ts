// The one SSM document the control plane runs on hosts: `clawdinator-host`, a Command document
// of the base stack with typed parameters. No cdktf here: the jobs, the AWS adapter and the
// simulated cloud read the same definition the stack synthesizes.
//
// Why a document of our own rather than `AWS-RunShellScript` with quoted values: with
// RunShellScript the deployer role may run any shell line as root on every host, and the
// safety of each deploy rests on the control plane quoting right every time. With this
// document the deployer may only ask a host to run the script this project ships on it
// (nix/host/clawdinator-host.sh, installed by the module) with one of a fixed set of actions;
// SSM itself refuses a value outside each parameter's allowedPattern/allowedValues before the
// host sees it; the values reach the script as environment variables (interpolationType
// ENV_VAR), never as text of the command; and the flake's repository is the host's own
// setting, so whoever holds the deployer role can choose a commit of the project, not a repo.
// RunShellScript is no longer in the deployer's policy.

export const HOST_DOCUMENT = 'clawdinator-host';

/** What the control plane asks of a host (the script's first argument). */
export const HOST_ACTIONS = ['switch-start', 'switch-status', 'doctor', 'logs'] as const;
export type HostAction = (typeof HOST_ACTIONS)[number];

/**
 * The units whose journal `/logs` may read: the host's units (nix/units.json, checked by
 * test/nix/units.test.ts), the memory mount, the first-boot switch, the deploy's switches and
 * the agent's runtime. Nothing else: the journal of another unit is not ours to show.
 */
export const LOG_UNITS = [
  'clawdinator-bootstrap',
  'clawdinator-efs-tunnel',
  'memory.mount',
  'clawdinator-memory-init',
  'clawdinator-seed-repos',
  'clawdinator-gateway',
  'clawdinator-worker',
  'clawdinator-model-proxy',
  'clawdinator-switch',
  'clawdinator-deploy',
  'clawdinator-agent',
] as const;
export type LogUnit = (typeof LOG_UNITS)[number];
export const DEFAULT_LOG_UNIT: LogUnit = 'clawdinator-worker';

/** Lines `/logs` may ask for: SSM keeps 24 000 characters of a command's output. */
export const LOG_LINES_MAX = 500;
export const LOG_LINES_DEFAULT = 100;

/** A deploy run's id on the host (its result file's name): the job's, shortened. */
export const RUN_PATTERN = '^([a-z0-9][a-z0-9-]{0,62})?$';
export const SHA_PATTERN = '^([0-9a-f]{40})?$';
export const LINES_PATTERN = '^[1-9][0-9]{0,2}$';

export interface HostParameters {
  action: HostAction;
  /** switch-start: the full commit sha to switch to. */
  sha?: string;
  /** switch-start, switch-status: the run's id. */
  run?: string;
  /** logs: which unit. */
  unit?: LogUnit;
  /** logs: how many lines. */
  lines?: number;
}

interface ParameterDef {
  type: 'String';
  description: string;
  default: string;
  allowedPattern?: string;
  allowedValues?: readonly string[];
  interpolationType: 'ENV_VAR';
}

/** The document's parameters, as SSM checks them. */
export const HOST_PARAMETERS: Record<'action' | 'sha' | 'run' | 'unit' | 'lines', ParameterDef> = {
  action: {
    type: 'String',
    description: 'what the host does',
    default: 'doctor',
    allowedValues: HOST_ACTIONS,
    interpolationType: 'ENV_VAR',
  },
  sha: {
    type: 'String',
    description: 'switch-start: the full commit sha of the project to switch to',
    default: '',
    allowedPattern: SHA_PATTERN,
    interpolationType: 'ENV_VAR',
  },
  run: {
    type: 'String',
    description: 'switch-start, switch-status: the deploy run (its result file)',
    default: '',
    allowedPattern: RUN_PATTERN,
    interpolationType: 'ENV_VAR',
  },
  unit: {
    type: 'String',
    description: 'logs: the unit whose journal is read',
    default: DEFAULT_LOG_UNIT,
    allowedValues: LOG_UNITS,
    interpolationType: 'ENV_VAR',
  },
  lines: {
    type: 'String',
    description: `logs: how many lines (the script caps them at ${LOG_LINES_MAX})`,
    default: String(LOG_LINES_DEFAULT),
    allowedPattern: LINES_PATTERN,
    interpolationType: 'ENV_VAR',
  },
};

/** Where the module installs the script (environment.systemPackages). */
export const HOST_SCRIPT = '/run/current-system/sw/bin/clawdinator-host';

/**
 * The document's content (JSON). An agent older than 3.3.2746 does not set the SSM_*
 * variables: the first line falls back to SSM's own substitution of the same values, which
 * SSM has checked against the patterns above (no quote, space or `$` can pass them).
 */
export function hostDocumentContent(): string {
  const names = Object.keys(HOST_PARAMETERS);
  const fallback = names.map((n) => `SSM_${n}='{{ ${n} }}'`).join('; ');
  return JSON.stringify({
    schemaVersion: '2.2',
    description: 'CLAWDINATOR: run the host script this project ships (switch, doctor, logs) with checked values',
    parameters: HOST_PARAMETERS,
    mainSteps: [
      {
        action: 'aws:runShellScript',
        name: 'clawdinatorHost',
        precondition: { StringEquals: ['platformType', 'Linux'] },
        inputs: {
          timeoutSeconds: '600',
          runCommand: [
            `if [ -z "\${SSM_action+x}" ]; then ${fallback}; fi`,
            `exec ${HOST_SCRIPT} "$SSM_action" "$SSM_sha" "$SSM_run" "$SSM_unit" "$SSM_lines"`,
          ],
        },
      },
    ],
  });
}

/**
 * The parameters as SendCommand takes them, each value checked against the document's rule
 * first: SSM would refuse it too, but a bad value must be refused before any call.
 */
export function hostCommandParameters(p: HostParameters): Record<string, string[]> {
  const values: Record<string, string> = {
    action: p.action,
    sha: p.sha ?? '',
    run: p.run ?? '',
    unit: p.unit ?? DEFAULT_LOG_UNIT,
    lines: String(p.lines ?? LOG_LINES_DEFAULT),
  };
  const bad = checkHostParameters(values);
  if (bad !== null) throw new Error(bad);
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, [v]]));
}

/** Null when every value passes the document's rules, else what is wrong (SSM's InvalidParameters). */
export function checkHostParameters(values: Record<string, string>): string | null {
  for (const [name, value] of Object.entries(values)) {
    const def = HOST_PARAMETERS[name as keyof typeof HOST_PARAMETERS];
    if (def === undefined) return `${HOST_DOCUMENT} has no parameter ${name}`;
    if (def.allowedValues !== undefined && !def.allowedValues.includes(value)) {
      return `${name}: not one of the allowed values`;
    }
    if (def.allowedPattern !== undefined && !new RegExp(def.allowedPattern).test(value)) {
      return `${name}: does not match ${def.allowedPattern}`;
    }
  }
  return null;
}
