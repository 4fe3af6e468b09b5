// A loopback stand-in for the EC2 instance metadata service, IMDSv2 only, as our instances
// are configured (httpTokens required): PUT /latest/api/token with
// X-aws-ec2-metadata-token-ttl-seconds gives a session token; every GET must carry it in
// X-aws-ec2-metadata-token, or it is answered 401 as IMDS does. Serves the user data and the
// region and the instance id; every request is recorded.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ImdsRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface ImdsStandin {
  url: string;
  requests: ImdsRequest[];
  /** null: the instance has no user data (404). */
  userData: string | null;
  region: string;
  /** null: no instance id (404), as a broken metadata service would answer. */
  instanceId: string | null;
  /** Refuse every token request (403), as when IMDS is turned off for the instance. */
  refuseTokens: boolean;
  close(): Promise<void>;
}

export async function startImds(
  options: { userData?: string | null; region?: string; instanceId?: string | null } = {},
): Promise<ImdsStandin> {
  const tokens = new Set<string>();
  const requests: ImdsRequest[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const reply = (status: number, body = '') => {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(body);
    };
    if (req.url === '/latest/api/token') {
      if (req.method !== 'PUT') return reply(405);
      if (standin.refuseTokens) return reply(403);
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21_600) return reply(400);
      const token = randomBytes(24).toString('base64');
      tokens.add(token);
      return reply(200, token);
    }
    if (req.method !== 'GET') return reply(405);
    const token = req.headers['x-aws-ec2-metadata-token'];
    if (typeof token !== 'string' || !tokens.has(token)) return reply(401);
    if (req.url === '/latest/user-data') {
      return standin.userData === null ? reply(404) : reply(200, standin.userData);
    }
    if (req.url === '/latest/meta-data/placement/region') return reply(200, standin.region);
    if (req.url === '/latest/meta-data/instance-id') {
      return standin.instanceId === null ? reply(404) : reply(200, standin.instanceId);
    }
    return reply(404);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const standin: ImdsStandin = {
    url: `http://127.0.0.1:${port}`,
    requests,
    userData: options.userData ?? null,
    region: options.region ?? 'eu-central-1',
    instanceId: options.instanceId === undefined ? 'i-0123456789abcdef0' : options.instanceId,
    refuseTokens: false,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return standin;
}
