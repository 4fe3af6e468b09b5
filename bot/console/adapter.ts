// The console adapter: the same handlers driven from terminal lines, printing what Discord
// would show (text, attachments by name, buttons with their ids, forms with their fields).
//   /memory read path:ops.md        a slash command; values with spaces in quotes; a bare
//                                   word is the next option in order (/memory read ops.md)
//   /memory write path:x.md file:@./local.md   an attachment from a local file
//   /press <button-id>              press a button that was shown
//   /press confirm                  press the last shown button whose id has that word as
//                                   a part (`retire:confirm:…`): scripts cannot know ids
//                                   that carry an expiry time
//   /submit <form-id> field=value   answer a form
// Options are checked as Discord would before anything runs (names, types, required,
// choices, lengths), so the console refuses what Discord would refuse.
import { readFile, stat } from 'node:fs/promises';
import type { ReplyTarget } from '../../jobs/engine/envelope.js';
import { errorLine, UsageError } from '../../lib/errors.js';
import type { Dispatcher } from '../dispatch.js';
import type { Actor, Attachment, Invocation, Modal, OptionValue, Reply, Responder } from '../types.js';

interface OptionJson {
  type: number;
  name: string;
  required?: boolean;
  choices?: { name: string; value: string | number }[];
  min_length?: number;
  max_length?: number;
  options?: OptionJson[];
}

const SUBCOMMAND = 1;
const STRING = 3;
const INTEGER = 4;
const BOOLEAN = 5;
const NUMBER = 10;
const ATTACHMENT = 11;

/** Splits a line into words, keeping "quoted values" together (`key:"a b"` → `key:a b`). */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  const re = /(?:[^\s"]+|"(?:[^"\\]|\\.)*")+/g;
  for (const m of line.matchAll(re)) {
    out.push(m[0].replace(/"((?:[^"\\]|\\.)*)"/g, (_all, inner: string) => inner.replace(/\\(.)/g, '$1')));
  }
  return out;
}

function localAttachment(path: string): Attachment {
  return {
    kind: 'attachment',
    name: path.split('/').at(-1) ?? path,
    size: 0,
    async read(maxBytes) {
      const st = await stat(path).catch(() => {
        throw new UsageError(`no such local file: ${path}`);
      });
      if (st.size > maxBytes) throw new UsageError(`${path} is over ${maxBytes} bytes`);
      return readFile(path);
    },
  };
}

function convert(opt: OptionJson, raw: string, where: string): OptionValue {
  switch (opt.type) {
    case STRING: {
      if (opt.min_length !== undefined && raw.length < opt.min_length)
        throw new UsageError(`${where}: at least ${opt.min_length} characters`);
      if (opt.max_length !== undefined && raw.length > opt.max_length)
        throw new UsageError(`${where}: at most ${opt.max_length} characters`);
      if (opt.choices && !opt.choices.some((c) => c.value === raw)) {
        throw new UsageError(`${where}: one of ${opt.choices.map((c) => c.value).join(', ')}`);
      }
      return raw;
    }
    case INTEGER:
    case NUMBER: {
      const n = Number(raw);
      if (raw === '' || !Number.isFinite(n) || (opt.type === INTEGER && !Number.isInteger(n)))
        throw new UsageError(`${where}: a number`);
      return n;
    }
    case BOOLEAN:
      if (raw !== 'true' && raw !== 'false') throw new UsageError(`${where}: true or false`);
      return raw === 'true';
    case ATTACHMENT:
      if (!raw.startsWith('@')) throw new UsageError(`${where}: @<local file>`);
      return localAttachment(raw.slice(1));
    default:
      throw new UsageError(`${where}: unsupported option type`);
  }
}

export function parseCommand(
  words: string[],
  definitions: ReadonlyMap<string, { toJSON(): unknown }>,
  base: { id: string; actor: Actor },
): Invocation {
  const [head, ...rest] = words;
  const name = (head ?? '').slice(1);
  const def = definitions.get(name);
  if (def === undefined) throw new UsageError(`unknown command /${name}`);
  const json = def.toJSON() as { options?: OptionJson[] };
  let options = json.options ?? [];
  let subcommand: string | undefined;
  if (options.some((o) => o.type === SUBCOMMAND)) {
    const sub = options.find((o) => o.type === SUBCOMMAND && o.name === rest[0]);
    if (sub === undefined) {
      throw new UsageError(`/${name} needs a subcommand: ${options.map((o) => o.name).join(', ')}`);
    }
    subcommand = sub.name;
    options = sub.options ?? [];
    rest.shift();
  }
  const label = `/${name}${subcommand ? ` ${subcommand}` : ''}`;
  const values: Record<string, OptionValue> = {};
  for (const word of rest) {
    const cut = word.indexOf(':');
    const named = cut < 0 ? undefined : options.find((o) => o.name === word.slice(0, cut));
    // A bare word is the next option not given yet, in the command's order (`/sim fail apply`).
    const opt = named ?? (cut < 0 ? options.find((o) => values[o.name] === undefined) : undefined);
    if (opt === undefined) {
      const key = cut < 0 ? word : word.slice(0, cut);
      throw new UsageError(
        `${label}: unknown option "${key}" (options: ${options.map((o) => o.name).join(', ') || 'none'})`,
      );
    }
    values[opt.name] = convert(opt, named === undefined ? word : word.slice(cut + 1), `${label} ${opt.name}`);
  }
  for (const opt of options) {
    if (opt.required && values[opt.name] === undefined)
      throw new UsageError(`${label}: option ${opt.name} is required`);
  }
  return { ...base, kind: 'command', command: name, subcommand, options: values };
}

// Counted per process, not per session: two sessions in one process (a test's alice and bob)
// running lines in the same millisecond must not make the same interaction id, which the
// dispatcher's claim would then drop as a duplicate.
let consoleSeq = 0;

/** A console user's session: runs lines and says whether each did what it should. */
export class ConsoleSession {
  private readonly forms = new Map<string, Modal>();
  /** Ids of the buttons shown, oldest first (the last few are enough for `/press <word>`). */
  private readonly buttons: string[] = [];

  constructor(
    private readonly dispatcher: Dispatcher,
    public actor: Actor,
    private readonly print: (text: string) => void,
  ) {}

  /** Runs one line; false when it was refused or failed. */
  async run(line: string): Promise<boolean> {
    return (await this.attempt(line)).ok;
  }

  /**
   * Runs one line and says how it ended: ok, or what refused it (a line Discord would not
   * accept, the policy, the handler's error) or crashed ("Something went wrong").
   */
  async attempt(line: string): Promise<{ ok: boolean; failure?: ConsoleFailure }> {
    const words = tokenize(line.trim());
    if (words.length === 0) return { ok: true };
    const base = { id: `console-${process.pid}-${Date.now()}-${++consoleSeq}`, actor: { ...this.actor } };
    let inv: Invocation;
    try {
      inv = this.parse(words, base);
    } catch (err) {
      this.print(`⚠️ ${errorLine(err)}`);
      return { ok: false, failure: { kind: 'refused', text: errorLine(err) } };
    }
    const res = new ConsoleResponder(this.print, this.forms, (ids) => this.shown(ids), inv.id, inv.actor.channelId);
    await this.dispatcher.handle(inv, res);
    return res.failure === undefined ? { ok: true } : { ok: false, failure: res.failure };
  }

  /** Buttons shown outside a reply to a line (e.g. a job's confirmation request), for `/press <word>`. */
  shown(ids: string[]): void {
    this.buttons.push(...ids);
    this.buttons.splice(0, Math.max(0, this.buttons.length - 50));
  }

  private parse(words: string[], base: { id: string; actor: Actor }): Invocation {
    const [head, id, ...rest] = words;
    if (head === '/press') {
      if (id === undefined) throw new UsageError('/press <button-id>');
      return { ...base, kind: 'button', customId: this.buttonId(id) };
    }
    if (head === '/submit') {
      if (id === undefined) throw new UsageError('/submit <form-id> field=value …');
      const fields: Record<string, string> = {};
      for (const word of rest) {
        const cut = word.indexOf('=');
        if (cut < 0) throw new UsageError(`/submit: expected field=value, got "${word}"`);
        fields[word.slice(0, cut)] = word.slice(cut + 1).replace(/\\n/g, '\n');
      }
      const form = this.forms.get(id);
      for (const f of form?.fields ?? []) {
        if (fields[f.id] === undefined) fields[f.id] = f.value ?? '';
      }
      return { ...base, kind: 'modal', customId: id, fields };
    }
    if (!head?.startsWith('/')) throw new UsageError('commands start with /, e.g. /status');
    const definitions = new Map([...this.dispatcher.commands].map(([n, m]) => [n, m.data]));
    return parseCommand(words, definitions, base);
  }

  /** A full id as given; a bare word (no `:`) names the last shown button with that part. */
  private buttonId(given: string): string {
    if (given.includes(':')) return given;
    const found = this.buttons.findLast((id) => id.split(':').includes(given));
    if (found === undefined) throw new UsageError(`/press ${given}: no button with "${given}" in its id was shown`);
    return found;
  }
}

/** Why a console line did not succeed. */
export interface ConsoleFailure {
  kind: 'refused' | 'crashed';
  text: string;
}

class ConsoleResponder implements Responder {
  acknowledged = false;
  failure: ConsoleFailure | undefined;

  constructor(
    private readonly print: (text: string) => void,
    private readonly forms: Map<string, Modal>,
    private readonly onButtons: (ids: string[]) => void,
    private readonly interactionId: string,
    private readonly channelId: string,
  ) {}

  async handOff(): Promise<ReplyTarget> {
    return { channelId: this.channelId, interactionId: this.interactionId };
  }

  async defer({ ephemeral }: { ephemeral: boolean }): Promise<void> {
    this.acknowledged = true;
    this.print(`… thinking${ephemeral ? ' (only you can see this)' : ''}`);
  }

  async send(reply: Reply): Promise<void> {
    this.acknowledged = true;
    this.show(reply);
  }

  async update(reply: Reply): Promise<void> {
    this.acknowledged = true;
    this.print('(the message with the buttons now reads:)');
    this.show(reply);
  }

  async followUp(reply: Reply): Promise<void> {
    this.show(reply);
  }

  async showModal(modal: Modal): Promise<void> {
    this.acknowledged = true;
    this.forms.set(modal.customId, modal);
    const fields = modal.fields.map(
      (f) => `    ${f.id}: ${f.label} (${f.style}, ${f.value?.length ?? 0} characters pre-filled)`,
    );
    this.print(
      [
        `[form] ${modal.title}`,
        `  answer with: /submit ${modal.customId} ${modal.fields[0]?.id ?? 'field'}=…`,
        ...fields,
      ].join('\n'),
    );
  }

  async autocomplete(choices: { name: string; value: string }[]): Promise<void> {
    this.print(choices.map((c) => `  ${c.name}`).join('\n'));
  }

  async fail(message: string, options: { unexpected?: boolean } = {}): Promise<void> {
    this.failure = { kind: options.unexpected ? 'crashed' : 'refused', text: message };
    this.acknowledged = true;
    this.print(`⚠️ ${message} (only you can see this)`);
  }

  private show(reply: Reply): void {
    const lines: string[] = [];
    if (reply.content) lines.push(reply.content);
    for (const f of reply.files ?? []) lines.push(`[attachment] ${f.name} (${f.data.length} bytes)`);
    for (const b of reply.buttons ?? []) lines.push(`[button ${b.label}] press with: /press ${b.id}`);
    this.onButtons((reply.buttons ?? []).map((b) => b.id));
    if (reply.ephemeral) lines.push('(only you can see this)');
    this.print(lines.join('\n'));
  }
}
