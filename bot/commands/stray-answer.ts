// A press on the button under a health-sweep alert about a stray ("stray: i-… is tagged
// app=clawdinator but not in the registry", "clawdinator-3 is in the registry, but EC2 has
// no instance of it"). The buttons sit under /retire, the stray-cleanup job's permission: the
// dispatcher has already refused anyone the policy does not allow /retire here.
//
// The alert's button counts only as the sweep's signed offer's (stray-offer.ts): its id, in
// its channel, before its expiry. It asks the presser to confirm, as /retire does (only that
// user, for 5 minutes); the confirm takes the offer — the first one wins, later presses are
// told — and queues stray-cleanup as the presser, whose progress edits the confirmation. The
// job checks everything again (a stray a member owns now, a member that came back: refused).
import {
  parseStrayButton,
  parseStrayConfirm,
  type StrayConfirmButton,
  strayConfirmId,
  type VerifiedOffer,
} from '../../jobs/engine/stray-offer.js';
import { OperationError, RefusedError, UsageError } from '../../lib/errors.js';
import type { BotDeps, ButtonInvocation, Responder } from '../types.js';

/** As long as /retire's own confirmation. */
export const STRAY_CONFIRM_SECONDS = 5 * 60;

const GONE =
  'This stray is no longer offered for clean-up (handled already, expired, or not one the health sweep reported).';

export type StrayPress =
  | { kind: 'offer'; target: string; expiresAt: number }
  | ({ kind: 'confirm' } & StrayConfirmButton);

/** The press's parts when the button is a stray's (the alert's or its confirmation's); null otherwise. */
export function strayPress(inv: ButtonInvocation): StrayPress | null {
  const offer = parseStrayButton(inv.customId);
  if (offer !== null) return { kind: 'offer', ...offer };
  const confirm = parseStrayConfirm(inv.customId);
  return confirm === null ? null : { kind: 'confirm', ...confirm };
}

export async function answerStray(
  press: StrayPress,
  inv: ButtonInvocation,
  res: Responder,
  deps: BotDeps,
): Promise<void> {
  const offers = deps.jobs?.strays;
  if (offers === undefined) throw new OperationError('This gateway cannot check the health sweep’s offers.');
  const now = deps.now().getTime();
  /** The offer as the sweep signed it, if this press may still act on it. */
  const current = async (): Promise<VerifiedOffer> => {
    const read = await offers.read(press.target);
    if (read === null || read.offer.channelId !== inv.actor.channelId || now > read.offer.expiresAt * 1000) {
      throw new UsageError(GONE);
    }
    return read;
  };

  if (press.kind === 'offer') {
    const { offer } = await current();
    if (offer.expiresAt !== press.expiresAt || !offer.buttons.some((b) => b.id === inv.customId)) {
      throw new UsageError(GONE);
    }
    const expiresAt = Math.floor(now / 1000) + STRAY_CONFIRM_SECONDS;
    const answer = (decision: StrayConfirmButton['decision']) =>
      strayConfirmId({ decision, target: offer.target, userId: inv.actor.userId, expiresAt });
    const what =
      offer.action === 'terminate'
        ? `Terminate **${offer.target}** (${offer.instanceName ?? 'no Name tag'}), an instance tagged as ours that the registry does not know?`
        : `Retire **${offer.target}** from the registry? EC2 has no instance of it: its stack, entry, host key and bootstrap bundle are removed.`;
    await res.send({
      content: `⚠️ ${what} Only <@${inv.actor.userId}> can confirm, until <t:${expiresAt}:t>.`,
      buttons: [
        {
          id: answer('confirm'),
          label: offer.action === 'terminate' ? `Terminate ${offer.target}` : `Retire ${offer.target}`,
          style: 'danger',
        },
        { id: answer('cancel'), label: 'Cancel', style: 'secondary' },
      ],
    });
    return;
  }

  if (inv.actor.userId !== press.userId) {
    throw new RefusedError(`Only <@${press.userId}>, who asked, can answer this clean-up confirmation.`);
  }
  if (now / 1000 > press.expiresAt) {
    throw new UsageError('This confirmation expired: press the alert’s button again.');
  }
  if (press.decision === 'cancel') {
    await res.update({ content: `Clean-up of **${press.target}** cancelled: nothing changed.`, buttons: [] });
    return;
  }
  if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
  const read = await current();
  if (!(await offers.take(read))) throw new UsageError('This stray was already taken care of by someone else.');
  // Acknowledge first (the relay edits this message once the job starts); the press is the request.
  await res.update({ content: `⏳ Cleaning up **${press.target}**…`, buttons: [] });
  try {
    await deps.jobs.enqueue({
      type: 'stray-cleanup',
      data: { target: press.target },
      actor: inv.actor,
      requestId: inv.id,
      reply: await res.handOff(),
    });
  } catch (err) {
    // Nothing was queued: the alert's button works again.
    await offers.restore(read);
    throw err;
  }
}
