// /deploy [rev] [target]: the fast lane (the deploy job). The rev (default: the head of the
// project's branch) is checked by shape here and resolved to a full sha by the job before it
// touches any host; the target is `all` (canary first) or one member. Not destructive — a
// member whose switch fails is rolled back to what it ran — so no confirmation: the reply is
// the job's, and its progress edits it. A target not in the registry is refused before
// queueing. A deploy already running answers with its sha, its progress and its job.
import { SlashCommandBuilder } from '@discordjs/builders';
import { checkRev } from '../../jobs/github/revision.js';
import { checkTarget } from '../../jobs/host/ops.js';
import { OperationError, UsageError } from '../../lib/errors.js';
import type { CommandModule } from '../types.js';
import { DESTRUCTIVE_DEFAULT_PERMISSIONS, NAME_MAX, REV_MAX } from './options.js';

export const data = new SlashCommandBuilder()
  .setName('deploy')
  .setDescription('Switch the fleet to a revision of this project, canary first, rolled back on failure')
  .setDefaultMemberPermissions(DESTRUCTIVE_DEFAULT_PERMISSIONS)
  .addStringOption((o) =>
    o.setName('rev').setDescription('sha, branch or tag (default: the project branch)').setMaxLength(REV_MAX),
  )
  .addStringOption((o) =>
    o.setName('target').setDescription('all (default, canary first) or one member').setMaxLength(NAME_MAX),
  );

export const deploy: CommandModule = {
  data,
  permission: () => 'deploy',
  ack: () => 'defer',
  async execute(inv, res, deps) {
    if (deps.jobs === undefined) throw new OperationError('The job engine is not configured on this gateway.');
    const rev = inv.options.rev === undefined ? undefined : checkRev(String(inv.options.rev));
    const target = checkTarget(inv.options.target);
    // An unknown member is refused here, in one line, rather than by the job after it queued.
    // The job checks again against the registry it reads when it runs.
    if (target !== 'all' && deps.fleetNames !== undefined && !(await deps.fleetNames()).includes(target)) {
      throw new UsageError(`${target} is not in the fleet registry; /status lists the members.`);
    }
    const queued = await deps.jobs.enqueue({
      type: 'deploy',
      data: { ...(rev === undefined ? {} : { rev }), target },
      actor: inv.actor,
      requestId: inv.id,
      reply: await res.handOff(),
    });
    const what = rev === undefined ? 'the project branch' : `\`${rev}\``;
    const where = target === 'all' ? 'the fleet, canary first' : `**${target}**`;
    await res.send({ content: `⏳ Deploying ${what} to ${where} — job \`${queued.jobId}\`` });
  },
};
