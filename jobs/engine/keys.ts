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
  /** The run a scheduler's slot admitted: a second run in the same slot is a replay. */
  scheduleSlot: (scheduler: string, slot: string) => `clawdinator:schedule-slot:${scheduler}:${slot}`,
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
} as const;
