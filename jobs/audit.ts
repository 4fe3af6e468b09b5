// The audit trail: one event per slash command, button, form and lifecycle outcome, written
// by the dispatcher and the lifecycle jobs through this one class.
//
// The agent writes /memory, so a file there cannot be the record the project relies on. The
// authoritative trail is written where only the ops user can write, and survives the host:
//   - the journal: one log line per event (`audit: true`), from the ops user's service;
//   - S3, when a bucket is configured: one object per event under
//     s3://<bootstrap bucket>/audit/YYYY/MM/DD/<HHMMSS.mmm>Z-<random>.json. One object each,
//     not a daily file: S3 has no append, and hosts would race on a shared object. Written
//     with the instance role (the only S3 write it is allowed: audit/*), never the deployer's.
// `/memory/audit/YYYY-MM-DD.md` stays as a copy for the agents to read: best-effort, so a
// copy that cannot be written (full, locked, or a planted directory) never fails the command
// or job; it is logged.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { AUDIT_PREFIX } from '../infra/names.js';
import { hasSetting, loadConfig } from '../lib/config.js';
import { errorLine } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { MemoryStore } from '../memory/store.js';
import type { Cloud } from './cloud/types.js';

export interface AuditEvent {
  at: Date;
  /** The event as one line of text: the memory copy's line and the journal's message. */
  line: string;
  /** What the event is about, as fields (no free text, no secrets): journal and S3 object. */
  fields: Record<string, string | number | boolean | null>;
}

export type AuditCloud = Pick<Cloud, 'putBytes'>;

export interface AuditTrailOptions {
  log: Logger;
  /** Where the agents' copy goes (audit/<day>.md). */
  memory: MemoryStore;
  /** The bucket of the authoritative objects; without one, the journal is the record. */
  bucket?: string;
  /** The cloud, made on the first event (the gateway's idle size does not carry the SDK). */
  cloud?: () => Promise<AuditCloud>;
  /** Who wrote the event, in the object. */
  host?: string;
}

/** `audit/2026/11/24/120000.123Z-<16 hex>.json`: sorted by time within a day, never shared. */
export function auditKey(at: Date, random = randomBytes(8).toString('hex')): string {
  const iso = at.toISOString(); // 2026-11-24T12:00:00.123Z
  const [date, time] = iso.split('T') as [string, string];
  return `${AUDIT_PREFIX}${date.replaceAll('-', '/')}/${time.replaceAll(':', '')}-${random}.json`;
}

export class AuditTrail {
  private pending = new Map<string, string[]>();
  private flushing: Promise<void> | null = null;
  private cloud: Promise<AuditCloud> | null = null;

  constructor(private readonly options: AuditTrailOptions) {}

  /** Writes the event everywhere it goes; resolves when done. Never throws: failures are logged. */
  async record(event: AuditEvent): Promise<void> {
    this.options.log.info({ audit: true, ...event.fields }, event.line);
    await Promise.all([this.upload(event), this.copy(event)]);
  }

  private async upload(event: AuditEvent): Promise<void> {
    const { bucket } = this.options;
    if (bucket === undefined || this.options.cloud === undefined) return;
    const key = auditKey(event.at);
    const body = {
      at: event.at.toISOString(),
      host: this.options.host ?? null,
      ...event.fields,
      line: event.line,
    };
    try {
      this.cloud ??= this.options.cloud();
      const cloud = await this.cloud;
      await cloud.putBytes(bucket, key, Buffer.from(`${JSON.stringify(body)}\n`), { contentType: 'application/json' });
    } catch (err) {
      // The journal line above already holds the event.
      this.options.log.error({ err: errorLine(err), bucket, key }, 'audit upload failed');
    }
  }

  // The memory copy goes in batches: under a burst of interactions, one lock and one append
  // per batch instead of one per event (200 appends contending for one file's lock would
  // delay every handler's reply).
  private copy(event: AuditEvent): Promise<void> {
    const path = `audit/${event.at.toISOString().slice(0, 10)}.md`;
    const lines = this.pending.get(path) ?? [];
    lines.push(event.line);
    this.pending.set(path, lines);
    if (this.flushing === null) this.flushing = this.flush();
    return this.flushing;
  }

  private async flush(): Promise<void> {
    // Let the other events of this burst queue their lines first.
    await new Promise((r) => setImmediate(r));
    while (this.pending.size > 0) {
      const batch = this.pending;
      this.pending = new Map();
      for (const [path, lines] of batch) {
        try {
          await this.options.memory.append(path, lines.join('\n'), { waitSeconds: 5 });
        } catch (err) {
          this.options.log.error({ err: errorLine(err), path, lines: lines.length }, 'audit copy in memory failed');
        }
      }
    }
    this.flushing = null;
  }
}

/**
 * The trail as configured: S3 when CLAWDINATOR_BOOTSTRAP_BUCKET is set (through the instance
 * role's own credentials and CLAWDINATOR_AWS_REGION), always the journal and the copy.
 * `options.cloud` replaces the AWS adapter (tests).
 */
export function auditTrailFromConfig(
  memory: MemoryStore,
  log: Logger,
  options: { cloud?: () => Promise<AuditCloud> } = {},
): AuditTrail {
  const host = hasSetting('hostName') ? loadConfig(['hostName']).hostName : hostname();
  if (!hasSetting('bootstrapBucket')) return new AuditTrail({ log, memory, host });
  const { bootstrapBucket, awsRegion } = loadConfig(['bootstrapBucket', 'awsRegion']);
  return new AuditTrail({
    log,
    memory,
    host,
    bucket: bootstrapBucket,
    cloud: options.cloud ?? (async () => (await import('./cloud/aws.js')).createAwsCloud({ region: awsRegion })),
  });
}
