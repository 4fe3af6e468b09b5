// A loopback stand-in for the model providers, speaking what the model proxy forwards:
// Anthropic `POST /v1/messages`, OpenAI `POST /v1/chat/completions` and `POST /v1/responses`,
// each as one JSON body or, when the request says `stream: true`, as server-sent events laid
// out as the providers send them (Anthropic message_start … message_delta … message_stop;
// OpenAI chat chunks with the usage chunk last only when stream_options.include_usage asks
// for it; OpenAI responses' response.completed). Every request is recorded (path, headers,
// body) so tests can see what reached "the provider"; the usage each response reports is set
// by the test.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';

export interface StandinUsage {
  /** Uncached input tokens. */
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface ModelStandin {
  url: string;
  requests: RecordedRequest[];
  usage: StandinUsage;
  /** Text deltas per streamed response (more makes a longer stream). */
  deltas: number;
  close(): Promise<void>;
}

export async function startModelStandin(usage: StandinUsage): Promise<ModelStandin> {
  const state = { usage, deltas: 3 };
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body });
      answer(req, res, body, state.usage, state.deltas);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    requests,
    get usage() {
      return state.usage;
    },
    set usage(u: StandinUsage) {
      state.usage = u;
    },
    get deltas() {
      return state.deltas;
    },
    set deltas(n: number) {
      state.deltas = n;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function answer(req: IncomingMessage, res: ServerResponse, raw: string, u: StandinUsage, deltas: number): void {
  let body: { model?: string; stream?: boolean; stream_options?: { include_usage?: boolean } };
  try {
    body = JSON.parse(raw);
  } catch {
    res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"bad json"}');
    return;
  }
  const model = body.model ?? 'standin-model';
  const path = (req.url ?? '').split('?')[0];
  const json = (value: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_standin' });
    res.end(JSON.stringify(value));
  };
  const sse = (events: [string | null, unknown][]) => {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    for (const [event, data] of events) {
      res.write(
        `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`,
      );
    }
    res.end();
  };
  const text = Array.from({ length: deltas }, (_, i) => `word${i} `);

  if (req.method === 'POST' && path === '/v1/messages') {
    const usage = {
      input_tokens: u.input,
      output_tokens: u.output,
      cache_read_input_tokens: u.cacheRead,
      cache_creation_input_tokens: u.cacheWrite,
    };
    if (!body.stream) {
      json({
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model,
        content: [{ type: 'text', text: text.join('') }],
        usage,
      });
      return;
    }
    sse([
      [
        'message_start',
        {
          type: 'message_start',
          message: {
            id: 'msg_1',
            type: 'message',
            role: 'assistant',
            model,
            content: [],
            usage: { ...usage, output_tokens: 1 },
          },
        },
      ],
      ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
      ...text.map((t): [string, unknown] => [
        'content_block_delta',
        { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t } },
      ]),
      ['content_block_stop', { type: 'content_block_stop', index: 0 }],
      [
        'message_delta',
        { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: u.output } },
      ],
      ['message_stop', { type: 'message_stop' }],
    ]);
    return;
  }

  if (req.method === 'POST' && path === '/v1/chat/completions') {
    const usage = {
      prompt_tokens: u.input + u.cacheRead,
      completion_tokens: u.output,
      total_tokens: u.input + u.cacheRead + u.output,
      prompt_tokens_details: { cached_tokens: u.cacheRead },
    };
    if (!body.stream) {
      json({
        id: 'chatcmpl-1',
        object: 'chat.completion',
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: text.join('') }, finish_reason: 'stop' }],
        usage,
      });
      return;
    }
    const withUsage = body.stream_options?.include_usage === true;
    const chunk = (delta: unknown, finish: string | null) => ({
      id: 'chatcmpl-1',
      object: 'chat.completion.chunk',
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...(withUsage ? { usage: null } : {}),
    });
    sse([
      [null, chunk({ role: 'assistant', content: '' }, null)],
      ...text.map((t): [null, unknown] => [null, chunk({ content: t }, null)]),
      [null, chunk({}, 'stop')],
      ...(withUsage
        ? [[null, { id: 'chatcmpl-1', object: 'chat.completion.chunk', model, choices: [], usage }] as [null, unknown]]
        : []),
      [null, '[DONE]'],
    ]);
    return;
  }

  if (req.method === 'POST' && path === '/v1/responses') {
    const usage = {
      input_tokens: u.input + u.cacheRead,
      input_tokens_details: { cached_tokens: u.cacheRead },
      output_tokens: u.output,
      total_tokens: u.input + u.cacheRead + u.output,
    };
    const response = (status: string, withUsage: boolean) => ({
      id: 'resp_1',
      object: 'response',
      status,
      model,
      output: [],
      usage: withUsage ? usage : null,
    });
    if (!body.stream) {
      json(response('completed', true));
      return;
    }
    sse([
      ['response.created', { type: 'response.created', response: response('in_progress', false) }],
      ...text.map((t): [string, unknown] => [
        'response.output_text.delta',
        { type: 'response.output_text.delta', delta: t },
      ]),
      ['response.completed', { type: 'response.completed', response: response('completed', true) }],
    ]);
    return;
  }

  res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
}
