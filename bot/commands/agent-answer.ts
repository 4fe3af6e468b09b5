// A press on an agent's question in the ops channel ("clawdinator-2 asks to retire
// clawdinator-4"), for /retire and /replace. The dispatcher has already checked that the
// presser is a human the policy allows that command here; this checks the expiry, and the
// gateway records the answer signed with its key (the waiting job verifies it). The press
// replaces the question with the answer; the job's progress and result then edit it.
import { type ApprovalButton, parseApprovalButton } from '../../jobs/engine/approval.js';
import { OperationError, UsageError } from '../../lib/errors.js';
import type { BotDeps, ButtonInvocation, Responder } from '../types.js';

/** The press's parts when the button is an agent's question; null for the human flow's. */
export function agentQuestion(inv: ButtonInvocation, action: ApprovalButton['action']): ApprovalButton | null {
  const press = parseApprovalButton(inv.customId);
  return press !== null && press.action === action ? press : null;
}

export async function answerAgent(
  press: ApprovalButton,
  inv: ButtonInvocation,
  res: Responder,
  deps: BotDeps,
): Promise<void> {
  const { action } = press;
  const now = deps.now().getTime();
  if (now / 1000 > press.expiresAt) {
    throw new UsageError(`This confirmation expired: the agent's ${action} was not confirmed, and nothing changed.`);
  }
  const decide = deps.jobs?.decide;
  if (decide === undefined) throw new OperationError('This gateway cannot sign an answer to an agent’s request.');
  // The press counts only if it is one of the job's signed question's buttons (approval.ts).
  const result = await decide({ ...press, customId: inv.customId, actor: inv.actor, at: now });
  if (result.outcome === 'answered') throw new UsageError(`This request was already answered by ${result.by}.`);
  if (result.outcome === 'gone') throw new UsageError('This request is no longer waiting for an answer.');
  const who = `<@${inv.actor.userId}>`;
  const asked = `${result.host}'s ${action} of **${result.name}**`;
  await res.update({
    content:
      press.decision === 'confirm'
        ? `✅ ${who} confirmed ${asked}: it goes ahead.`
        : `✖️ ${who} cancelled ${asked}: nothing changes.`,
    buttons: [],
  });
}
