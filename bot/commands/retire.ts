// /retire name: asks for confirmation first; only the confirm button queues the retire job,
// whose progress then edits the press's reply (through the relay).
//
// The buttons carry everything a press needs — `retire:<confirm|cancel>:<name>:<userId>:
// <expiresAtSeconds>` — so any gateway can handle the press without shared state. Only the
// user who asked may press them, and only until they expire; the job checks everything
// again (the registry, a healthy host left) when it runs.
//
// The same permission answers two other kinds of button: an agent's question
// (agent-answer.ts) and a health-sweep alert's stray (stray-answer.ts).
import { SlashCommandBuilder } from '@discordjs/builders';
import { instanceName } from '../../lib/config.js';
import { OperationError, RefusedError, UsageError } from '../../lib/errors.js';
import type { ButtonInvocation, CommandModule, Responder } from '../types.js';
import { agentQuestion, answerAgent } from './agent-answer.js';
import { DESTRUCTIVE_DEFAULT_PERMISSIONS, NAME_MAX, NAME_MIN } from './options.js';
import { answerStray, strayPress } from './stray-answer.js';

/** Long enough to read the question, short enough that a forgotten button goes stale. */
export const CONFIRM_SECONDS = 5 * 60;

export const data = new SlashCommandBuilder()
  .setName('retire')
  .setDescription('Destroy a CLAWDINATOR (asks for confirmation)')
  .setDefaultMemberPermissions(DESTRUCTIVE_DEFAULT_PERMISSIONS)
  .addStringOption((o) =>
    o
      .setName('name')
      .setDescription('the member to retire')
      .setRequired(true)
      .setMinLength(NAME_MIN)
      .setMaxLength(NAME_MAX),
  );

interface Pending {
  action: 'confirm' | 'cancel';
  name: string;
  userId: string;
  expiresAt: number;
}

function buttonId(action: Pending['action'], p: Omit<Pending, 'action'>): string {
  return `retire:${action}:${p.name}:${p.userId}:${p.expiresAt}`;
}

function parseButton(customId: string): Pending {
  const [, action, name, userId, expires] = customId.split(':');
  const expiresAt = Number(expires);
  if (
    (action !== 'confirm' && action !== 'cancel') ||
    !instanceName.safeParse(name).success ||
    !/^\d{1,20}$/.test(userId ?? '') ||
    !Number.isSafeInteger(expiresAt)
  ) {
    throw new UsageError('This button is not a retire confirmation.');
  }
  return { action, name: name as string, userId: userId as string, expiresAt };
}

export const retire: CommandModule = {
  data,
  permission: () => 'retire',
  // Nothing slow before the reply; a refused press must answer ephemerally, not edit a
  // public "thinking…".
  ack: () => 'none',
  async execute(inv, res, deps) {
    // A button that could not queue anything would only disappoint when pressed.
    if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    const name = String(inv.options.name);
    // The name goes into the buttons' ids: it must be one the job would accept.
    if (!instanceName.safeParse(name).success) throw new UsageError(`${name} is not a fleet member's name.`);
    const pending = {
      name,
      userId: inv.actor.userId,
      expiresAt: Math.floor(deps.now().getTime() / 1000) + CONFIRM_SECONDS,
    };
    await res.send({
      content:
        `⚠️ Retire **${name}**? Its host is destroyed and it leaves the registry. ` +
        `Only <@${pending.userId}> can confirm, until <t:${pending.expiresAt}:t>.`,
      buttons: [
        { id: buttonId('confirm', pending), label: `Retire ${name}`, style: 'danger' },
        { id: buttonId('cancel', pending), label: 'Cancel', style: 'secondary' },
      ],
    });
  },
  async button(inv: ButtonInvocation, res: Responder, deps) {
    // An agent's question in the ops channel: any human allowed /retire answers it.
    const asked = agentQuestion(inv, 'retire');
    if (asked !== null) return answerAgent(asked, inv, res, deps);
    // A health-sweep alert's stray, or its confirmation: /retire's permission, stray-cleanup's job.
    const stray = strayPress(inv);
    if (stray !== null) return answerStray(stray, inv, res, deps);
    const pending = parseButton(inv.customId);
    if (inv.actor.userId !== pending.userId) {
      throw new RefusedError(`Only <@${pending.userId}>, who asked, can answer this retire confirmation.`);
    }
    if (deps.now().getTime() / 1000 > pending.expiresAt) {
      throw new UsageError(`This confirmation expired: run /retire name:${pending.name} again.`);
    }
    if (pending.action === 'cancel') {
      await res.update({ content: `Retire of **${pending.name}** cancelled.`, buttons: [] });
      return;
    }
    if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    // Acknowledge first (the relay may edit this message as soon as the job starts); the
    // confirmation becomes the job's progress. The press is the request: a second press is
    // another interaction, and the job refuses a name that is no longer in the registry.
    await res.update({ content: `⏳ Retiring **${pending.name}**…`, buttons: [] });
    await deps.jobs.enqueue({
      type: 'retire',
      data: { name: pending.name },
      actor: inv.actor,
      requestId: inv.id,
      reply: await res.handOff(),
    });
  },
};
