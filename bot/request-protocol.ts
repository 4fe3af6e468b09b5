// The agent's request socket protocol, shared by the ops gateway (bot/request-socket.ts) and
// `clawdinator request` (cli/request.ts). The agent holds no Redis credential: on each host
// the ops gateway serves a unix socket, and this is what goes over it. One request per
// connection; JSON, one object per line, both ways; every line bounded.
//
//   gateway → agent   {"kind":"hello","protocol":1,"host":"clawdinator-2","jobs":{"spawn":1,…}}
//                     (who this gateway serves, and the job types an agent may ask with their
//                     schema versions, which the agent signs)
//   agent → gateway   {"kind":"job","envelope":{"signed":{…},"signature":"…"}}
//                     (a job request signed with the agent's key, as a worker verifies it)
//   gateway → agent   {"kind":"queued","jobId":"spawn-agent-…"}
//                     {"kind":"progress","text":"…","percent":40}   (any number of them)
//                     {"kind":"end","ok":true,"text":"clawdinator-3 online: …"}
//                  or {"kind":"error","message":"refused: …","exit":1}   (instead of any of these)
//
// `end` and `error` are the last line; then the gateway closes. An agent that disconnects
// only stops the following: the job runs on. Another host-local request (the GitHub token
// refresh, say) is one more `kind` in `agentMessageSchema` and one more handler in the
// gateway's table; the hello's `accepts` tells a client which kinds this gateway serves.
//
// Only zod and node here: `clawdinator request` loads this and nothing of the job engine.
import { z } from 'zod';
import { signedSchema } from '../jobs/engine/envelope.js';

export const PROTOCOL = 1;
/** An agent's line: a signed request is well under 2 KiB. */
export const MAX_AGENT_LINE = 16 * 1024;
/** A gateway's line: progress and results are bounded text. */
export const MAX_GATEWAY_LINE = 8 * 1024;
/** Progress and result text is cut to this many characters. */
export const MAX_TEXT = 2000;

export const jobMessageSchema = z
  .object({
    kind: z.literal('job'),
    envelope: z.object({ signed: signedSchema, signature: z.string().min(1).max(200) }).strict(),
  })
  .strict();
export type JobMessage = z.output<typeof jobMessageSchema>;

/** What an agent may send: one of these per connection. */
export const agentMessageSchema = z.discriminatedUnion('kind', [jobMessageSchema]);
export type AgentMessage = z.output<typeof agentMessageSchema>;
export type AgentMessageKind = AgentMessage['kind'];

const text = z.string().max(MAX_TEXT);

export const gatewayMessageSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('hello'),
    protocol: z.number().int(),
    host: z.string().max(64),
    accepts: z.array(z.string().max(40)).max(20),
    jobs: z.record(z.string().max(40), z.number().int().min(1)),
  }),
  z.object({ kind: z.literal('queued'), jobId: z.string().max(120) }),
  z.object({ kind: z.literal('progress'), text, percent: z.number().min(0).max(100).optional() }),
  z.object({ kind: z.literal('end'), ok: z.boolean(), text }),
  z.object({ kind: z.literal('error'), message: text, exit: z.union([z.literal(1), z.literal(2)]) }),
]);
export type GatewayMessage = z.output<typeof gatewayMessageSchema>;

export function encode(message: GatewayMessage | AgentMessage): string {
  return `${JSON.stringify(message)}\n`;
}

/**
 * Text from the job engine shown on the agent's terminal: control characters (escape
 * sequences, carriage returns that overwrite a line) become spaces, and it is cut short.
 * Whoever writes a job's progress in Redis must not be able to drive the terminal.
 */
export function inertText(value: string, max = MAX_TEXT): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: those are what it removes
  const plain = value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
  return plain.length > max ? `${plain.slice(0, max - 1)}…` : plain;
}

/**
 * Splits a byte stream into lines of at most `max` bytes (the newline excluded). A line that
 * grows past `max` without its newline makes `push` return 'overflow'; nothing is kept.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;

  constructor(private readonly max: number) {}

  push(chunk: Buffer): string[] | 'overflow' {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      if (this.size + nl - start > this.max) return this.overflow();
      this.parts.push(chunk.subarray(start, nl));
      lines.push(Buffer.concat(this.parts).toString('utf8'));
      this.parts = [];
      this.size = 0;
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (this.size + rest.length > this.max) return this.overflow();
    if (rest.length > 0) {
      this.parts.push(rest);
      this.size += rest.length;
    }
    return lines;
  }

  private overflow(): 'overflow' {
    this.parts = [];
    this.size = 0;
    return 'overflow';
  }
}

/** The first issue of a failed parse as "<path>: <message>" (never the value). */
export function issueLine(error: z.ZodError): string {
  const issue = error.issues[0];
  return `${issue?.path.join('.') || 'message'}: ${issue?.message ?? 'invalid'}`;
}
