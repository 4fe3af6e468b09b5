// /replace name [ami]: asks for confirmation first; only the confirm button queues the
// replace job, whose progress then edits the press's reply (through the relay).
//
// The buttons carry everything a press needs — `replace:<confirm|cancel>:<name>:<userId>:
// <expiresAtSeconds>[:<ami>]` — so any gateway can handle the press without shared state.
// Only the user who asked may press them, and only until they expire; the job checks
// everything again (the registry, the AMI) when it runs.
import { SlashCommandBuilder } from '@discordjs/builders';
import { instanceName } from '../../lib/config.js';
import { OperationError, RefusedError, UsageError } from '../../lib/errors.js';
import type { ButtonInvocation, CommandModule, Responder } from '../types.js';
import { agentQuestion, answerAgent } from './agent-answer.js';
import { AMI_MAX, AMI_MIN, DESTRUCTIVE_DEFAULT_PERMISSIONS, NAME_MAX, NAME_MIN } from './options.js';

/** Long enough to read the question, short enough that a forgotten button goes stale. */
export const CONFIRM_SECONDS = 5 * 60;

/** What the replace job accepts as an AMI id. */
const AMI_ID = /^ami-[0-9a-f]{8,17}$/;

export const data = new SlashCommandBuilder()
  .setName('replace')
  .setDescription('Replace a CLAWDINATOR with a new instance (asks for confirmation)')
  .setDefaultMemberPermissions(DESTRUCTIVE_DEFAULT_PERMISSIONS)
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('the member to replace')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  )
  .addStringOption((o) =>
    o.setName('ami').setDescription('AMI id (default: the one recorded)').setMinLength(AMI_MIN).setMaxLength(AMI_MAX),
  );

interface Pending {
  action: 'confirm' | 'cancel';
  name: string;
  userId: string;
  expiresAt: number;
  ami?: string;
}

function buttonId(action: Pending['action'], p: Omit<Pending, 'action'>): string {
  const ami = p.ami === undefined ? '' : `:${p.ami}`;
  return `replace:${action}:${p.name}:${p.userId}:${p.expiresAt}${ami}`;
}

function parseButton(customId: string): Pending {
  const parts = customId.split(':');
  const [, action, name, userId, expires, ami] = parts;
  const expiresAt = Number(expires);
  if (
    parts.length > 6 ||
    (action !== 'confirm' && action !== 'cancel') ||
    !instanceName.safeParse(name).success ||
    !/^\d{1,20}$/.test(userId ?? '') ||
    !Number.isSafeInteger(expiresAt) ||
    (ami !== undefined && !AMI_ID.test(ami))
  ) {
    throw new UsageError('This button is not a replace confirmation.');
  }
  return { action, name: name as string, userId: userId as string, expiresAt, ...(ami === undefined ? {} : { ami }) };
}

export const replace: CommandModule = {
  data,
  permission: () => 'replace',
  // Nothing slow before the reply; a refused press must answer ephemerally, not edit a
  // public "thinking…".
  ack: () => 'none',
  async execute(inv, res, deps) {
    // A button that could not queue anything would only disappoint when pressed.
    if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    const name = String(inv.options.name);
    // The name and the AMI go into the buttons' ids: they must be ones the job would accept.
    if (!instanceName.safeParse(name).success) throw new UsageError(`${name} is not a fleet member's name.`);
    const ami = inv.options.ami === undefined ? undefined : String(inv.options.ami);
    if (ami !== undefined && !AMI_ID.test(ami)) throw new UsageError(`${ami} is not an AMI id.`);
    const pending = {
      name,
      userId: inv.actor.userId,
      expiresAt: Math.floor(deps.now().getTime() / 1000) + CONFIRM_SECONDS,
      ...(ami === undefined ? {} : { ami }),
    };
    const onto = ami === undefined ? 'the AMI recorded in the registry' : `**${ami}**`;
    await res.send({
      content:
        `⚠️ Replace **${name}** with a new instance from ${onto}? Its current host is destroyed. ` +
        `Only <@${pending.userId}> can confirm, until <t:${pending.expiresAt}:t>.`,
      buttons: [
        { id: buttonId('confirm', pending), label: `Replace ${name}`, style: 'danger' },
        { id: buttonId('cancel', pending), label: 'Cancel', style: 'secondary' },
      ],
    });
  },
  async button(inv: ButtonInvocation, res: Responder, deps) {
    // An agent's question in the ops channel: any human allowed /replace answers it.
    const asked = agentQuestion(inv, 'replace');
    if (asked !== null) return answerAgent(asked, inv, res, deps);
    const pending = parseButton(inv.customId);
    if (inv.actor.userId !== pending.userId) {
      throw new RefusedError(`Only <@${pending.userId}>, who asked, can answer this replace confirmation.`);
    }
    if (deps.now().getTime() / 1000 > pending.expiresAt) {
      const ami = pending.ami === undefined ? '' : ` ami:${pending.ami}`;
      throw new UsageError(`This confirmation expired: run /replace name:${pending.name}${ami} again.`);
    }
    if (pending.action === 'cancel') {
      await res.update({ content: `Replace of **${pending.name}** cancelled.`, buttons: [] });
      return;
    }
    if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    // Acknowledge first (the relay may edit this message as soon as the job starts); the
    // confirmation becomes the job's progress.
    await res.update({ content: `⏳ Replacing **${pending.name}**…`, buttons: [] });
    await deps.jobs.enqueue({
      type: 'replace',
      data: { name: pending.name, ...(pending.ami === undefined ? {} : { ami: pending.ami }) },
      actor: inv.actor,
      requestId: inv.id,
      reply: await res.handOff(),
    });
  },
};
