// /memory read|list|write|append|edit — the shared memory through the same store, locks and
// path rules as the CLI. `edit` opens a form pre-filled with the file and saves it only if
// the file is unchanged since (the store's --if-sha256 check), so a concurrent edit is
// reported, not overwritten.

import { basename } from 'node:path';
import { SlashCommandBuilder } from '@discordjs/builders';
import { UsageError } from '../../lib/errors.js';
import { MemoryError } from '../../memory/store.js';
import { formatBytes, textOrFile } from '../render.js';
import type {
  Ack,
  AutocompleteInvocation,
  BotDeps,
  Choice,
  CommandInvocation,
  CommandModule,
  Invocation,
  ModalInvocation,
  OptionValue,
  Responder,
} from '../types.js';

const PATH_MAX = 200;
const CONTENT_MAX = 6000; // Discord's limit for a string option
const MODAL_MAX = 4000; // Discord's limit for a text input
const CUSTOM_ID_MAX = 100;
/** A modal must be the first response (within 3 s), so its pre-fill read waits only briefly. */
const EDIT_LOCK_WAIT_SECONDS = 1.5;

export const data = new SlashCommandBuilder()
  .setName('memory')
  .setDescription('Read and write the fleet’s shared memory')
  .addSubcommand((s) =>
    s
      .setName('read')
      .setDescription('Show a file')
      .addStringOption((o) =>
        o.setName('path').setDescription('e.g. ops.md').setRequired(true).setMaxLength(PATH_MAX).setAutocomplete(true),
      ),
  )
  .addSubcommand((s) =>
    s
      .setName('list')
      .setDescription('List files')
      .addStringOption((o) => o.setName('dir').setDescription('a folder, e.g. daily').setMaxLength(PATH_MAX)),
  )
  .addSubcommand((s) =>
    s
      .setName('write')
      .setDescription('Replace a file with text or an attached file')
      .addStringOption((o) =>
        o.setName('path').setDescription('e.g. ops.md').setRequired(true).setMaxLength(PATH_MAX).setAutocomplete(true),
      )
      .addStringOption((o) => o.setName('content').setDescription('the new content').setMaxLength(CONTENT_MAX))
      .addAttachmentOption((o) => o.setName('file').setDescription('the new content, as a file')),
  )
  .addSubcommand((s) =>
    s
      .setName('append')
      .setDescription('Append text or an attached file')
      .addStringOption((o) =>
        o
          .setName('path')
          .setDescription('e.g. daily/2026-01-01.md')
          .setRequired(true)
          .setMaxLength(PATH_MAX)
          .setAutocomplete(true),
      )
      .addStringOption((o) => o.setName('content').setDescription('text to append').setMaxLength(CONTENT_MAX))
      .addAttachmentOption((o) => o.setName('file').setDescription('a file to append')),
  )
  .addSubcommand((s) =>
    s
      .setName('edit')
      .setDescription('Edit a file in a form')
      .addStringOption((o) =>
        o.setName('path').setDescription('e.g. ops.md').setRequired(true).setMaxLength(PATH_MAX).setAutocomplete(true),
      ),
  );

function stringOption(inv: CommandInvocation, name: string): string | undefined {
  const v = inv.options[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new UsageError(`Option ${name} must be text.`);
  return v;
}

function requiredPath(inv: CommandInvocation): string {
  const path = stringOption(inv, 'path');
  if (path === undefined || path === '') throw new UsageError('Give a path, e.g. ops.md.');
  return path;
}

/** Discord's limit on an autocomplete choice's name and value. */
const CHOICE_MAX = 100;

/** A path as a choice: itself, or `…` and its end when longer than a choice holds. */
export function choicePath(path: string): string {
  return path.length <= CHOICE_MAX ? path : `…${path.slice(-(CHOICE_MAX - 1))}`;
}

/**
 * The path an option names: a choice shortened by `choicePath` stands for the one file whose
 * shortened path it is; anything else is the path as given (the store checks it).
 */
async function pathOf(inv: CommandInvocation, deps: BotDeps): Promise<string> {
  const path = requiredPath(inv);
  if (!path.startsWith('…')) return path;
  const matches = (await deps.memory.list('')).filter((e) => e.path.length > CHOICE_MAX && choicePath(e.path) === path);
  if (matches.length > 1) throw new UsageError(`${path} matches ${matches.length} files; give the whole path.`);
  return matches[0]?.path ?? path;
}

/** The text to write: exactly one of `content` and `file`, checked against the cap before the store is touched. */
async function contentOf(inv: CommandInvocation, deps: BotDeps): Promise<Buffer> {
  const text = stringOption(inv, 'content');
  const file: OptionValue | undefined = inv.options.file;
  if ((text === undefined) === (file === undefined)) throw new UsageError('Give either content or a file, not both.');
  if (text !== undefined) return Buffer.from(text, 'utf8');
  if (typeof file !== 'object') throw new UsageError('Option file must be an attachment.');
  if (file.size > deps.memory.maxBytes) {
    throw new MemoryError('too-large', `too large: the file is ${file.size} bytes (cap ${deps.memory.maxBytes})`);
  }
  return file.read(deps.memory.maxBytes);
}

// Modal ids carry the path and the content hash (base64url, 43 characters), so whichever
// gateway receives the submit can save it without shared state.
function editId(path: string, sha256hex: string): string {
  return `memory:edit:${Buffer.from(sha256hex, 'hex').toString('base64url')}:${path}`;
}

function parseEditId(customId: string): { path: string; sha256: string } {
  const m = /^memory:edit:([A-Za-z0-9_-]{43}):(.+)$/s.exec(customId);
  if (m === null) throw new UsageError('This form is not valid any more; run /memory edit again.');
  return { sha256: Buffer.from(m[1] as string, 'base64url').toString('hex'), path: m[2] as string };
}

async function read(inv: CommandInvocation, res: Responder, deps: BotDeps): Promise<void> {
  const file = await deps.memory.read(await pathOf(inv, deps));
  const heading = `**${file.path}** (${formatBytes(file.content.length)})`;
  await res.send(textOrFile(heading, file.content.toString('utf8'), basename(file.path), 'md'));
}

async function list(inv: CommandInvocation, res: Responder, deps: BotDeps): Promise<void> {
  const dir = stringOption(inv, 'dir') ?? '';
  const entries = await deps.memory.list(dir);
  if (entries.length === 0) {
    await res.send({ content: `No files in ${dir === '' ? 'the memory' : `**${dir}**`}.` });
    return;
  }
  const width = Math.max(...entries.map((e) => formatBytes(e.size).length));
  const body = entries.map((e) => `${formatBytes(e.size).padStart(width)}  ${e.path}`).join('\n');
  await res.send(textOrFile(`**${dir === '' ? 'memory' : dir}/** — ${entries.length} files`, body, 'memory-list.txt'));
}

async function write(inv: CommandInvocation, res: Responder, deps: BotDeps, mode: 'write' | 'append'): Promise<void> {
  const path = await pathOf(inv, deps);
  const content = await contentOf(inv, deps);
  const result = mode === 'write' ? await deps.memory.write(path, content) : await deps.memory.append(path, content);
  const verb = mode === 'write' ? 'Wrote' : 'Appended to';
  await res.send({
    content: `${verb} **${result.path}** (${formatBytes(mode === 'write' ? result.bytes : content.length)}).`,
  });
}

async function edit(inv: CommandInvocation, res: Responder, deps: BotDeps): Promise<void> {
  const path = await pathOf(inv, deps);
  let file: Awaited<ReturnType<BotDeps['memory']['read']>>;
  try {
    file = await deps.memory.read(path, { waitSeconds: EDIT_LOCK_WAIT_SECONDS });
  } catch (err) {
    if (err instanceof MemoryError && err.code === 'busy') {
      throw new MemoryError('busy', `${path} is busy (someone is writing it); try again in a moment.`);
    }
    throw err;
  }
  const text = file.content.toString('utf8');
  if (text.length > MODAL_MAX) {
    throw new UsageError(
      `${file.path} is over ${MODAL_MAX} characters, more than a form holds; use /memory write with an attached file.`,
    );
  }
  const customId = editId(file.path, file.sha256);
  if (customId.length > CUSTOM_ID_MAX) {
    throw new UsageError('This path is too long to edit in a form; use /memory write with an attached file.');
  }
  const title = `Edit ${file.path}`;
  await res.showModal({
    customId,
    title: title.length > 45 ? `${title.slice(0, 44)}…` : title,
    fields: [
      { id: 'content', label: 'Content', style: 'paragraph', value: text, required: false, maxLength: MODAL_MAX },
    ],
  });
}

async function saveEdit(inv: ModalInvocation, res: Responder, deps: BotDeps): Promise<void> {
  const { path, sha256 } = parseEditId(inv.customId);
  const content = inv.fields.content ?? '';
  const result = await deps.memory.write(path, content, { ifSha256: sha256 });
  await res.send({ content: `Saved **${result.path}** (${formatBytes(result.bytes)}).`, ephemeral: true });
}

async function suggestPaths(inv: AutocompleteInvocation, deps: BotDeps): Promise<Choice[]> {
  const needle = inv.focused.value.toLowerCase();
  const entries = await deps.memory.list('');
  // Discord refuses the whole answer past 25 choices or 100 characters in one of them.
  return entries
    .filter((e) => e.path.toLowerCase().includes(needle))
    .slice(0, 25)
    .map((e) => ({ name: choicePath(e.path), value: choicePath(e.path) }));
}

export const memory: CommandModule = {
  data,
  permission(inv: Invocation): string {
    if (inv.kind === 'command' || inv.kind === 'autocomplete') return `memory ${inv.subcommand ?? ''}`.trim();
    return 'memory edit';
  },
  ack(inv): Ack {
    if (inv.kind === 'command' && inv.subcommand === 'edit') return 'none';
    return inv.kind === 'modal' ? 'defer-ephemeral' : 'defer';
  },
  async execute(inv, res, deps) {
    switch (inv.subcommand) {
      case 'read':
        return read(inv, res, deps);
      case 'list':
        return list(inv, res, deps);
      case 'write':
        return write(inv, res, deps, 'write');
      case 'append':
        return write(inv, res, deps, 'append');
      case 'edit':
        return edit(inv, res, deps);
      default:
        throw new UsageError('Unknown /memory subcommand.');
    }
  },
  autocomplete: suggestPaths,
  modal: saveEdit,
};
