// Every interaction is audited: one line (time, who, where, what, outcome) to the audit
// trail (jobs/audit.ts: the journal, one S3 object when a bucket is configured, and the copy
// in `audit/YYYY-MM-DD.md` of the shared memory). Free text (contents, modal fields,
// attachments) is elided to its size: the audit says what was done, not what was said.
import type { BotDeps, Invocation, OptionValue } from './types.js';

const ELIDED_OPTIONS = new Set(['content', 'text']);
const MAX_VALUE = 80;

function clean(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  const flat = value.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  const short = flat.length > MAX_VALUE ? `${flat.slice(0, MAX_VALUE)}…` : flat;
  return /[\s"]/.test(short) || short === '' ? JSON.stringify(short) : short;
}

function describeOption(name: string, value: OptionValue): string {
  if (typeof value === 'object') return `${name}:[file ${clean(value.name)}, ${value.size} bytes]`;
  if (ELIDED_OPTIONS.has(name)) return `${name}:[${String(value).length} chars]`;
  return `${name}:${clean(String(value))}`;
}

export function describeInvocation(inv: Invocation): string {
  switch (inv.kind) {
    case 'command': {
      const head = `/${inv.command}${inv.subcommand ? ` ${inv.subcommand}` : ''}`;
      const opts = Object.entries(inv.options).map(([k, v]) => describeOption(k, v));
      return [head, ...opts].join(' ');
    }
    case 'autocomplete':
      return `autocomplete /${inv.command}${inv.subcommand ? ` ${inv.subcommand}` : ''} ${inv.focused.name}`;
    case 'button':
      return `button ${clean(inv.customId)}`;
    case 'modal':
      return `modal ${clean(inv.customId)} fields:[${Object.keys(inv.fields).length}]`;
  }
}

export function auditLine(inv: Invocation, outcome: string, at: Date): string {
  const a = inv.actor;
  const where = a.guildId === null ? `dm channel=${a.channelId}` : `guild=${a.guildId} channel=${a.channelId}`;
  return `- ${at.toISOString()} user=${a.userId} (${clean(a.userName)}) ${where} ${describeInvocation(inv)} → ${clean(outcome)}`;
}

export async function audit(deps: BotDeps, inv: Invocation, outcome: string): Promise<void> {
  const at = deps.now();
  const line = auditLine(inv, outcome, at);
  await deps.audit.record({
    at,
    line,
    fields: { kind: 'interaction', interaction: inv.id, user: inv.actor.userId, outcome },
  });
}
