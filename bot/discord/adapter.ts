// discord.js ⇄ the transport-agnostic Invocation/Responder. Nothing here decides anything:
// it maps fields and calls.
import {
  ActionRowBuilder,
  AttachmentBuilder,
  ButtonBuilder,
  ButtonStyle,
  type CommandInteractionOption,
  type Attachment as DiscordAttachment,
  type Interaction,
  MessageFlags,
  ModalBuilder,
  type ModalSubmitInteraction,
  type RepliableInteraction,
  TextInputBuilder,
  TextInputStyle,
} from 'discord.js';
import type { ReplyTarget } from '../../jobs/engine/envelope.js';
import { OperationError } from '../../lib/errors.js';
import type { TokenStore } from '../engine.js';
import type { Actor, Attachment, Choice, Invocation, Modal, OptionValue, Reply, Responder } from '../types.js';

const BUTTON_STYLES = {
  primary: ButtonStyle.Primary,
  secondary: ButtonStyle.Secondary,
  success: ButtonStyle.Success,
  danger: ButtonStyle.Danger,
} as const;

function actorOf(interaction: Interaction): Actor {
  const member = interaction.member;
  let roles: string[] = [];
  if (member) roles = Array.isArray(member.roles) ? member.roles : [...member.roles.cache.keys()];
  return {
    userId: interaction.user.id,
    userName: interaction.user.username,
    roles,
    guildId: interaction.guildId,
    channelId: interaction.channelId ?? '',
  };
}

function attachmentOf(att: DiscordAttachment, origins: string[]): Attachment {
  return {
    kind: 'attachment',
    name: att.name,
    size: att.size,
    read: (maxBytes) => download(att.url, maxBytes, origins),
  };
}

/** Downloads an attachment from an allowed origin only, never more than `maxBytes`. */
async function download(url: string, maxBytes: number, origins: string[]): Promise<Buffer> {
  if (!origins.includes(new URL(url).origin)) throw new OperationError('The attachment does not come from Discord.');
  const response = await fetch(url);
  if (!response.ok || response.body === null)
    throw new OperationError(`Could not download the attachment (HTTP ${response.status}).`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += chunk.length;
    if (size > maxBytes) throw new OperationError(`The attachment is over ${maxBytes} bytes.`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

function optionsOf(data: readonly CommandInteractionOption[], origins: string[]): Record<string, OptionValue> {
  const out: Record<string, OptionValue> = {};
  for (const opt of data) {
    if (opt.attachment) out[opt.name] = attachmentOf(opt.attachment, origins);
    else if (opt.value !== undefined && opt.value !== null) out[opt.name] = opt.value;
  }
  return out;
}

/** The Invocation of an interaction, or null for kinds the bot does not handle. */
export function invocationOf(interaction: Interaction, origins: string[]): Invocation | null {
  const base = { id: interaction.id, actor: actorOf(interaction) };
  if (interaction.isChatInputCommand()) {
    const sub = interaction.options.getSubcommand(false) ?? undefined;
    const data = interaction.options.data;
    const leaf = sub !== undefined ? (data[0]?.options ?? []) : data;
    return {
      ...base,
      kind: 'command',
      command: interaction.commandName,
      subcommand: sub,
      options: optionsOf(leaf, origins),
    };
  }
  if (interaction.isAutocomplete()) {
    const focused = interaction.options.getFocused(true);
    return {
      ...base,
      kind: 'autocomplete',
      command: interaction.commandName,
      subcommand: interaction.options.getSubcommand(false) ?? undefined,
      focused: { name: focused.name, value: String(focused.value) },
    };
  }
  if (interaction.isButton()) return { ...base, kind: 'button', customId: interaction.customId };
  if (interaction.isModalSubmit())
    return { ...base, kind: 'modal', customId: interaction.customId, fields: fieldsOf(interaction) };
  return null;
}

function fieldsOf(interaction: ModalSubmitInteraction): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [id, field] of interaction.fields.fields) {
    if ('value' in field && typeof field.value === 'string') out[id] = field.value;
  }
  return out;
}

/**
 * Every message the bot sends pings nobody: a file named `@everyone.md`, a job's text or a
 * member's note quoted back must not notify a guild (Discord parses mentions in content
 * unless told not to).
 */
export const NO_MENTIONS = { parse: [] };

function payload(reply: Reply) {
  return {
    content: reply.content ?? '',
    allowedMentions: NO_MENTIONS,
    files: (reply.files ?? []).map((f) => new AttachmentBuilder(f.data, { name: f.name })),
    components:
      reply.buttons && reply.buttons.length > 0
        ? [
            new ActionRowBuilder<ButtonBuilder>().addComponents(
              reply.buttons.map((b) =>
                new ButtonBuilder().setCustomId(b.id).setLabel(b.label).setStyle(BUTTON_STYLES[b.style]),
              ),
            ),
          ]
        : [],
  };
}

function modalOf(modal: Modal): ModalBuilder {
  const builder = new ModalBuilder().setCustomId(modal.customId).setTitle(modal.title);
  for (const f of modal.fields) {
    const input = new TextInputBuilder()
      .setCustomId(f.id)
      .setLabel(f.label)
      .setStyle(f.style === 'paragraph' ? TextInputStyle.Paragraph : TextInputStyle.Short)
      .setRequired(f.required ?? true);
    if (f.value !== undefined && f.value !== '') input.setValue(f.value);
    if (f.maxLength !== undefined) input.setMaxLength(f.maxLength);
    if (f.minLength !== undefined) input.setMinLength(f.minLength);
    builder.addComponents(new ActionRowBuilder<TextInputBuilder>().addComponents(input));
  }
  return builder;
}

export function responderFor(interaction: Interaction, tokens?: TokenStore): Responder {
  return new InteractionResponder(interaction, tokens);
}

/**
 * A class, not an object literal with an `acknowledged` getter: in the worker's job context
 * (worker.ts, RunContext) such a literal's own getter kept what it closes over alive through
 * young-generation GCs into the old generation; here that would be each interaction.
 */
class InteractionResponder implements Responder {
  private deferred = false;
  private replied = false;
  private ephemeralAck = false;
  private readonly repliable: RepliableInteraction;

  constructor(
    private readonly interaction: Interaction,
    private readonly tokens: TokenStore | undefined,
  ) {
    this.repliable = interaction as RepliableInteraction;
  }

  get acknowledged(): boolean {
    return this.deferred || this.replied;
  }

  async defer({ ephemeral }: { ephemeral: boolean }): Promise<void> {
    this.ephemeralAck = ephemeral;
    await this.repliable.deferReply(ephemeral ? { flags: MessageFlags.Ephemeral } : {});
    this.deferred = true;
  }

  async update(reply: Reply): Promise<void> {
    const interaction = this.interaction;
    if (interaction.isMessageComponent() && !this.deferred && !this.replied) {
      await interaction.update(payload(reply));
      this.replied = true;
      return;
    }
    await this.send(reply);
  }

  async send(reply: Reply): Promise<void> {
    if (this.deferred || this.replied) {
      await this.repliable.editReply(payload(reply));
    } else {
      await this.repliable.reply({ ...payload(reply), flags: reply.ephemeral ? MessageFlags.Ephemeral : undefined });
    }
    this.replied = true;
  }

  async followUp(reply: Reply): Promise<void> {
    await this.repliable.followUp({ ...payload(reply), flags: reply.ephemeral ? MessageFlags.Ephemeral : undefined });
  }

  async showModal(modal: Modal): Promise<void> {
    const interaction = this.interaction;
    if (!interaction.isChatInputCommand() && !interaction.isButton())
      throw new OperationError('Cannot open a form here.');
    await interaction.showModal(modalOf(modal));
    this.replied = true;
  }

  async autocomplete(choices: Choice[]): Promise<void> {
    if (this.interaction.isAutocomplete()) await this.interaction.respond(choices);
  }

  async handOff(): Promise<ReplyTarget> {
    const interaction = this.interaction;
    const channelId = interaction.channelId ?? '';
    if (this.tokens === undefined) return { channelId };
    await this.tokens.save(interaction.id, {
      appId: interaction.applicationId,
      token: this.repliable.token,
    });
    return { channelId, interactionId: interaction.id };
  }

  async fail(message: string): Promise<void> {
    const text = `⚠️ ${message}`;
    const repliable = this.repliable;
    if (!this.deferred && !this.replied) {
      await repliable.reply({ content: text, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });
      this.replied = true;
    } else if (this.deferred && this.ephemeralAck) {
      await repliable.editReply({ content: text, files: [], components: [], allowedMentions: NO_MENTIONS });
    } else {
      // A public reply or "thinking…" cannot turn ephemeral: remove it, say it privately.
      if (this.deferred && !this.replied) await repliable.deleteReply().catch(() => {});
      await repliable.followUp({ content: text, flags: MessageFlags.Ephemeral, allowedMentions: NO_MENTIONS });
    }
  }
}
