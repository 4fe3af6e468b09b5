// The transport-agnostic shape of an interaction: the discord.js adapter and the console
// adapter (used by `sandbox`) both turn what they receive into an `Invocation` and give the
// handler a `Responder`, so one handler serves both.

import type { AuditTrail } from '../jobs/audit.js';
import type { ReplyTarget } from '../jobs/engine/envelope.js';
import type { DoctorReport, LogsReport, LogsRequest } from '../jobs/host/ops.js';
import type { FleetStatus } from '../jobs/status.js';
import type { Actor } from '../lib/actor.js';
import type { AuthorizationPolicy } from '../lib/authorize.js';
import type { Logger } from '../lib/log.js';
import type { MemoryStore } from '../memory/store.js';
import type { BotJobAdmin, BotJobs } from './engine.js';

export type { Actor };

export interface Attachment {
  kind: 'attachment';
  name: string;
  size: number;
  /** Downloads the content; refuses more than `maxBytes`. */
  read(maxBytes: number): Promise<Buffer>;
}

export type OptionValue = string | number | boolean | Attachment;

interface InvocationBase {
  /** The interaction id: what deduplication and audit lines key on. */
  id: string;
  actor: Actor;
}

export interface CommandInvocation extends InvocationBase {
  kind: 'command';
  command: string;
  subcommand?: string;
  options: Record<string, OptionValue>;
}

export interface AutocompleteInvocation extends InvocationBase {
  kind: 'autocomplete';
  command: string;
  subcommand?: string;
  focused: { name: string; value: string };
}

export interface ButtonInvocation extends InvocationBase {
  kind: 'button';
  customId: string;
}

export interface ModalInvocation extends InvocationBase {
  kind: 'modal';
  customId: string;
  fields: Record<string, string>;
}

export type Invocation = CommandInvocation | AutocompleteInvocation | ButtonInvocation | ModalInvocation;

export interface FileOut {
  name: string;
  data: Buffer;
}

export interface Button {
  id: string;
  label: string;
  style: 'primary' | 'secondary' | 'success' | 'danger';
}

export interface Reply {
  content?: string;
  files?: FileOut[];
  buttons?: Button[];
  ephemeral?: boolean;
}

export interface ModalField {
  id: string;
  label: string;
  style: 'short' | 'paragraph';
  value?: string;
  required?: boolean;
  minLength?: number;
  maxLength?: number;
}

export interface Modal {
  customId: string;
  title: string;
  fields: ModalField[];
}

export interface Choice {
  name: string;
  value: string;
}

export interface Responder {
  /** True once anything was sent (a defer, a reply, a modal). */
  readonly acknowledged: boolean;
  defer(options: { ephemeral: boolean }): Promise<void>;
  /** The reply: the first response, or an edit of it once deferred or replied. */
  send(reply: Reply): Promise<void>;
  /**
   * For a button press: replace the message the button sits on (its buttons go with it);
   * anything else: the same as `send`.
   */
  update(reply: Reply): Promise<void>;
  /** An extra message after the reply. */
  followUp(reply: Reply): Promise<void>;
  showModal(modal: Modal): Promise<void>;
  autocomplete(choices: Choice[]): Promise<void>;
  /**
   * An ephemeral error, whatever was sent before. `unexpected`: not a refusal or a known
   * failure but a crash, shown as "Something went wrong" (the sandbox's scripts tell them apart).
   */
  fail(message: string, options?: { unexpected?: boolean }): Promise<void>;
  /** Where a job's progress goes; keeps what the transport needs to edit this reply later. */
  handOff(): Promise<ReplyTarget>;
}

/** What handlers may use; passed in, never imported, so tests and the sandbox can supply their own. */
export interface BotDeps {
  memory: MemoryStore;
  /** The audit trail (jobs/audit.ts): journal, S3 when configured, the memory copy. */
  audit: AuditTrail;
  policy: AuthorizationPolicy;
  log: Logger;
  /** Origins attachments may be downloaded from. */
  attachmentOrigins: string[];
  now: () => Date;
  /** The job engine, when Redis is configured. */
  jobs?: BotJobs;
  /** Seeing and controlling jobs (/jobs), when Redis is configured. */
  jobAdmin?: BotJobAdmin;
  /**
   * The fleet's status (registry, EC2, SSM, heartbeats, queues), when the fleet is configured;
   * `detail` names the member shown in detail (its build info is read too).
   */
  status?: (detail?: string) => Promise<FleetStatus>;
  /** The registry's member names alone (autocomplete: never waits for the cloud). */
  fleetNames?: () => Promise<string[]>;
  /** A member's host over SSM (/doctor, /logs), when the fleet is configured. */
  host?: HostOps;
}

/** What /doctor and /logs ask of a member's host (jobs/host/ops.ts over the gateway's cloud). */
export interface HostOps {
  doctor(name: unknown): Promise<DoctorReport>;
  logs(request: LogsRequest): Promise<LogsReport>;
}

/** The settings a command's registered definition may depend on. */
export interface CommandSettings {
  instanceTypes: readonly string[];
}

/** How a command acknowledges before its handler runs. */
export type Ack = 'defer' | 'defer-ephemeral' | 'none';

export interface CommandModule {
  /** The slash command's JSON (from @discordjs/builders). */
  data: { name: string; description: string; toJSON(): unknown };
  /** The definition `register-commands` uploads, when it depends on settings (e.g. /spawn's instance types). */
  definitionFor?(settings: CommandSettings): { name: string; toJSON(): unknown };
  /** Permission key of an invocation, e.g. "memory write"; components map to the command they belong to. */
  permission(inv: Invocation): string;
  ack(inv: CommandInvocation | ButtonInvocation | ModalInvocation): Ack;
  execute(inv: CommandInvocation, res: Responder, deps: BotDeps): Promise<void>;
  autocomplete?(inv: AutocompleteInvocation, deps: BotDeps): Promise<Choice[]>;
  button?(inv: ButtonInvocation, res: Responder, deps: BotDeps): Promise<void>;
  modal?(inv: ModalInvocation, res: Responder, deps: BotDeps): Promise<void>;
}
