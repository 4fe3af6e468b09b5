// The flake token of a deploy is a secret: minted for each switch, stored as the member's own
// secret, deleted after. Planted here as a token no pattern recognizes (only its value gives
// it away), also in what the failing host prints, then searched for in everything the deploy
// leaves behind: the job's data, result and failure, its logs, every Redis key (progress and
// result events included: what Discord would show), the worker's log, ops.md and the audit,
// the commands the hosts were sent.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { deployTokenSecret } from '../../../jobs/fastlane/deps.js';
import { createLogger } from '../../../lib/log.js';
import { runDeploy, simLane } from '../../support/lane.js';
import { lifecycleSuite } from '../../support/lifecycle.js';

const MEMBERS = ['clawdinator-1', 'clawdinator-2', 'clawdinator-3'];
// No `ghs_` prefix, no `token=`: only the control plane's knowledge of the value redacts it.
const FLAKE_TOKEN = 'FlakeTokenPlanted7c1e9a04b2d6f3e8';
const suite = lifecycleSuite({ members: MEMBERS });

/** Every value in Redis as text: strings, hashes, lists, sets, sorted sets, streams. */
async function redisText(redis: Redis): Promise<string> {
  const out: string[] = [];
  for (const key of await redis.keys('*')) {
    const type = await redis.type(key);
    if (type === 'string') out.push((await redis.getBuffer(key))?.toString('latin1') ?? '');
    else if (type === 'hash') out.push(JSON.stringify(await redis.hgetall(key)));
    else if (type === 'list') out.push(JSON.stringify(await redis.lrange(key, 0, -1)));
    else if (type === 'set') out.push(JSON.stringify(await redis.smembers(key)));
    else if (type === 'zset') out.push(JSON.stringify(await redis.zrange(key, 0, -1)));
    else if (type === 'stream') out.push(JSON.stringify(await redis.xrange(key, '-', '+')));
    out.push(key);
  }
  return out.join('\n');
}

/** Every file under `dir` (the fleet's memory: ops.md, the audit; the registry), as text. */
function filesText(dir: string): string {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name), 'latin1'))
    .join('\n');
}

function deployHarness() {
  const lines: string[] = [];
  const log = createLogger(
    'trace',
    new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  );
  let minted = 0;
  const lane = simLane(suite.sim, {
    tokens: {
      mint: async () => {
        minted++;
        return FLAKE_TOKEN;
      },
    },
  });
  const h = suite.harness({ types: { lane }, log });
  return { h, logText: () => lines.join(''), minted: () => minted };
}

async function everything(h: ReturnType<typeof deployHarness>, jobId: string): Promise<string> {
  const job = await h.h.queue.getJob(jobId);
  const { logs } = await h.h.queue.getJobLogs(jobId);
  return [
    JSON.stringify(job?.data),
    JSON.stringify(job?.returnvalue),
    job?.failedReason ?? '',
    JSON.stringify(job?.stacktrace),
    logs.join('\n'),
    await redisText(suite.redis),
    h.logText(),
    filesText(suite.sim.dir),
    JSON.stringify(suite.sim.cloud.sentCommands()),
  ].join('\n');
}

async function storedTokens(): Promise<string[]> {
  const names = MEMBERS.map(deployTokenSecret);
  return [...(await suite.sim.cloud.getSecrets(names)).keys()];
}

describe('the flake token of a deploy', () => {
  it('reaches each member as its own secret, deleted after, and nowhere else', async () => {
    const run = deployHarness();

    const job = await runDeploy(run.h, {});

    expect(job.failedReason).toBeUndefined();
    expect(job.returnvalue.summary).toMatch(/^deployed 5a4dbee \(main\) to /);
    // Minted for each switch and stored where the host reads it (the plant was used) ...
    expect(run.minted()).toBe(3);
    expect(suite.sim.cloud.calls.byOperation.CreateSecret).toBe(3);
    // ... and gone once the switches ended.
    expect(await storedTokens()).toEqual([]);
    const text = await everything(run, job.id as string);
    expect(text).toContain('5a4dbee');
    expect(text).not.toContain(FLAKE_TOKEN);
  });

  it('stays out of the failure report when the failing host prints it', async () => {
    const run = deployHarness();
    // What nix might print when a fetch with the token fails: the token, bare.
    suite.sim.cloud.faults.arm('switch', {
      message: `error: unable to fetch github:openclaw/clawdinators (credential ${FLAKE_TOKEN} rejected)`,
    });

    const job = await runDeploy(run.h, { rev: 'v2' });

    const report = job.failedReason ?? '';
    expect(report).toMatch(/stopped at the canary clawdinator-1, step switch/);
    // The output's tail is in the report, the token in it replaced.
    expect(report).toContain('(credential [redacted] rejected)');
    expect(await storedTokens()).toEqual([]);
    const text = await everything(run, job.id as string);
    expect(text).toContain('[redacted]');
    expect(text).not.toContain(FLAKE_TOKEN);
  });
});
