import { createServer, IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A scripted stand-in for the Anthropic Messages API, for the real Claude Code CLI to talk to
 * through ANTHROPIC_BASE_URL. Conversation requests (`POST /v1/messages` carrying tools) consume
 * the scripted replies in order and are answered as Anthropic's SSE stream; side requests (no
 * tools, e.g. a title) get a short default text without consuming the script; count_tokens and any
 * other path (e.g. `HEAD /api/hello`, sent when nonessential traffic is allowed) answer 200.
 * After a tool_use reply the CLI runs the tool and sends the tool_result in a new request, which
 * the next scripted reply answers.
 */
export class FakeAnthropic {
  /** Every `POST /v1/messages` received, in order, with its parsed body. */
  readonly requests: RecordedRequest[] = [];
  /** Every other request (count_tokens, health checks, …), by method and path. */
  readonly otherRequests: Array<{ method: string; path: string }> = [];
  private readonly replies: FakeReply[] = [];
  private toolUseCount = 0;
  private messageCount = 0;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly options: Required<FakeAnthropicOptions>,
  ) {}

  static async start(options: FakeAnthropicOptions = {}): Promise<FakeAnthropic> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const fake = new FakeAnthropic(server, `http://127.0.0.1:${port}`, { ...DEFAULT_OPTIONS, ...options });
    server.on('request', (request, response) => fake.handle(request, response).catch(() => response.destroy()));
    return fake;
  }

  /** Queues replies for the next conversation requests, after any still queued. */
  script(replies: FakeReply[]): void {
    this.replies.push(...replies);
  }

  get conversationRequests(): RecordedRequest[] {
    return this.requests.filter((request) => request.conversation);
  }

  get unconsumedReplies(): number {
    return this.replies.length;
  }

  /** Resolves once `count` conversation requests have arrived (e.g. a stalled one is in flight). */
  async waitForConversationRequests(count: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.conversationRequests.length < count) {
      if (Date.now() > deadline) throw new Error(`fake Anthropic: ${this.conversationRequests.length} of ${count} requests after ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  /** Forgets queued replies and recorded requests, for reuse across tests. */
  reset(): void {
    this.replies.length = 0;
    this.requests.length = 0;
    this.otherRequests.length = 0;
  }

  /** Closes the server, cutting any stalled or streaming response. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request);
    const path = request.url ?? '/';
    if (request.method === 'POST' && path.split('?')[0] === '/v1/messages') {
      return this.answerMessages(request, response, path, body);
    }
    this.otherRequests.push({ method: request.method ?? 'GET', path });
    if (path.startsWith('/v1/messages/count_tokens')) {
      return sendJson(response, 200, { input_tokens: Math.ceil(body.length / 4) });
    }
    sendJson(response, 200, {});
  }

  private async answerMessages(request: IncomingMessage, response: ServerResponse, path: string, rawBody: string): Promise<void> {
    let body: MessagesRequestBody;
    try {
      body = JSON.parse(rawBody) as MessagesRequestBody;
    } catch {
      return sendJson(response, 400, apiError('invalid_request_error', 'body is not JSON'));
    }
    const conversation = Array.isArray(body.tools) && body.tools.length > 0;
    this.requests.push({ path, headers: request.headers, body, conversation });
    if (!conversation) return this.streamTurn(response, body, { content: [{ type: 'text', text: this.options.sideReplyText }], delayMs: 0 });
    const reply = this.replies.shift() ?? { content: [{ type: 'text', text: this.options.unscriptedReplyText }] };
    if ('stall' in reply) return this.stall(response, body, reply.stall);
    if ('error' in reply) return sendJson(response, reply.error.status, apiError(reply.error.type, reply.error.message));
    return this.streamTurn(response, body, reply);
  }

  private async streamTurn(response: ServerResponse, body: MessagesRequestBody, turn: FakeTurn): Promise<void> {
    const delayMs = turn.delayMs ?? this.options.delayMs;
    const usage = turn.usage ?? this.options.usage;
    const stopReason = turn.content.some((block) => block.type === 'tool_use') ? 'tool_use' : 'end_turn';
    const events: SseEvent[] = [
      this.messageStart(body.model, usage.input_tokens),
      { type: 'ping' },
      ...turn.content.flatMap((block, index) => this.blockEvents(block, index)),
      { type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } },
      { type: 'message_stop' },
    ];
    response.writeHead(200, SSE_HEADERS);
    for (const event of events) {
      if (response.destroyed) return;
      response.write(formatSse(event));
      if (delayMs > 0) await sleep(delayMs);
    }
    response.end();
  }

  private blockEvents(block: FakeBlock, index: number): SseEvent[] {
    if (block.type === 'text') {
      return [
        { type: 'content_block_start', index, content_block: { type: 'text', text: '' } },
        ...splitInPieces(block.text, this.options.piecesPerBlock).map((text) => ({
          type: 'content_block_delta',
          index,
          delta: { type: 'text_delta', text },
        })),
        { type: 'content_block_stop', index },
      ];
    }
    const id = block.id ?? `toolu_fake_${String(++this.toolUseCount).padStart(4, '0')}`;
    return [
      { type: 'content_block_start', index, content_block: { type: 'tool_use', id, name: block.name, input: {} } },
      ...splitInPieces(JSON.stringify(block.input), this.options.piecesPerBlock).map((partial_json) => ({
        type: 'content_block_delta',
        index,
        delta: { type: 'input_json_delta', partial_json },
      })),
      { type: 'content_block_stop', index },
    ];
  }

  private stall(response: ServerResponse, body: MessagesRequestBody, mode: FakeStall['stall']): void {
    if (mode === 'silent') return;
    response.writeHead(200, SSE_HEADERS);
    response.write(formatSse(this.messageStart(body.model, this.options.usage.input_tokens)));
  }

  private messageStart(model: string, inputTokens: number): SseEvent {
    return {
      type: 'message_start',
      message: {
        id: `msg_fake_${String(++this.messageCount).padStart(6, '0')}`,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: inputTokens, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      },
    };
  }
}

export interface FakeAnthropicOptions {
  /** Pause after each SSE event, so that streaming is observable (default 10 ms). */
  delayMs?: number;
  /** How many deltas each text or tool input is streamed in (default 3). */
  piecesPerBlock?: number;
  /** Usage reported for each scripted turn (non-zero, so that the CLI reports a cost). */
  usage?: Usage;
  /** Answer to side requests (no tools), which do not consume the script. */
  sideReplyText?: string;
  /** Answer to a conversation request when the script is exhausted. */
  unscriptedReplyText?: string;
}

export type FakeBlock =
  | { type: 'text'; text: string }
  /** Without an id, one is generated (`toolu_fake_0001`, …). */
  | { type: 'tool_use'; name: string; input: Record<string, unknown>; id?: string };

export interface FakeTurn {
  content: FakeBlock[];
  /** Overrides the server's delay between events for this turn; a large one answers slowly. */
  delayMs?: number;
  usage?: Usage;
}

/**
 * Holds the request open without ever finishing it: `silent` sends nothing at all, `mid-stream`
 * sends the headers and message_start. Either way the CLI waits (observed: >100 s, no retry).
 */
export interface FakeStall {
  stall: 'silent' | 'mid-stream';
}

/** An API error response; the CLI retries it (CLAUDE_CODE_MAX_RETRIES) before reporting it. */
export interface FakeError {
  error: { status: number; type: string; message: string };
}

export type FakeReply = FakeTurn | FakeStall | FakeError;

export interface Usage {
  input_tokens: number;
  output_tokens: number;
}

export interface RecordedRequest {
  /** Path with query, e.g. `/v1/messages?beta=true`. */
  path: string;
  headers: IncomingHttpHeaders;
  body: MessagesRequestBody;
  /** False for side requests, answered with the default text. */
  conversation: boolean;
}

export interface MessagesRequestBody {
  model: string;
  stream?: boolean;
  system?: string | Array<{ type: string; text?: string }>;
  messages: Array<{ role: string; content: string | ContentBlock[] }>;
  tools?: Array<{ name: string }>;
  [key: string]: unknown;
}

export interface ContentBlock {
  type: string;
  text?: string;
  tool_use_id?: string;
  content?: string | ContentBlock[];
  [key: string]: unknown;
}

/** Every text the request's messages carry (prompts, replies, tool results), in order. */
export function requestTexts(body: MessagesRequestBody): string[] {
  return body.messages.flatMap((message) => contentTexts(message.content));
}

/** The tool results the request sends back, keyed by tool_use_id. */
export function toolResults(body: MessagesRequestBody): Record<string, string> {
  const blocks = body.messages.flatMap((message) => (typeof message.content === 'string' ? [] : message.content));
  return Object.fromEntries(
    blocks.filter((block) => block.type === 'tool_result').map((block) => [block.tool_use_id, contentTexts(block.content ?? '').join('\n')]),
  );
}

/** The system prompt as one string. */
export function systemText(body: MessagesRequestBody): string {
  return typeof body.system === 'string' ? body.system : (body.system ?? []).map((block) => block.text ?? '').join('\n');
}

function contentTexts(content: string | ContentBlock[]): string[] {
  if (typeof content === 'string') return [content];
  return content.flatMap((block) => {
    if (block.type === 'text' && block.text !== undefined) return [block.text];
    if (block.type === 'tool_result') return contentTexts(block.content ?? '');
    return [];
  });
}

type SseEvent = { type: string; [key: string]: unknown };

const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' };

const DEFAULT_OPTIONS: Required<FakeAnthropicOptions> = {
  delayMs: 10,
  piecesPerBlock: 3,
  usage: { input_tokens: 120, output_tokens: 30 },
  sideReplyText: 'Fake side reply',
  unscriptedReplyText: '(fake Anthropic: no scripted reply left)',
};

function formatSse(event: SseEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** Splits by code points, so that no delta carries half of a surrogate pair. */
function splitInPieces(text: string, pieces: number): string[] {
  const codePoints = Array.from(text);
  const size = Math.max(1, Math.ceil(codePoints.length / pieces));
  const result: string[] = [];
  for (let start = 0; start < codePoints.length; start += size) result.push(codePoints.slice(start, start + size).join(''));
  return result.length > 0 ? result : [''];
}

function apiError(type: string, message: string) {
  return { type: 'error', error: { type, message } };
}

function sendJson(response: ServerResponse, status: number, payload: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(payload));
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
