export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/**
 * Reads a Server-Sent Events response with fetch (so it can send headers such as Last-Event-ID),
 * until `done` arrives, `stopAfter` events were read, or the server closes the stream.
 */
export async function readSse(url: string, options: { token: string; lastEventId?: string; stopAfter?: number; until?: (event: SseEvent) => boolean; method?: string; body?: unknown } ): Promise<{ events: SseEvent[]; raw: string; contentType: string | null }> {
  const controller = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${options.token}`, accept: 'text/event-stream' };
  if (options.lastEventId) headers['last-event-id'] = options.lastEventId;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(url, { method: options.method ?? 'GET', headers, body: options.body === undefined ? undefined : JSON.stringify(options.body), signal: controller.signal });
  if (!response.ok || !response.body) throw new Error(`SSE request failed: ${response.status} ${await response.text()}`);
  const events: SseEvent[] = [];
  let raw = '';
  let buffer = '';
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      raw += text;
      buffer += text;
      let boundary: number;
      while ((boundary = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        const event = parseSseBlock(block);
        if (!event) continue;
        events.push(event);
        if (event.event === 'done' || (options.stopAfter !== undefined && events.length >= options.stopAfter) || options.until?.(event)) {
          controller.abort();
          return { events, raw, contentType: response.headers.get('content-type') };
        }
      }
    }
  } catch (error) {
    if ((error as Error).name !== 'AbortError') throw error;
  }
  return { events, raw, contentType: response.headers.get('content-type') };
}

/** One SSE message block (the text between blank lines) → its fields; comments are ignored. */
export function parseSseBlock(block: string): SseEvent | undefined {
  const event: SseEvent = { event: 'message', data: '' };
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':') || line === '') continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') event.id = value;
    else if (field === 'event') event.event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0 && event.id === undefined) return undefined;
  event.data = data.join('\n');
  return event;
}

/** The ids of run events, as numbers: what the no-gap, no-duplicate checks compare. */
export function seqsOf(events: SseEvent[]): number[] {
  return events.map((event) => Number(event.id));
}

/** Whether the event is an assistant message that calls a tool. */
export function usesATool(event: SseEvent): boolean {
  return event.event === 'assistant' && JSON.parse(event.data).message.content.some((block: { type: string }) => block.type === 'tool_use');
}

/** The text the model streamed, from the partial-message events (text deltas) in order. */
export function streamedText(events: SseEvent[]): string {
  return events
    .filter((event) => event.event === 'stream_event')
    .map((event) => JSON.parse(event.data).event)
    .filter((event) => event?.type === 'content_block_delta' && event.delta?.type === 'text_delta')
    .map((event) => event.delta.text as string)
    .join('');
}
