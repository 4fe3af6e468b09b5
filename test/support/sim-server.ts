// The simulated cloud served over loopback HTTP, so worker processes that die and resume
// (test/support/fleet-worker-process.ts) share one cloud held by the test process. A call
// is `POST /call {method, args}` answered with `{value}` or `{error}`; Maps travel as
// `{__map: entries}`, bytes as `{__bytes: base64}`. The test may hold a method's calls (`hook`) to kill a worker at a
// chosen point, and reads the cloud (and its call counts) directly.
import { createServer, type Server } from 'node:http';
import type { SimCloud } from '../../jobs/cloud/sim.js';
import { OperationError } from '../../lib/errors.js';

/** The Redis list where fleet-worker-process.ts records each apply (`<name>:<pid>`). */
export const APPLIES = 'test:applies';

export interface SimServer {
  url: string;
  close(): Promise<void>;
}

function encode(value: unknown): unknown {
  // Bundle files travel as bytes (putBytes, getBytes).
  if (value instanceof Uint8Array) return { __bytes: Buffer.from(value).toString('base64') };
  if (value instanceof Map) return { __map: [...value.entries()].map(([k, v]) => [k, encode(v)]) };
  if (Array.isArray(value)) return value.map(encode);
  return value;
}

function decode(value: unknown): unknown {
  if (value !== null && typeof value === 'object' && '__bytes' in value) {
    return Buffer.from((value as { __bytes: string }).__bytes, 'base64');
  }
  if (value !== null && typeof value === 'object' && '__map' in value) {
    return new Map((value as { __map: [unknown, unknown][] }).__map.map(([k, v]) => [k, decode(v)]));
  }
  if (Array.isArray(value)) return value.map(decode);
  return value;
}

/** Serves `cloud`; `hook` runs before each call (e.g. holds `pingStatus` until released). */
export async function serveSim(
  cloud: SimCloud,
  hook: (method: string, args: unknown[]) => Promise<void> = async () => {},
): Promise<SimServer> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        let body: { value?: unknown; error?: { message: string } };
        try {
          const { method, args } = JSON.parse(Buffer.concat(chunks).toString()) as { method: string; args: unknown[] };
          const fn = (cloud as unknown as Record<string, unknown>)[method];
          if (typeof fn !== 'function') throw new Error(`the simulated cloud has no ${method}`);
          const decoded = args.map(decode);
          await hook(method, decoded);
          body = { value: encode(await fn.apply(cloud, decoded)) };
        } catch (err) {
          body = { error: { message: (err as Error).message } };
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/call`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The cloud as a worker process sees it: every method a call to the test's SimServer. */
export function simCloudClient(url: string): SimCloud {
  return new Proxy({} as SimCloud, {
    get(_target, method) {
      if (typeof method !== 'string' || method === 'then') return undefined;
      return async (...args: unknown[]) => {
        const res = await fetch(url, { method: 'POST', body: JSON.stringify({ method, args: args.map(encode) }) });
        const body = (await res.json()) as { value?: unknown; error?: { message: string } };
        if (body.error) throw new OperationError(body.error.message);
        return decode(body.value);
      };
    },
  });
}
