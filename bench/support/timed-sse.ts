import { epochNow } from './stats';
import { parseSseBlock } from '../../test/support/sse-client';

export interface TimedEvent {
  id?: string;
  event: string;
  data: string;
  /** epochNow() when the chunk carrying the event was read. */
  receivedAt: number;
}

/**
 * Follows a Server-Sent Events stream until `done` (or until the server closes it), noting when
 * each event arrived. Heartbeat comments are skipped.
 */
export async function followEvents(url: string, token: string): Promise<TimedEvent[]> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: controller.signal });
  if (!response.ok || !response.body) throw new Error(`SSE request failed: ${response.status} ${await response.text()}`);
  const events: TimedEvent[] = [];
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  let buffer = '';
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return events;
      const receivedAt = epochNow();
      buffer += decoder.decode(value, { stream: true });
      let boundary: number;
      while ((boundary = buffer.indexOf('\n\n')) >= 0) {
        const event = parseBlock(buffer.slice(0, boundary), receivedAt);
        buffer = buffer.slice(boundary + 2);
        if (!event) continue;
        events.push(event);
        if (event.event === 'done') {
          controller.abort();
          return events;
        }
      }
    }
  } catch (error) {
    if ((error as Error).name === 'AbortError') return events;
    throw error;
  }
}

function parseBlock(block: string, receivedAt: number): TimedEvent | undefined {
  const event = parseSseBlock(block);
  return event && { ...event, receivedAt };
}
