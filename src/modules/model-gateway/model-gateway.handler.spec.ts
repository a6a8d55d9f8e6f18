import { Logger } from '@nestjs/common';
import { createServer, IncomingHttpHeaders, IncomingMessage, request as httpRequest, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DataSource } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { insertRun, openTestDatabase } from '../../testing/pglite-database';
import { ModelGatewayToken } from '../runs/model-gateway-token.entity';
import { ModelGatewayTokens } from '../runs/model-gateway-tokens.service';
import { ModelGatewayHandler } from './model-gateway.handler';

const OPERATOR_KEY = 'sk-ant-operator-key-never-in-a-sandbox';

/** A real HTTP server standing in for the Anthropic API; each test says how it answers. */
class Upstream {
  readonly received: Array<{ method: string; url: string; headers: IncomingHttpHeaders; body: string }> = [];
  answer: (request: IncomingMessage, response: ServerResponse) => void = (_request, response) => response.end('{}');
  private constructor(private readonly server: Server, readonly url: string) {}

  static async start(): Promise<Upstream> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const upstream = new Upstream(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        upstream.received.push({ method: request.method!, url: request.url!, headers: request.headers, body: Buffer.concat(chunks).toString('utf8') });
        upstream.answer(request, response);
      });
    });
    return upstream;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  chunks: Buffer[];
}

/** A raw HTTP client, so that the test sees exactly the bytes and chunks the gateway sends. */
function send(url: string, options: { method?: string; path: string; headers?: Record<string, string>; body?: string; onChunk?: (chunk: Buffer, request: ReturnType<typeof httpRequest>) => void }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${url}${options.path}`, { method: options.method ?? 'POST', headers: options.headers });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        options.onChunk?.(chunk, request);
      });
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body: Buffer.concat(chunks), chunks }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

const json = (answer: Answer) => JSON.parse(answer.body.toString('utf8'));
const sse = (type: string, payload: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...payload })}\n\n`;
const MESSAGE_BODY = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] });

describe('ModelGatewayHandler (real upstream server, real PGlite database)', () => {
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  let dataSource: DataSource;
  let tokens: ModelGatewayTokens;
  let upstream: Upstream;
  let gateway: Server;
  let gatewayUrl: string;
  let handler: ModelGatewayHandler;

  async function startGateway(env: Record<string, string>): Promise<void> {
    handler = new ModelGatewayHandler(tokens, AppConfig.fromEnvironment({ DATA_DIR: '/tmp/model-gateway-spec', ...env }));
    gateway = createServer(handler.handle);
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
  }

  async function stopGateway(): Promise<void> {
    const closed = new Promise<void>((resolve) => gateway.close(() => resolve()));
    gateway.closeAllConnections();
    handler.onApplicationShutdown();
    await closed;
  }

  async function activeRunToken(): Promise<{ runId: string; token: string }> {
    const runId = await insertRun(dataSource);
    return { runId, token: await tokens.issue(runId) };
  }

  async function usageWhenRecorded(runId: string, requests = 1) {
    for (let attempt = 0; attempt < 200; attempt++) {
      const usage = (await tokens.usageOf([runId])).get(runId)!;
      if (usage.requests >= requests) return usage;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error('usage was never recorded');
  }

  beforeAll(async () => {
    database = await openTestDatabase();
    dataSource = database.dataSource;
    tokens = new ModelGatewayTokens(dataSource.getRepository(ModelGatewayToken));
    upstream = await Upstream.start();
  });
  afterAll(async () => {
    await upstream?.stop();
    await database?.close();
  });
  beforeEach(async () => {
    for (const level of ['log', 'warn', 'error', 'debug'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    upstream.received.length = 0;
    upstream.answer = (_request, response) => response.end('{}');
    await startGateway({ ANTHROPIC_BASE_URL: upstream.url, ANTHROPIC_API_KEY: OPERATOR_KEY });
  });
  afterEach(async () => {
    await stopGateway();
    jest.restoreAllMocks();
  });

  it('answers 404 in Anthropic error shape for every path and method Claude Code does not need, forwarding nothing', async () => {
    const { token } = await activeRunToken();
    const probes = [
      { method: 'GET', path: '/v1/messages' },
      { method: 'POST', path: '/v1/complete' },
      { method: 'GET', path: '/v1/models' },
      { method: 'POST', path: '/v1/messages/batches' },
      { method: 'POST', path: '/v1/messages/count_tokens' },
      { method: 'POST', path: '/v1/messages/' },
      { method: 'POST', path: '/v1/messages/../files' },
      { method: 'GET', path: '/api/health' },
      { method: 'POST', path: '/' },
    ];

    for (const probe of probes) {
      const answer = await send(gatewayUrl, { ...probe, headers: { 'x-api-key': token } });
      expect({ probe, status: answer.status, body: json(answer) }).toEqual({ probe, status: 404, body: { type: 'error', error: { type: 'not_found_error', message: 'Not found' } } });
    }
    expect(upstream.received).toEqual([]);
  });

  it('answers 401 authentication_error without a token, with an unknown one, and with a revoked one', async () => {
    const { runId, token } = await activeRunToken();
    await tokens.revoke(runId);
    const attempts: Array<Record<string, string>> = [{}, { 'x-api-key': 'mgw_unknownunknownunknownunknownunknownunknow' }, { 'x-api-key': token }, { authorization: `Bearer ${token}` }, { 'x-api-key': OPERATOR_KEY }];

    for (const headers of attempts) {
      const answer = await send(gatewayUrl, { path: '/v1/messages', headers: { 'content-type': 'application/json', ...headers }, body: MESSAGE_BODY });
      expect(answer.status).toBe(401);
      expect(json(answer)).toEqual({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
    }
    expect(upstream.received).toEqual([]);
  });

  it('forwards with the operator key instead of the run token, keeping the API headers and the body', async () => {
    const { token } = await activeRunToken();

    const answer = await send(gatewayUrl, {
      path: '/v1/messages?beta=true',
      headers: {
        'x-api-key': token,
        'anthropic-version': '2023-06-01',
        'anthropic-beta': 'claude-code-20250219',
        'content-type': 'application/json',
        'user-agent': 'claude-cli/2.1',
        'x-forwarded-for': '10.0.0.9',
        'proxy-authorization': 'Basic c2VjcmV0',
        cookie: 'a=b',
      },
      body: MESSAGE_BODY,
    });

    expect(answer.status).toBe(200);
    const [forwarded] = upstream.received;
    expect(forwarded).toMatchObject({ method: 'POST', url: '/v1/messages?beta=true', body: MESSAGE_BODY });
    expect(forwarded.headers).toMatchObject({
      'x-api-key': OPERATOR_KEY,
      'anthropic-version': '2023-06-01',
      'anthropic-beta': 'claude-code-20250219',
      'content-type': 'application/json',
      'user-agent': 'claude-cli/2.1',
      host: new URL(upstream.url).host,
    });
    for (const header of ['authorization', 'x-forwarded-for', 'proxy-authorization', 'cookie']) expect(forwarded.headers[header]).toBeUndefined();
    expect(JSON.stringify(forwarded.headers)).not.toContain(token);
  });

  it('accepts the run token as a Bearer token and forwards ANTHROPIC_AUTH_TOKEN as Bearer when that is the configured credential', async () => {
    await stopGateway();
    await startGateway({ ANTHROPIC_BASE_URL: upstream.url, ANTHROPIC_AUTH_TOKEN: 'operator-oauth-token' });
    const { token } = await activeRunToken();

    const answer = await send(gatewayUrl, { path: '/v1/messages', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });

    expect(answer.status).toBe(200);
    expect(upstream.received[0].url).toBe('/v1/messages');
    expect(upstream.received[0].headers.authorization).toBe('Bearer operator-oauth-token');
    expect(upstream.received[0].headers['x-api-key']).toBeUndefined();
  });

  it('streams an SSE response through byte for byte, each event before the upstream has finished, and records its usage', async () => {
    const { runId, token } = await activeRunToken();
    const events = [
      sse('message_start', { message: { id: 'msg_1', usage: { input_tokens: 120, output_tokens: 1, cache_creation_input_tokens: 5, cache_read_input_tokens: 7 } } }),
      sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'héllo "usage" wörld ✓' } }),
      sse('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 42 } }),
      sse('message_stop', {}),
    ];
    let clientGot!: () => void;
    upstream.answer = (_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'request-id': 'req_up_1' });
      let next = 0;
      const writeNext = () => {
        if (next === events.length) return response.end();
        // The next event is sent only once the client holds the previous one: a buffering gateway would hang here.
        response.write(events[next++]);
        clientGot = writeNext;
      };
      writeNext();
    };

    const answer = await send(gatewayUrl, {
      path: '/v1/messages?beta=true',
      headers: { 'x-api-key': token, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: MESSAGE_BODY,
      onChunk: () => setImmediate(() => clientGot()),
    });

    expect(answer.status).toBe(200);
    expect(answer.headers).toMatchObject({ 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'request-id': 'req_up_1' });
    expect(answer.body.equals(Buffer.from(events.join(''), 'utf8'))).toBe(true);
    expect(answer.chunks.length).toBeGreaterThanOrEqual(events.length);
    expect(await usageWhenRecorded(runId)).toEqual({ requests: 1, input_tokens: 120, output_tokens: 42, cache_creation_input_tokens: 5, cache_read_input_tokens: 7 });
  });

  it('passes a JSON response and an upstream error through unchanged, recording the usage of the JSON one', async () => {
    const { runId, token } = await activeRunToken();
    const reply = JSON.stringify({ id: 'msg_2', type: 'message', content: [], usage: { input_tokens: 30, output_tokens: 12, cache_read_input_tokens: 3 } });
    const overloaded = JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
    const replies = [{ status: 200, body: reply }, { status: 529, body: overloaded }];
    upstream.answer = (_request, response) => {
      const next = replies.shift()!;
      response.writeHead(next.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(next.body) });
      response.end(next.body);
    };
    const headers = { 'x-api-key': token, 'content-type': 'application/json' };

    const ok = await send(gatewayUrl, { path: '/v1/messages', headers, body: '{}' });
    const failed = await send(gatewayUrl, { path: '/v1/messages', headers, body: '{}' });

    expect({ status: ok.status, body: ok.body.toString('utf8') }).toEqual({ status: 200, body: reply });
    expect({ status: failed.status, body: failed.body.toString('utf8') }).toEqual({ status: 529, body: overloaded });
    expect(await usageWhenRecorded(runId, 2)).toEqual({ requests: 2, input_tokens: 30, output_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 3 });
  });

  it('answers 502 api_error when the upstream cannot be reached', async () => {
    await stopGateway();
    const closed = await Upstream.start();
    const deadUrl = closed.url;
    await closed.stop();
    await startGateway({ ANTHROPIC_BASE_URL: deadUrl, ANTHROPIC_API_KEY: OPERATOR_KEY });
    const { token } = await activeRunToken();

    const answer = await send(gatewayUrl, { path: '/v1/messages', headers: { 'x-api-key': token, 'content-type': 'application/json' }, body: MESSAGE_BODY });

    expect(answer.status).toBe(502);
    expect(json(answer)).toEqual({ type: 'error', error: { type: 'api_error', message: 'The model API could not be reached' } });
  });

  it('aborts the upstream request when the client goes away mid-stream, still counting what was used', async () => {
    const { runId, token } = await activeRunToken();
    const upstreamClosed = new Promise<boolean>((resolve) => {
      upstream.answer = (_request, response) => {
        response.writeHead(200, { 'content-type': 'text/event-stream' });
        response.write(sse('message_start', { message: { usage: { input_tokens: 1 } } }));
        response.once('close', () => resolve(response.writableFinished));
      };
    });

    await send(gatewayUrl, { path: '/v1/messages', headers: { 'x-api-key': token, 'content-type': 'application/json' }, body: MESSAGE_BODY, onChunk: (_chunk, request) => request.destroy() }).catch(() => undefined);

    await expect(upstreamClosed).resolves.toBe(false);
    expect(await usageWhenRecorded(runId)).toMatchObject({ requests: 1, input_tokens: 1 });
  });
});
