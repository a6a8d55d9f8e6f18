import { StringDecoder } from 'node:string_decoder';

/** Token counts of one model response, as Anthropic reports them. */
export interface ResponseUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

const USAGE_FIELDS = ['input_tokens', 'output_tokens', 'cache_creation_input_tokens', 'cache_read_input_tokens'] as const;
/** A non-streaming response larger than this is passed on without being metered. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

/**
 * Reads the usage of a Messages API response from copies of its chunks, as they pass through the
 * gateway; it never changes or holds back the bytes themselves. SSE: `message_start` carries the
 * input side, `message_delta` the cumulative counts (which replace earlier ones). JSON: `usage`.
 */
export class UsageMeter {
  private readonly usage: ResponseUsage = { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private jsonChunks: Buffer[] | null = [];
  private jsonBytes = 0;

  constructor(private readonly kind: 'sse' | 'json' | 'other') {}

  static forContentType(contentType: string | undefined): UsageMeter {
    if (/^text\/event-stream\b/i.test(contentType ?? '')) return new UsageMeter('sse');
    if (/^application\/json\b/i.test(contentType ?? '')) return new UsageMeter('json');
    return new UsageMeter('other');
  }

  push(chunk: Buffer): void {
    if (this.kind === 'sse') return this.pushSse(this.decoder.write(chunk));
    if (this.kind === 'json' && this.jsonChunks) {
      this.jsonBytes += chunk.length;
      if (this.jsonBytes > MAX_JSON_BYTES) this.jsonChunks = null;
      else this.jsonChunks.push(chunk);
    }
  }

  /** The usage seen so far (all of it once the response ended). */
  end(): ResponseUsage {
    if (this.kind === 'sse') this.pushSse(`${this.decoder.end()}\n`);
    if (this.kind === 'json' && this.jsonChunks) {
      this.apply(parseJson(Buffer.concat(this.jsonChunks).toString('utf8'))?.usage);
      this.jsonChunks = null;
    }
    return { ...this.usage };
  }

  private pushSse(text: string): void {
    const lines = (this.pending + text).split('\n');
    this.pending = lines.pop() ?? '';
    for (const line of lines) {
      // Only two event types carry usage; skipping the rest keeps text deltas cheap.
      if (!line.startsWith('data:') || !line.includes('"usage"')) continue;
      const event = parseJson(line.slice('data:'.length).trim());
      if (event?.type === 'message_start') this.apply((event.message as { usage?: unknown } | undefined)?.usage);
      if (event?.type === 'message_delta') this.apply(event.usage);
    }
  }

  private apply(usage: unknown): void {
    if (!usage || typeof usage !== 'object') return;
    for (const field of USAGE_FIELDS) {
      const value = (usage as Record<string, unknown>)[field];
      if (typeof value === 'number' && Number.isFinite(value) && value >= 0) this.usage[field] = Math.floor(value);
    }
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
