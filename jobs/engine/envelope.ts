// What a job carries in Redis: the signed request (type, id, schema version, data, who asked,
// when, a nonce) and the signature; beside it the results of completed steps, signed by the
// worker that saved them (the workers' key), so a write to Redis cannot change what a resumed
// job believes it already did. All of it is read back from Redis as untrusted input and
// parsed before use.
import { z } from 'zod';
import { instanceName } from '../../lib/config.js';

const snowflake = z.string().regex(/^\d{17,20}$/);

export const principalSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('discord'),
      userId: snowflake,
      userName: z.string().min(1).max(100),
      roles: z.array(snowflake).max(250),
      guildId: snowflake,
      channelId: snowflake,
    })
    .strict(),
  z.object({ kind: z.literal('agent'), host: instanceName }).strict(),
  z.object({ kind: z.literal('schedule'), scheduler: z.string().regex(/^[a-z0-9-]{1,64}$/) }).strict(),
  z.object({ kind: z.literal('cli'), operator: z.string().regex(/^[a-z0-9_.-]{1,32}$/) }).strict(),
]);
export type Principal = z.output<typeof principalSchema>;

/** Where progress and results are shown: the interaction's reply, or a channel. */
export const replySchema = z
  .object({
    channelId: snowflake,
    interactionId: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .optional(),
  })
  .strict();
export type ReplyTarget = z.output<typeof replySchema>;

/** A request's nonce (signing.ts makes 22 characters); the worker checks it before its replay record. */
export const NONCE = /^[A-Za-z0-9_-]{16,64}$/;

export const requestIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, - and _ only');

export const signedSchema = z
  .object({
    type: z.string().regex(/^[a-z][a-z0-9-]{0,40}$/),
    /** The BullMQ job id, or "*" for a scheduler's template (its ids are made per run). */
    jobId: z.string().max(120),
    schema: z.number().int().min(1),
    data: z.unknown(),
    principal: principalSchema,
    keyId: z.string().max(80),
    issuedAt: z.number().int().positive(),
    nonce: z.string().regex(NONCE),
    requestId: requestIdSchema,
    reply: replySchema.optional(),
  })
  .strict();
export type SignedRequest = z.output<typeof signedSchema>;

export const envelopeSchema = z
  .object({
    signed: signedSchema,
    /** Checked by the worker: a missing one is a bad signature, not malformed data. */
    signature: z.string().max(200).optional(),
    /** Results of completed steps, saved as the job goes (see steps.ts). */
    steps: z.record(z.unknown()).optional(),
    /** The workers' signature over the job id, the request's nonce and `steps` (see steps.ts). */
    stepsSignature: z.string().max(200).optional(),
    /** How often a worker that did not know this job type or version left it for another. */
    deferrals: z.number().int().min(0).optional(),
    /** How often the worker of the host this job acts on left it to a peer's (never deploy yourself). */
    handedBack: z.number().int().min(0).optional(),
  })
  .strict();
export type Envelope = z.output<typeof envelopeSchema>;

/** The key a principal must sign with: the gateway for Discord users, each operator and agent its own. */
export function expectedKeyId(principal: Principal): string {
  switch (principal.kind) {
    case 'discord':
      return 'gateway';
    case 'agent':
      return `agent:${principal.host}`;
    case 'schedule':
      return 'schedule';
    case 'cli':
      return `operator:${principal.operator}`;
  }
}

export function describePrincipal(p: Principal): string {
  switch (p.kind) {
    case 'discord':
      return `${p.userName} (Discord ${p.userId})`;
    case 'agent':
      return `agent ${p.host}`;
    case 'schedule':
      return `schedule ${p.scheduler}`;
    case 'cli':
      return `operator ${p.operator}`;
  }
}
