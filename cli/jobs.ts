// `clawdinator jobs …`: the fleet's jobs from a shell, on the fleet's Redis
// (CLAWDINATOR_REDIS_URL, CLAWDINATOR_REDIS_PASSWORD_FILE).
//
//   jobs list [--filter recent|running|failed|waiting] [--limit N] [--json]
//   jobs show <id> [--json]
//   jobs cancel <id>   a job that never started is removed; a started one stops before its next step
//                      (with an operator key configured, the requester is told, in a signed event)
//   jobs retry <id> [--yes]
//                      a failed job's request again, as a new request signed by the operator
//                      running this (CLAWDINATOR_JOB_SIGNING_KEY_FILE, CLAWDINATOR_JOB_KEY_ID=operator:<name>),
//                      only if the original's signature verifies (CLAWDINATOR_JOB_PUBLIC_KEYS, agents'
//                      keys from the registry); a destructive type (retire, replace) needs --yes
//
// Exit codes: 0 done; 1 the operation failed (no such job, already finished, not failed,
// instance busy, Redis unreachable); 2 usage or a setting.
//
// The --json shapes (stable; times are milliseconds since the epoch, or null):
//   jobs list --json → an array, newest first, of JobSummary:
//     { "id", "queue", "type", "state", "requestedBy", "instance", "createdAt", "startedAt",
//       "finishedAt", "step", "percent", "failedReason", "attempts" }
//     state: waiting | prioritized | delayed | waiting-children | active | completed | failed;
//     type and requestedBy are "?" for a job whose data is not a well-formed request;
//     instance, step, percent and failedReason are null when there is none.
//   jobs show <id> --json → JobDetail, a JobSummary plus
//     { "requestId", "requestedAt", "signature", "result", "cancelRequestedBy",
//       "steps": [{ "name", "bytes" }], "logs": [the last 20 log lines], "logCount" }
//     signature: "verified" | "does not verify" | "not checked" (no CLAWDINATOR_JOB_PUBLIC_KEYS);
//     (an unknown id exits 1: "no such job: <id>").
import { randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import {
  type AdminTrust,
  checkJobId,
  existingQueueNames,
  JOB_FILTERS,
  JobAdmin,
  type JobDetail,
  type JobFilter,
  type JobSummary,
} from '../jobs/engine/admin.js';
import type { Principal } from '../jobs/engine/envelope.js';
import { Enqueuer, JobTypes, type Signer } from '../jobs/engine/queues.js';
import { publicKeys, registryReader } from '../jobs/engine/setup.js';
import { createRedis, type Redis, type RedisOptions, redisOptions } from '../jobs/redis.js';
import { loadPrivateKey } from '../jobs/signing.js';
import { jobTypes } from '../jobs/types/index.js';
import { hasSetting, loadConfig } from '../lib/config.js';
import { errorLine, OperationError, UsageError } from '../lib/errors.js';

interface Session {
  connection: RedisOptions;
  redis: Redis;
  types: JobTypes;
  admin: JobAdmin;
}

/**
 * The public keys to verify jobs with: the configured ones, and each agent's from the registry
 * (read only if an agent's job is verified; the App key only then). Absent when none are
 * configured, unless `required` (a retry never signs what it has not verified).
 */
function verifier(required: boolean): AdminTrust['publicKey'] {
  if (!required && !hasSetting('jobPublicKeys')) return undefined;
  const config = loadConfig(['jobPublicKeys', 'fleetRegistryPath', 'fleetRegistryBackend']);
  return publicKeys(config.jobPublicKeys, registryReader(config, { lazyKey: true }));
}

/** Connects, runs `fn`, and closes every connection so the process can exit. */
async function withAdmin<T>(fn: (s: Session) => Promise<T>, trust: AdminTrust = {}): Promise<T> {
  const config = loadConfig(['redisUrl', 'redisPasswordFile', 'instanceTypes']);
  // A command fails fast when Redis is unreachable, instead of retrying for ever as the
  // long-lived processes do.
  const connection: RedisOptions = {
    ...redisOptions(config),
    lazyConnect: true,
    connectTimeout: 5000,
    retryStrategy: () => null,
  };
  const redis = createRedis(connection);
  // With no reconnects, connect() rejects with "Connection is closed."; the error event says why.
  let reason: unknown;
  redis.on('error', (err) => {
    reason = err;
  });
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new OperationError(
      `cannot reach Redis at ${connection.host}:${connection.port}: ${errorLine(reason ?? err)}`,
    );
  }
  // The types' schemas and instances only: their processors (which read the registry) never run here.
  const types = new JobTypes(
    jobTypes({
      redis,
      registry: async () => {
        throw new OperationError('the jobs command does not run jobs');
      },
      instanceTypes: config.instanceTypes,
    }),
  );
  const admin = new JobAdmin(connection, redis, () => existingQueueNames(redis), types, trust);
  try {
    return await fn({ connection, redis, types, admin });
  } finally {
    // Closing must not hide the command's own outcome when the connection broke meanwhile.
    await admin.close().catch(() => {});
    redis.disconnect();
  }
}

/** The operator's signer and principal for a retry; any other key may not ask as `cli`. */
function operatorSigner(): { signer: Signer; principal: Principal } {
  const config = loadConfig(['jobSigningKeyFile', 'jobKeyId']);
  if (!config.jobKeyId.startsWith('operator:')) {
    throw new UsageError(
      `jobs retry signs as an operator: CLAWDINATOR_JOB_KEY_ID is ${config.jobKeyId}, expected operator:<name>`,
    );
  }
  return {
    signer: {
      keyId: config.jobKeyId,
      key: loadPrivateKey(config.jobSigningKeyFile, 'CLAWDINATOR_JOB_SIGNING_KEY_FILE'),
    },
    principal: { kind: 'cli', operator: config.jobKeyId.slice('operator:'.length) },
  };
}

/** Who cancels, for the flag and the requester's notification (the flag is not signed). */
function canceller(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry for this uid (some containers): the host still says where it came from
  }
  return `${user}@${hostname()} (cli)`;
}

function parseFilter(value: string): JobFilter {
  if (!(JOB_FILTERS as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of ${JOB_FILTERS.join(', ')}`);
  }
  return value as JobFilter;
}

function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 200) throw new InvalidArgumentError('expected a whole number from 1 to 200');
  return n;
}

function write(text: string): void {
  process.stdout.write(text);
}

/** Columns padded to their widest cell, two spaces apart; the last one is not padded. */
function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

function age(ms: number | null, now: number): string {
  if (ms === null) return '-';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

function time(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString();
}

function stepOf(j: JobSummary): string {
  if (j.failedReason !== null) return j.failedReason;
  if (j.step === null && j.percent === null) return '-';
  return [j.step, j.percent === null ? null : `${Math.round(j.percent)}%`].filter((x) => x !== null).join(' ');
}

function listTable(jobs: JobSummary[], now: number): string {
  const header = ['ID', 'TYPE', 'STATE', 'INSTANCE', 'ASKED BY', 'AGE', 'STEP / REASON'];
  const rows = jobs.map((j) => [
    j.id,
    j.type,
    j.state,
    j.instance ?? '-',
    j.requestedBy,
    age(j.createdAt, now),
    stepOf(j),
  ]);
  return table([header, ...rows]);
}

function detailText(d: JobDetail): string {
  const fields: [string, string][] = [
    ['id', d.id],
    ['queue', d.queue],
    ['type', d.type],
    ['state', d.state],
    ['asked by', d.requestedBy],
    ['target', d.instance ?? '-'],
    ['request', d.requestId ?? '-'],
    ['asked at', time(d.requestedAt)],
    ['signature', d.signature],
    ['created', time(d.createdAt)],
    ['started', time(d.startedAt)],
    ['finished', time(d.finishedAt)],
    ['attempts', String(d.attempts)],
    ['step', stepOf({ ...d, failedReason: null })],
  ];
  if (d.failedReason !== null) fields.push(['failed', d.failedReason]);
  if (d.result !== null) fields.push(['result', d.result]);
  if (d.cancelRequestedBy !== null) fields.push(['cancel', `requested by ${d.cancelRequestedBy}`]);
  fields.push(['steps', d.steps.map((s) => `${s.name} (${s.bytes} B)`).join(', ') || '-']);
  const logs = d.logs.map((line) => `  ${line}\n`).join('');
  return `${table(fields)}log (last ${d.logs.length} of ${d.logCount} lines)\n${logs}`;
}

export function command(): Command {
  const jobs = new Command('jobs')
    .description('list, inspect, retry and cancel the fleet’s jobs (CLAWDINATOR_REDIS_URL)')
    .showHelpAfterError(false);

  jobs
    .command('list')
    .description('jobs of every fleet queue, newest first')
    .option('--filter <which>', `one of ${JOB_FILTERS.join(', ')}`, parseFilter, 'recent' as JobFilter)
    .option('--limit <n>', 'at most this many (1 to 200)', parseLimit, 20)
    .option('--json', 'print a JSON array of job summaries (shape: see cli/jobs.ts)')
    .action(async (opts: { filter: JobFilter; limit: number; json?: boolean }) => {
      const list = await withAdmin(({ admin }) => admin.list(opts.filter, opts.limit));
      if (opts.json) write(`${JSON.stringify(list)}\n`);
      else if (list.length === 0) write(`no ${opts.filter === 'recent' ? '' : `${opts.filter} `}jobs\n`);
      else write(listTable(list, Date.now()));
    });

  jobs
    .command('show')
    .description('one job: who asked, state, steps saved (names and sizes), the last log lines')
    .argument('<id>', 'the job id, e.g. spawn-1234567890')
    .option('--json', 'print the job as JSON (shape: see cli/jobs.ts)')
    .action(async (id: string, opts: { json?: boolean }) => {
      checkJobId(id);
      const detail = await withAdmin(({ admin }) => admin.show(id), { publicKey: verifier(false) });
      if (detail === null) throw new OperationError(`no such job: ${id}`);
      write(opts.json ? `${JSON.stringify(detail)}\n` : detailText(detail));
    });

  jobs
    .command('cancel')
    .description('remove a job that has not started, or flag a started one to stop before its next step')
    .argument('<id>', 'the job id')
    .action(async (id: string) => {
      checkJobId(id);
      // The requester hears of it from the workers' finalizer, which ends the job.
      const { outcome } = await withAdmin(({ admin }) => admin.cancel(id, canceller()));
      switch (outcome) {
        case 'removed':
          write(`removed ${id} (it had not started)\n`);
          return;
        case 'flagged':
          write(`cancel requested: ${id} stops before its next step\n`);
          return;
        case 'already-finished':
          throw new OperationError(`cannot cancel ${id}: it has already finished`);
        case 'not-found':
          throw new OperationError(`no such job: ${id}`);
      }
    });

  jobs
    .command('retry')
    .description('ask again for what a failed job asked, as a new request signed by you (its signature must verify)')
    .argument('<id>', 'the failed job’s id')
    .option('--yes', 'confirm a destructive one (retire, replace): it runs again')
    .action(async (id: string, opts: { yes?: boolean }) => {
      checkJobId(id);
      const { signer, principal } = operatorSigner();
      const publicKey = verifier(true);
      const requestId = `cli-${Date.now().toString(36)}-${randomBytes(6).toString('base64url')}`;
      const result = await withAdmin(
        async ({ connection, redis, types, admin }) => {
          const plan = await admin.planRetry(id, principal);
          if (plan.destructive && !opts.yes) {
            const target = plan.target === null ? '' : ` of ${plan.target}`;
            throw new UsageError(
              `retrying ${id} runs ${plan.type}${target} again, which cannot be undone: confirm with --yes`,
            );
          }
          const enqueuer = new Enqueuer(connection, redis, types, signer);
          try {
            return await admin.retry(id, enqueuer, principal, requestId, undefined, { confirmed: opts.yes === true });
          } finally {
            await enqueuer.close();
          }
        },
        { publicKey },
      );
      write(`retried ${id} as ${result.jobId} (queue ${result.queue})\n`);
    });

  return jobs;
}
