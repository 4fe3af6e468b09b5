// Every Redis key and queue name the engine uses, in one place. BullMQ refuses ':' in queue
// names and job ids, so those use '-'; our own keys use ':' as Redis convention has it.
export const FLEET_QUEUE = 'clawdinator-fleet';
export const hostQueue = (host: string) => `clawdinator-host-${host}`;

export const keys = {
  instanceLock: (name: string) => `clawdinator:instance-lock:${name}`,
  nonce: (nonce: string) => `clawdinator:nonce:${nonce}`,
  cancel: (jobId: string) => `clawdinator:cancel:${jobId}`,
  heartbeat: (host: string) => `clawdinator:heartbeat:${host}`,
  health: (host: string) => `clawdinator:health:${host}`,
  /** An instance of ours the registry does not know, as the health sweep first reported it. */
  healthStray: (instanceId: string) => `clawdinator:health-stray:${instanceId}`,
  schedulerLeader: 'clawdinator:scheduler-leader',
  /** The lease of a host queue's own schedules (its worker alone upserts them). */
  hostSchedulerLeader: (host: string) => `clawdinator:scheduler-leader:${host}`,
  agentRate: (host: string, hour: number) => `clawdinator:agent-rate:${host}:${hour}`,
  events: 'clawdinator:events',
  /** An event id's first stream entry: the same signed event XADDed again is a replay. */
  eventSeen: (eventId: string) => `clawdinator:event-seen:${eventId}`,
  /** A job's signed confirmation question: the only source of the buttons rendered for it. */
  pending: (jobId: string) => `clawdinator:pending:${jobId}`,
  /** The health sweep's signed offer to clean up a stray (stray-offer.ts): its button's only source. */
  strayOffer: (target: string) => `clawdinator:pending:stray:${target}`,
  /**
   * The run a scheduler's slot admitted: a second run in the same slot is a replay. Per queue:
   * every host's own queue has a scheduler of the same id (its agent's token refresh), all
   * running in the same slots.
   */
  scheduleSlot: (queue: string, scheduler: string, slot: string) =>
    `clawdinator:schedule-slot:${queue}:${scheduler}:${slot}`,
  interactionToken: (interactionId: string) => `clawdinator:interaction:${interactionId}`,
  claim: (interactionId: string) => `clawdinator:claim:${interactionId}`,
  /** A human's signed answer to an agent's retire or replace, for that job. */
  approval: (jobId: string) => `clawdinator:approval:${jobId}`,
  /** The ops-channel message that asked for that answer; the relay edits it afterwards. */
  jobMessage: (jobId: string) => `clawdinator:job-message:${jobId}`,
  /** Spawns started in the last hour, by job id (a sorted set scored by start time). */
  spawnRate: 'clawdinator:spawn-rate',
  /** A member a retire job is taking away: no other retire counts it as a healthy host. */
  retiring: (name: string) => `clawdinator:retiring:${name}`,
  /**
   * A job's end, taken with SET NX by whoever finalizes it: "running:<owner>" with a lease
   * while it runs (a crashed finalizer's lapses, and the sweep takes it again), then "done".
   */
  finalized: (jobId: string) => `clawdinator:finalized:${jobId}`,
  /** What a finalization already did (undo, audit) and how often it failed, for a resumed one. */
  finalizing: (jobId: string) => `clawdinator:finalizing:${jobId}`,
  /**
   * Jobs not finalized yet, job id → {queue, at, data}: written once the enqueue has added the
   * job (or by its first step save), kept current at each step save, deleted at the end. A
   * removed job's data is gone from BullMQ; its finalizer reads it here, and the sweep finds
   * jobs that ended without being finalized.
   */
  openJobs: 'clawdinator:open-jobs',
} as const;
