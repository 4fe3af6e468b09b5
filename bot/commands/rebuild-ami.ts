// /rebuild-ami [rev] [rollout:none|canary|all]: a new base image from a commit (the
// rebuild-ami job), optionally rolled out. Without a rollout it is queued at once; a rollout
// replaces members, so — as /replace — it asks first, with buttons only the requester can
// press, expiring after five minutes. The buttons carry what a press needs —
// `rebuild-ami:<confirm|cancel>:<rollout>:<userId>:<expiresAtSeconds>[:<rev>]` — so any gateway
// can handle the press without shared state; the job checks everything again when it runs.
import { SlashCommandBuilder } from '@discordjs/builders';
import { checkRev } from '../../jobs/github/revision.js';
import { OperationError, RefusedError, UsageError } from '../../lib/errors.js';
import type { BotDeps, ButtonInvocation, CommandModule, Responder } from '../types.js';
import { DESTRUCTIVE_DEFAULT_PERMISSIONS, REV_MAX } from './options.js';
import { CONFIRM_SECONDS } from './replace.js';

const ROLLOUTS = ['none', 'canary', 'all'] as const;
type Rollout = (typeof ROLLOUTS)[number];
/** A button id holds at most 100 characters: the rev rides in it, so at most a full sha. */
const CONFIRM_REV_MAX = 40;

export const data = new SlashCommandBuilder()
  .setName('rebuild-ami')
  .setDescription('Build a new base image (AMI) from a revision, optionally rolled out')
  .setDefaultMemberPermissions(DESTRUCTIVE_DEFAULT_PERMISSIONS)
  .addStringOption((o) =>
    o.setName('rev').setDescription('sha, branch or tag (default: the project branch)').setMaxLength(REV_MAX),
  )
  .addStringOption((o) =>
    o
      .setName('rollout')
      .setDescription('replace members with it afterwards (asks for confirmation)')
      .addChoices(
        { name: 'none: build and register only', value: 'none' },
        { name: 'canary: the first member', value: 'canary' },
        { name: 'all: every member, one at a time', value: 'all' },
      ),
  );

interface Pending {
  decision: 'confirm' | 'cancel';
  rollout: Exclude<Rollout, 'none'>;
  userId: string;
  expiresAt: number;
  rev?: string;
}

function buttonId(decision: Pending['decision'], p: Omit<Pending, 'decision'>): string {
  return `rebuild-ami:${decision}:${p.rollout}:${p.userId}:${p.expiresAt}${p.rev === undefined ? '' : `:${p.rev}`}`;
}

function parseButton(customId: string): Pending {
  const parts = customId.split(':');
  const [, decision, rollout, userId, expires, rev] = parts;
  const expiresAt = Number(expires);
  const revOk = rev === undefined || (rev.length <= CONFIRM_REV_MAX && safeRev(rev));
  if (
    parts.length > 6 ||
    (decision !== 'confirm' && decision !== 'cancel') ||
    (rollout !== 'canary' && rollout !== 'all') ||
    !/^\d{1,20}$/.test(userId ?? '') ||
    !Number.isSafeInteger(expiresAt) ||
    !revOk
  ) {
    throw new UsageError('This button is not a rebuild-ami confirmation.');
  }
  return { decision, rollout, userId: userId as string, expiresAt, ...(rev === undefined ? {} : { rev }) };
}

function safeRev(rev: string): boolean {
  try {
    checkRev(rev);
    return true;
  } catch {
    return false;
  }
}

function from(rev: string | undefined): string {
  return rev === undefined ? 'the project branch' : `\`${rev}\``;
}

async function enqueue(
  deps: BotDeps,
  res: Responder,
  inv: { id: string; actor: ButtonInvocation['actor'] },
  request: { rev?: string; rollout: Rollout },
) {
  if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
  return deps.jobs.enqueue({
    type: 'rebuild-ami',
    data: { ...(request.rev === undefined ? {} : { rev: request.rev }), rollout: request.rollout },
    actor: inv.actor,
    requestId: inv.id,
    reply: await res.handOff(),
  });
}

export const rebuildAmi: CommandModule = {
  data,
  permission: () => 'rebuild-ami',
  // Without a rollout the reply is the job's (deferred, then its progress edits it); a
  // confirmation and a press answer at once, so a refusal of them stays ephemeral.
  ack: (inv) => (inv.kind === 'command' && (inv.options.rollout ?? 'none') === 'none' ? 'defer' : 'none'),
  async execute(inv, res, deps) {
    if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    const rev = inv.options.rev === undefined ? undefined : checkRev(String(inv.options.rev));
    const rollout = (inv.options.rollout === undefined ? 'none' : String(inv.options.rollout)) as Rollout;
    if (!ROLLOUTS.includes(rollout)) throw new UsageError('rollout: none, canary or all.');
    if (rollout === 'none') {
      const queued = await enqueue(deps, res, inv, { rev, rollout });
      await res.send({ content: `⏳ Rebuilding the image from ${from(rev)} — job \`${queued.jobId}\`` });
      return;
    }
    if (rev !== undefined && rev.length > CONFIRM_REV_MAX) {
      throw new UsageError(`A rollout's rev is at most ${CONFIRM_REV_MAX} characters: give the full sha.`);
    }
    const pending = {
      rollout,
      userId: inv.actor.userId,
      expiresAt: Math.floor(deps.now().getTime() / 1000) + CONFIRM_SECONDS,
      ...(rev === undefined ? {} : { rev }),
    };
    const who = rollout === 'canary' ? 'the canary (the first member)' : 'every member, one at a time,';
    await res.send({
      content:
        `⚠️ Rebuild the image from ${from(rev)} and replace ${who} with it? Each replaced host is destroyed. ` +
        `Only <@${pending.userId}> can confirm, until <t:${pending.expiresAt}:t>.`,
      buttons: [
        { id: buttonId('confirm', pending), label: `Rebuild and roll out (${rollout})`, style: 'danger' },
        { id: buttonId('cancel', pending), label: 'Cancel', style: 'secondary' },
      ],
    });
  },
  async button(inv, res, deps) {
    const pending = parseButton(inv.customId);
    if (inv.actor.userId !== pending.userId) {
      throw new RefusedError(`Only <@${pending.userId}>, who asked, can answer this rebuild confirmation.`);
    }
    if (deps.now().getTime() / 1000 > pending.expiresAt) {
      const rev = pending.rev === undefined ? '' : ` rev:${pending.rev}`;
      throw new UsageError(`This confirmation expired: run /rebuild-ami${rev} rollout:${pending.rollout} again.`);
    }
    if (pending.decision === 'cancel') {
      await res.update({ content: 'Rebuild cancelled.', buttons: [] });
      return;
    }
    // Acknowledge first (the relay may edit this message as soon as the job starts).
    await res.update({
      content: `⏳ Rebuilding the image from ${from(pending.rev)}, rollout ${pending.rollout}…`,
      buttons: [],
    });
    await enqueue(deps, res, inv, { rev: pending.rev, rollout: pending.rollout });
  },
};
