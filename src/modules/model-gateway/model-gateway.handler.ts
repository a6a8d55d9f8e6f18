import { Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { Agent as HttpAgent, IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, request as httpRequest, ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { AppConfig } from '../../config/app-config';
import { ModelGatewayTokens } from '../runs/model-gateway-tokens.service';
import { ModelUpstream, modelUpstreamOf } from './model-upstream';
import { UsageMeter } from './usage-meter';

/**
 * Exactly what the Claude Code CLI requests in print mode: observed against the fake model
 * (test/model-gateway.e2e-spec.ts), it sends only POST /v1/messages (with `?beta=true`).
 */
const FORWARDED_PATH = '/v1/messages';

/** Never forwarded upstream: hop-by-hop, proxy and client identity headers, and the run's own credential. */
const DROPPED_REQUEST_HEADERS = new Set([
  'host', 'authorization', 'x-api-key', 'cookie', 'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
  'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'forwarded', 'via', 'x-real-ip', 'accept-encoding',
]);
const DROPPED_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

type ErrorType = 'authentication_error' | 'not_found_error' | 'api_error';

/**
 * The model gateway: a reverse proxy to the Anthropic Messages API for the Claude process in a
 * sandbox. The sandbox authenticates with its run's token; the operator's credential is added
 * here and never leaves the service. Responses stream through unchanged, as their chunks arrive.
 */
@Injectable()
export class ModelGatewayHandler implements OnApplicationShutdown {
  private readonly logger = new Logger('ModelGateway');
  private readonly upstream: ModelUpstream | null;
  private readonly agent: HttpAgent;

  constructor(
    private readonly tokens: ModelGatewayTokens,
    config: AppConfig,
  ) {
    this.upstream = modelUpstreamOf(config);
    const isHttps = this.upstream?.baseUrl.protocol === 'https:';
    this.agent = isHttps ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  /** A plain Node request handler, for the loopback server and for the app's /model-gateway mount. */
  readonly handle = (request: IncomingMessage, response: ServerResponse): void => {
    this.serve(request, response).catch((error: Error) => {
      this.logger.error({ err: { message: error.message } }, 'model gateway request failed');
      if (!response.headersSent) sendError(response, 502, 'api_error', 'The model gateway could not handle the request');
      else response.destroy();
    });
  };

  onApplicationShutdown(): void {
    this.agent.destroy();
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const [pathname, query] = splitUrl(request.url ?? '/');
    if (request.method !== 'POST' || pathname !== FORWARDED_PATH) {
      request.resume();
      this.logger.debug({ method: request.method, path: pathname }, 'model gateway path not served');
      return sendError(response, 404, 'not_found_error', 'Not found');
    }
    const token = runTokenOf(request.headers);
    const runId = token ? await this.tokens.resolve(token) : null;
    if (!runId) {
      request.resume();
      this.logger.warn({ path: pathname }, 'model gateway refused a request without a valid run token');
      return sendError(response, 401, 'authentication_error', 'invalid x-api-key');
    }
    if (!this.upstream) {
      request.resume();
      return sendError(response, 502, 'api_error', 'The model gateway has no Anthropic credentials configured');
    }
    this.forward(request, response, { runId, pathname, query, upstream: this.upstream });
  }

  private forward(request: IncomingMessage, response: ServerResponse, target: { runId: string; pathname: string; query: string; upstream: ModelUpstream }): void {
    const startedAt = Date.now();
    const { runId, pathname, upstream } = target;
    const url = new URL(upstream.baseUrl.pathname.replace(/\/+$/, '') + pathname + target.query, upstream.baseUrl);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const outgoing = send(url, { method: 'POST', headers: this.upstreamHeaders(request.headers, upstream), agent: this.agent });

    outgoing.on('response', (incoming) => {
      const meter = UsageMeter.forContentType(incoming.headers['content-type']);
      response.writeHead(incoming.statusCode ?? 502, responseHeaders(incoming.headers));
      // Each chunk goes out as it arrives; the meter only reads a copy of the reference.
      incoming.on('data', (chunk: Buffer) => meter.push(chunk));
      incoming.pipe(response);
      incoming.once('close', () => {
        if (!incoming.complete) response.destroy();
        this.logger.debug({ run_id: runId, path: pathname, status: incoming.statusCode, duration_ms: Date.now() - startedAt }, 'model request forwarded');
        void this.record(runId, meter);
      });
    });
    outgoing.on('error', (error: Error) => {
      if (response.destroyed || response.writableEnded) return;
      this.logger.error({ run_id: runId, path: pathname, err: { message: error.message } }, 'model upstream unreachable');
      if (response.headersSent) return void response.destroy();
      sendError(response, 502, 'api_error', 'The model API could not be reached');
    });
    // A client that goes away (a killed run) must not keep a generation running upstream.
    response.once('close', () => {
      if (!response.writableFinished) outgoing.destroy();
    });
    request.pipe(outgoing);
  }

  private upstreamHeaders(headers: IncomingHttpHeaders, upstream: ModelUpstream): OutgoingHttpHeaders {
    const named = new Set(connectionTokens(headers.connection));
    const kept = Object.entries(headers).filter(([name]) => !DROPPED_REQUEST_HEADERS.has(name) && !named.has(name) && !name.startsWith('x-forwarded-'));
    // Uncompressed responses, so that the usage can be read from them as they pass.
    return { ...Object.fromEntries(kept), 'accept-encoding': 'identity', [upstream.authHeader.name]: upstream.authHeader.value };
  }

  private async record(runId: string, meter: UsageMeter): Promise<void> {
    try {
      await this.tokens.addUsage(runId, { requests: 1, ...meter.end() });
    } catch (error) {
      this.logger.error({ run_id: runId, err: { message: (error as Error).message } }, 'could not record model usage');
    }
  }
}

/** The run token, from `x-api-key` (what the CLI sends) or `Authorization: Bearer`. */
function runTokenOf(headers: IncomingHttpHeaders): string | undefined {
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey) return apiKey.trim();
  const match = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? '');
  return match?.[1];
}

function splitUrl(url: string): [string, string] {
  const index = url.indexOf('?');
  return index === -1 ? [url, ''] : [url.slice(0, index), url.slice(index)];
}

function connectionTokens(connection: string | undefined): string[] {
  return (connection ?? '').split(',').map((token) => token.trim().toLowerCase()).filter(Boolean);
}

function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(connectionTokens(headers.connection as string | undefined));
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !DROPPED_RESPONSE_HEADERS.has(name) && !named.has(name)));
}

/** Anthropic's error shape, so that the CLI reports gateway refusals like API errors. */
function sendError(response: ServerResponse, status: number, type: ErrorType, message: string): void {
  const body = JSON.stringify({ type: 'error', error: { type, message } });
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  response.end(body);
}
