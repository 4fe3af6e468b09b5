// The weekly image retention (CLAWDINATOR_AMI_PRUNE_CRON, keeping CLAWDINATOR_AMI_KEEP): the
// same prune as `clawdinator ami prune --keep N` (jobs/ami/retention.ts) — never an image a
// member runs or the newest — posting what it removed to the ops channel.
import { UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { FleetRegistry } from '../../infra/registry.js';
import type { AmiDeps } from '../ami/deps.js';
import { formatPrune, pruneImages } from '../ami/retention.js';
import type { JobType } from '../engine/job-type.js';
import { publish } from '../engine/notify.js';

export const AMI_PRUNE = 'ami-prune';

const dataSchema = z
  .object({
    /** Default: the setting (CLAWDINATOR_AMI_KEEP) of the worker that runs it. */
    keep: z.number().int().min(1).max(100).optional(),
  })
  .strict();

export interface AmiPruneDeps {
  redis: Redis;
  registry: () => Promise<FleetRegistry>;
  ami?: AmiDeps;
  opsChannelId?: string;
}

export function amiPruneJob(deps: AmiPruneDeps): JobType<typeof dataSchema> {
  return {
    name: AMI_PRUNE,
    version: 1,
    schema: dataSchema,
    permission: 'rebuild-ami',
    scheduled: true,
    attempts: 2,
    async run(ctx) {
      const { ami } = deps;
      if (ami === undefined) throw new UnrecoverableError('ami-prune: this worker has no image pipeline configured');
      const keep = ctx.data.keep ?? ami.keep;
      // Not a saved step: every removal is idempotent, and a rerun plans again from what is there.
      const result = await pruneImages(ami.cloud, { registry: await deps.registry(), keep, bucket: ami.bucket });
      const text = `ami prune (keep ${keep}): ${formatPrune(result)}`;
      ctx.log.info({ removed: result.removed.map((r) => r.image.imageId) }, 'ami prune');
      const summary = `removed ${result.removed.length} image${result.removed.length === 1 ? '' : 's'}, kept ${result.plan.keep.length}`;
      // A schedule's successful runs post nothing by themselves: a prune that removed something says so.
      if (result.removed.length > 0 && ctx.principal.kind === 'schedule' && deps.opsChannelId !== undefined) {
        await publish(deps.redis, ctx.signer, {
          kind: 'result',
          jobId: ctx.jobId,
          type: AMI_PRUNE,
          reply: { channelId: deps.opsChannelId },
          ok: true,
          text: text.slice(0, 3900),
        });
      }
      return { summary, removed: result.removed.map((r) => r.image.imageId) };
    },
  };
}
