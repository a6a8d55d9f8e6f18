import { parseSseBlock } from '../../test/support/sse-client';
import { epochNow } from './stats';
import type { TimedEvent } from './timed-sse';

/**
 * One Server-Sent Events connection that keeps what it read when the server goes away (a service
 * killed mid-stream), noting when each event arrived. `Last-Event-ID` resumes a stream after such
 * a loss. It reads until `done`, until the server closes or drops it, or until close().
 */
export class SseConnection {
  readonly events: TimedEvent[] = [];
  /** true once `done` arrived; false when the connection ended otherwise (closed, reset, refused, aborted). */
  readonly ended: Promise<boolean>;
  /** Why the connection ended without `done`, if it did. */
  failure?: string;
  /** epochNow() when the response's headers arrived (the server has subscribed the stream). */
  openedAt?: number;
  private readonly controller = new AbortController();
  private readonly waiters: Array<{ test: (event: TimedEvent) => boolean; resolve: (event: TimedEvent | undefined) => void }> = [];

  constructor(url: string, token: string, lastEventId?: string) {
    this.ended = this.read(url, token, lastEventId).finally(() => {
      for (const waiter of this.waiters.splice(0)) waiter.resolve(undefined);
    });
  }

  /** The first event (already read or still to come) that passes `test`; undefined if the connection ends first. */
  until(test: (event: TimedEvent) => boolean): Promise<TimedEvent | undefined> {
    const seen = this.events.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }

  close(): void {
    this.controller.abort();
  }

  private async read(url: string, token: string, lastEventId: string | undefined): Promise<boolean> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'text/event-stream' };
    if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
    try {
      const response = await fetch(url, { headers, signal: this.controller.signal });
      if (!response.ok || !response.body) throw new Error(`SSE request answered ${response.status}: ${await response.text()}`);
      this.openedAt = epochNow();
      const decoder = new TextDecoder();
      const reader = response.body.getReader();
      let buffer = '';
      while (true) {
        const { value, done } = await reader.read();
        if (done) return false;
        const receivedAt = epochNow();
        buffer += decoder.decode(value, { stream: true });
        let boundary: number;
        while ((boundary = buffer.indexOf('\n\n')) >= 0) {
          const parsed = parseSseBlock(buffer.slice(0, boundary));
          buffer = buffer.slice(boundary + 2);
          if (!parsed) continue;
          const event = { ...parsed, receivedAt };
          this.events.push(event);
          for (const waiter of this.waiters.filter((candidate) => candidate.test(event))) {
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            waiter.resolve(event);
          }
          if (event.event === 'done') {
            this.controller.abort();
            return true;
          }
        }
      }
    } catch (error) {
      if ((error as Error).name !== 'AbortError') this.failure = (error as Error).message;
      return this.events[this.events.length - 1]?.event === 'done';
    }
  }
}
