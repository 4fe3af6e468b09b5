// A loopback HTTP stand-in for AWS endpoints: real SDK clients talk to it over HTTP, so their
// own serialization, retries (adaptive, throttling backoff) and error parsing run for real,
// which aws-sdk-client-mock (it replaces `send`) cannot show. The handler answers each request
// in the service's wire format; every request is recorded.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** EC2/STS query-protocol `Action`, or the JSON-protocol target without its service prefix. */
  action: string;
}

export interface StubReply {
  status?: number;
  headers?: Record<string, string>;
  body: string;
}

export interface Stub {
  url: string;
  requests: StubRequest[];
  close(): Promise<void>;
}

export async function startStub(handler: (req: StubRequest) => StubReply | Promise<StubReply>): Promise<Stub> {
  const requests: StubRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const target = String(req.headers['x-amz-target'] ?? '');
      const action = target !== '' ? (target.split('.').pop() ?? '') : (new URLSearchParams(body).get('Action') ?? '');
      const request: StubRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, action };
      requests.push(request);
      const reply = await handler(request);
      res.writeHead(reply.status ?? 200, reply.headers ?? {});
      res.end(reply.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const XML = { 'content-type': 'text/xml;charset=UTF-8' };
const JSON11 = { 'content-type': 'application/x-amz-json-1.1' };

/** An EC2 query-protocol answer: `<{Action}Response>` around `inner`. */
export function ec2Reply(action: string, inner: string): StubReply {
  return {
    headers: XML,
    body: `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>ok-1</requestId>${inner}</${action}Response>`,
  };
}

/** An EC2 error, with the request id EC2 puts beside it. */
export function ec2Error(status: number, code: string, message: string, requestId: string): StubReply {
  return {
    status,
    headers: XML,
    body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
  };
}

/** A JSON 1.1 (Secrets Manager, SSM) answer. */
export function jsonReply(value: unknown): StubReply {
  return { headers: JSON11, body: JSON.stringify(value) };
}

/** A JSON 1.1 error, request id in the header as AWS sends it. */
export function jsonError(status: number, code: string, message: string, requestId: string): StubReply {
  return {
    status,
    headers: { ...JSON11, 'x-amzn-requestid': requestId, 'x-amzn-errortype': code },
    body: JSON.stringify({ __type: code, message }),
  };
}

/** An instance as DescribeInstances lists it. */
export function instanceXml(id: string, name: string): string {
  return `<item><instanceId>${id}</instanceId><imageId>ami-1</imageId><instanceState><code>16</code><name>running</name></instanceState><instanceType>t3.large</instanceType><launchTime>2026-01-01T00:00:00.000Z</launchTime><privateIpAddress>10.0.0.1</privateIpAddress><tagSet><item><key>app</key><value>clawdinator</value></item><item><key>Name</key><value>${name}</value></item></tagSet></item>`;
}
