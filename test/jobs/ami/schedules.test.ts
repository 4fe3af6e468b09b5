// The image schedules: the weekly prune always, the rebuild only when its cron is set (off by
// default, and never a rollout); both upserted beside the fleet's own schedules and verified;
// their settings refused in one line when wrong.
import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { amiSchedules } from '../../../jobs/ami/deps.js';
import { FLEET_QUEUE } from '../../../jobs/engine/keys.js';
import { FLEET_SCHEDULES, upsertSchedules } from '../../../jobs/engine/schedulers.js';
import { loadConfig } from '../../../lib/config.js';
import { ConfigError } from '../../../lib/errors.js';
import { simAmiDeps } from '../../support/ami.js';
import { testStepSigner } from '../../support/jobs.js';
import { lifecycleSuite } from '../../support/lifecycle.js';

const suite = lifecycleSuite();

describe('image schedules', () => {
  it('off by default: only the weekly prune; with a cron, a rebuild that never rolls out', () => {
    const defaults = loadConfig(['amiPruneCron', 'amiRebuildCron', 'amiKeep'], { env: {} });
    expect(defaults).toEqual({ amiPruneCron: '0 5 * * 0', amiRebuildCron: undefined, amiKeep: 5 });
    expect(amiSchedules(defaults)).toEqual([
      { id: 'clawdinator-ami-prune', type: 'ami-prune', pattern: '0 5 * * 0', data: {} },
    ]);
    const on = loadConfig(['amiPruneCron', 'amiRebuildCron'], { env: { CLAWDINATOR_AMI_REBUILD_CRON: '0 4 * * 1' } });
    expect(amiSchedules(on)[1]).toEqual({
      id: 'clawdinator-ami-rebuild',
      type: 'rebuild-ami',
      pattern: '0 4 * * 1',
      data: { rollout: 'none', build: 'peer' },
    });
  });

  it('are upserted and verified beside the fleet’s schedules', async () => {
    const h = suite.harness({ types: { ami: simAmiDeps(suite.server, suite.sim) } });
    const queue = new Queue(FLEET_QUEUE, { connection: suite.redis });
    suite.defer(() => queue.close());
    const defs = [...FLEET_SCHEDULES, ...amiSchedules({ amiPruneCron: '0 5 * * 0', amiRebuildCron: '0 4 * * 1' })];
    const result = await upsertSchedules({
      queue,
      redis: suite.redis,
      signer: testStepSigner,
      types: h.types,
      defs,
      workerId: 'test',
    });
    expect(result).toMatchObject({ leader: true, verified: true });
    expect(result.upserted.sort()).toEqual([
      'clawdinator-ami-prune',
      'clawdinator-ami-rebuild',
      'clawdinator-github-sync',
      'clawdinator-health-sweep',
    ]);
    const schedulers = await queue.getJobSchedulers();
    expect(schedulers.map((s) => [s.key, s.name, s.pattern ?? null]).sort()).toEqual([
      ['clawdinator-ami-prune', 'ami-prune', '0 5 * * 0'],
      ['clawdinator-ami-rebuild', 'rebuild-ami', '0 4 * * 1'],
      ['clawdinator-github-sync', 'github-sync', null],
      ['clawdinator-health-sweep', 'health-sweep', null],
    ]);
  });

  it('refuses a wrong cron, keep or boot mode in one line naming the setting', () => {
    const cases: [Record<string, string>, string][] = [
      [{ CLAWDINATOR_AMI_REBUILD_CRON: 'every monday; rm -rf /' }, 'CLAWDINATOR_AMI_REBUILD_CRON is invalid'],
      [{ CLAWDINATOR_AMI_KEEP: '0' }, 'CLAWDINATOR_AMI_KEEP is invalid'],
      [{ CLAWDINATOR_AMI_BOOT_MODE: 'bios' }, 'CLAWDINATOR_AMI_BOOT_MODE is invalid'],
      [{ CLAWDINATOR_PROJECT_REPO: 'not a repo' }, 'CLAWDINATOR_PROJECT_REPO is invalid'],
      [{ CLAWDINATOR_AMI_FLAKE: 'github:o/r#image' }, 'CLAWDINATOR_AMI_FLAKE is invalid'],
    ];
    for (const [env, said] of cases) {
      const load = () =>
        loadConfig(['amiRebuildCron', 'amiKeep', 'amiBootMode', 'projectRepo', 'amiFlake'], {
          env: { CLAWDINATOR_PROJECT_REPO: 'openclaw/clawdinators', ...env },
        });
      expect(load).toThrow(ConfigError);
      expect(load).toThrow(`config: ${said}`);
    }
  });
});
