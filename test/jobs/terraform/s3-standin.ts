// A real S3-protocol server (s3rver) behind a small loopback proxy that adds the two things
// s3rver lacks and the tests need: conditional writes (`If-None-Match: *`, what Terraform's
// S3 backend locks with when `use_lockfile` is on: a held lock is a 412) and the bucket
// settings `infra init` asks for (versioning, encryption), kept in memory.
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

export const S3_KEY = 'S3RVER';
export const S3_SECRET = 'S3RVER';

export interface S3StandIn {
  endpoint: string;
  /** Bucket settings written through the proxy: `<bucket>?versioning` → the XML body. */
  settings: Map<string, string>;
  /** An object's body, or undefined when missing (read past the proxy, unsigned). */
  get(bucket: string, key: string): Promise<string | undefined>;
  close(): Promise<void>;
}

const PRECONDITION_FAILED =
  '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>' +
  '<Message>At least one of the pre-conditions you specified did not hold</Message></Error>';

export async function startS3StandIn(buckets: string[]): Promise<S3StandIn> {
  const directory = mkdtempSync(join(tmpdir(), 's3-standin-'));
  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const { port: backPort } = await s3rver.run();
  const settings = new Map<string, string>();
  // Conditional writes one at a time, so check-then-put is atomic as S3's is.
  let conditional: Promise<unknown> = Promise.resolve();

  const request = (method: string, path: string, headers: http.IncomingHttpHeaders = {}) =>
    new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: backPort, method, path, headers }, resolve);
      req.on('error', reject);
      req.end();
    });

  const forward = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const up = http.request(
      { host: '127.0.0.1', port: backPort, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const proxy = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const [, bucket = '', ...rest] = url.pathname.split('/');
    const sub = ['versioning', 'encryption'].find((q) => url.searchParams.has(q));
    if (sub !== undefined && rest.join('') === '') {
      const key = `${bucket}?${sub}`;
      if (req.method === 'PUT') {
        const body: Buffer[] = [];
        req.on('data', (d: Buffer) => body.push(d));
        req.on('end', () => {
          settings.set(key, Buffer.concat(body).toString());
          res.writeHead(200).end();
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'application/xml' });
      res.end(settings.get(key) ?? '<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration/>');
      return;
    }
    if (req.method === 'PUT' && req.headers['if-none-match'] === '*') {
      req.pause();
      conditional = conditional.then(async () => {
        const head = await request('HEAD', url.pathname);
        head.resume();
        if (head.statusCode === 200) {
          req.resume();
          res.writeHead(412, { 'content-type': 'application/xml' }).end(PRECONDITION_FAILED);
          return;
        }
        await new Promise<void>((resolve) => {
          res.on('finish', resolve);
          res.on('close', resolve);
          forward(req, res);
        });
      });
      return;
    }
    forward(req, res);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    settings,
    async get(bucket, key) {
      const res = await request('GET', `/${bucket}/${key}`);
      const body: Buffer[] = [];
      for await (const chunk of res) body.push(chunk as Buffer);
      return res.statusCode === 200 ? Buffer.concat(body).toString() : undefined;
    },
    async close() {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await s3rver.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
