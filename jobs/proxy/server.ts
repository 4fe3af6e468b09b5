// The model proxy: the agent runtime's only way to the model providers. It runs as the
// control plane's user (clawdinator-model-proxy, nix/units.json), holds the provider keys the
// agent's user cannot read, and listens on a loopback port that nix/agent.nix closes to every
// uid but the agent's (nftables `meta skuid`). openclaw takes an http base URL per provider
// (models.providers.<id>.baseUrl), so the runtime is configured with this proxy and a
// placeholder key (lib/agent-config.ts).
//
// What passes: `POST /<provider>/<allowed path>` only — /anthropic/v1/messages,
// /openai/v1/chat/completions, /openai/v1/responses — forwarded to that provider's fixed
// origin. Everything else is answered 403 with one line: other paths and methods, unknown
// providers, absolute-form URLs (`GET http://elsewhere/`), CONNECT and upgrades. The client's
// own credentials and cookies are dropped and the key set by the proxy; only content headers
// and the providers' version/beta headers pass. Responses stream through unchanged while
// jobs/proxy/meter.ts reads their token counts; the caller records them (onUsage) after the
// response ended, off the request's path.
//
// The key never appears in a log line, an error or a response: errors name the provider and
// the failure's code.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { ProxyProvider } from '../../lib/agent-config.js';
import type { UsageRecord } from '../usage.js';
import { type ApiKind, createMeter } from './meter.js';

interface ProviderSpec {
  /** Upstream path (after /<provider>) → the API it speaks. */
  paths: Record<string, ApiKind>;
  /** Request headers (lowercase) passed through besides the content headers. */
  passHeaders: string[];
  keyHeaders: (key: string) => Record<string, string>;
  defaultOrigin: string;
}

export const PROVIDER_SPECS: Record<ProxyProvider, ProviderSpec> = {
  anthropic: {
    paths: { '/v1/messages': 'anthropic-messages' },
    passHeaders: ['anthropic-version', 'anthropic-beta'],
    keyHeaders: (key) => ({ 'x-api-key': key }),
    defaultOrigin: 'https://api.anthropic.com',
  },
  openai: {
    paths: { '/v1/chat/completions': 'openai-chat', '/v1/responses': 'openai-responses' },
    passHeaders: ['openai-beta'],
    keyHeaders: (key) => ({ authorization: `Bearer ${key}` }),
    defaultOrigin: 'https://api.openai.com',
  },
};

const CONTENT_HEADERS = ['content-type', 'accept', 'user-agent'];
/** The SDKs' own telemetry headers (x-stainless-os, …): harmless, and providers log them. */
const STAINLESS = /^x-stainless-[a-z0-9-]{1,40}$/;
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'set-cookie',
]);
const QUERY = /^(\?[A-Za-z0-9_.=&-]{0,200})?$/;

export interface ProxyRoute {
  origin: URL;
  key: string;
}

export interface ModelProxyOptions {
  /** Default 127.0.0.1: never another interface. */
  host?: string;
  /** 0: any free port (tests). */
  port: number;
  /** The providers this host has a key for. */
  routes: Partial<Record<ProxyProvider, ProxyRoute>>;
  /** Called after each successful response that carried usage; must not throw. */
  onUsage: (usage: UsageRecord) => void;
  /** One line per refused or failed request (never a key, never a body). */
  onRefused?: (line: string) => void;
  maxBodyBytes?: number;
}

export interface ModelProxy {
  port: number;
  close(): Promise<void>;
}

export async function startModelProxy(options: ModelProxyOptions): Promise<ModelProxy> {
  const maxBody = options.maxBodyBytes ?? 32 * 1024 * 1024;
  const agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 64 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 64 }),
  };

  const refuse = (res: ServerResponse, status: number, line: string) => {
    options.onRefused?.(line);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = `model proxy: ${line}\n`;
    res.writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    });
    res.end(body);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => refuse(res, 502, `failed: ${codeOf(err)}`));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '';
    const method = req.method ?? '';
    // Only origin-form targets: an absolute URL (a forward-proxy request) names a host the
    // proxy never goes to.
    if (!url.startsWith('/')) return refuse(res, 403, `${method} to another host is not allowed`);
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const query = q === -1 ? '' : url.slice(q);
    const slash = path.indexOf('/', 1);
    const provider = (slash === -1 ? path.slice(1) : path.slice(1, slash)) as ProxyProvider;
    const rest = slash === -1 ? '' : path.slice(slash);
    const spec = Object.hasOwn(PROVIDER_SPECS, provider) ? PROVIDER_SPECS[provider] : undefined;
    const kind = spec !== undefined && Object.hasOwn(spec.paths, rest) ? spec.paths[rest] : undefined;
    if (spec === undefined || kind === undefined || method !== 'POST' || !QUERY.test(query)) {
      return refuse(res, 403, `${method} ${shorten(path)} is not an allowed request`);
    }
    const route = options.routes[provider];
    if (route === undefined) return refuse(res, 503, `no ${provider} key on this host`);

    let body = await readBody(req, maxBody);
    if (body === null) return refuse(res, 413, `request body over ${maxBody} bytes`);
    if (kind === 'openai-chat') body = withStreamUsage(body);

    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value !== 'string') continue;
      if (CONTENT_HEADERS.includes(name) || spec.passHeaders.includes(name) || STAINLESS.test(name)) {
        headers[name] = value;
      }
    }
    Object.assign(headers, spec.keyHeaders(route.key), {
      host: route.origin.host,
      'content-length': String(body.length),
      // The meter reads the body: no compression between the provider and us.
      'accept-encoding': 'identity',
    });
    const secure = route.origin.protocol === 'https:';
    const upstream = (secure ? https : http).request({
      protocol: route.origin.protocol,
      hostname: route.origin.hostname,
      port: route.origin.port || (secure ? 443 : 80),
      method: 'POST',
      path: rest + query,
      headers,
      agent: secure ? agents.https : agents.http,
    });
    // The client went away: so does the upstream request (a stream the agent abandoned).
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    upstream.on('error', (err) => refuse(res, 502, `${provider} unreachable (${codeOf(err)})`));
    upstream.on('response', (up) => {
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(up.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
      }
      res.writeHead(up.statusCode ?? 502, out);
      const ok = (up.statusCode ?? 0) >= 200 && (up.statusCode ?? 0) < 300;
      const meter = ok ? createMeter(kind, up.headers['content-type']) : null;
      if (meter !== null) up.on('data', (chunk: Buffer) => meter.push(chunk));
      up.on('end', () => {
        const usage = meter?.result() ?? null;
        if (usage !== null) options.onUsage(usage);
      });
      up.on('error', () => res.destroy());
      up.pipe(res);
    });
    upstream.end(body);
  }

  // Tunnels and protocol switches are never a model request.
  const refuseSocket = (req: IncomingMessage, socket: Socket) => {
    options.onRefused?.(`${req.method} ${shorten(req.url ?? '')} is not an allowed request`);
    socket.end(
      'HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nmodel proxy: tunnels and upgrades are not allowed\n',
    );
  };
  server.on('connect', refuseSocket);
  server.on('upgrade', refuseSocket);
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : options.port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

/** The request body, or null past the cap (reading stops there). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > max) {
        over = true;
        resolve(null);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

/**
 * A streamed chat completion reports its usage only when asked (stream_options.include_usage):
 * the proxy asks, so a stream cannot go unmetered. Anything it cannot parse goes as it came
 * (the provider answers it).
 */
function withStreamUsage(body: Buffer): Buffer {
  let data: unknown;
  try {
    data = JSON.parse(body.toString('utf8'));
  } catch {
    return body;
  }
  if (typeof data !== 'object' || data === null || (data as { stream?: unknown }).stream !== true) return body;
  const d = data as { stream_options?: unknown };
  const options = typeof d.stream_options === 'object' && d.stream_options !== null ? d.stream_options : {};
  if ((options as { include_usage?: unknown }).include_usage === true) return body;
  d.stream_options = { ...options, include_usage: true };
  return Buffer.from(JSON.stringify(d));
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : 'error';
}

function shorten(path: string): string {
  const clean = path.replace(/[^\x21-\x7e]/g, '?');
  return clean.length > 80 ? `${clean.slice(0, 80)}…` : clean;
}
