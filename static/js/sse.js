import { NetworkError, readApiError } from './api.js';

/**
 * Incremental parser of the text/event-stream format: feed it decoded chunks as they arrive,
 * it calls onEvent({ id, type, data }) for each complete message. Comments (heartbeats) are skipped.
 */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    this.atStart = true;
    this.lastEventId = '';
    this.retryMs = null;
    this.resetMessage();
  }

  push(chunk) {
    this.buffer += chunk;
    if (this.atStart && this.buffer.length > 0) {
      if (this.buffer.startsWith('\uFEFF')) this.buffer = this.buffer.slice(1);
      this.atStart = false;
    }
    const terminator = /\r\n|\r|\n/g;
    let lineStart = 0;
    let match;
    while ((match = terminator.exec(this.buffer)) !== null) {
      // A lone CR at the very end may be the first half of a CRLF split across chunks.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      this.processLine(this.buffer.slice(lineStart, match.index));
      lineStart = terminator.lastIndex;
    }
    this.buffer = this.buffer.slice(lineStart);
  }

  processLine(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.dataLines.push(value);
    else if (field === 'event') this.eventType = value;
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
  }

  dispatch() {
    if (this.dataLines.length === 0) {
      this.resetMessage();
      return;
    }
    const message = { id: this.lastEventId, type: this.eventType || 'message', data: this.dataLines.join('\n') };
    this.resetMessage();
    this.onEvent(message);
  }

  resetMessage() {
    this.dataLines = [];
    this.eventType = '';
  }
}

const RETRY_DELAYS_MS = [250, 1000, 2000, 4000, 8000];
/** Well above the server's heartbeat interval: silence this long means a dead connection. */
const IDLE_TIMEOUT_MS = 45_000;

/**
 * Follows a run's event stream with fetch (so the Authorization and Last-Event-ID headers can be
 * sent), reconnecting with the last seen id until the final event arrives. Every event is delivered
 * once, in order: anything at or below the highest sequence number already seen is dropped.
 *
 * onEvent({ seq, type, data }) · onState('connecting'|'open'|'reconnecting'|'closed', error?) ·
 * onFatal(error) for answers that retrying cannot fix (401, 403, 404).
 */
export function followEventStream({ url, headers, onEvent, onState = () => {}, onFatal, isFinal = (event) => event.type === 'done' }) {
  let closed = false;
  let finished = false;
  let lastSeq = null;
  let controller = null;
  let wake = null;

  const deliver = (message) => {
    if (finished) return;
    const seq = message.id === '' ? null : Number(message.id);
    if (seq !== null && Number.isFinite(seq)) {
      if (lastSeq !== null && seq <= lastSeq) return;
      lastSeq = seq;
    }
    const event = { seq, type: message.type, data: parseData(message.data) };
    if (isFinal(event)) finished = true;
    onEvent(event);
  };

  const onOnline = () => wake?.();
  window.addEventListener('online', onOnline);

  const readOnce = async () => {
    controller = new AbortController();
    let idleTimer;
    const armIdleTimer = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => controller.abort(), IDLE_TIMEOUT_MS);
    };
    try {
      armIdleTimer();
      const requestHeaders = { Accept: 'text/event-stream', ...headers() };
      if (lastSeq !== null) requestHeaders['Last-Event-ID'] = String(lastSeq);
      let response;
      try {
        response = await fetch(url, { headers: requestHeaders, signal: controller.signal, cache: 'no-store' });
      } catch (error) {
        throw new NetworkError(error);
      }
      if (!response.ok) throw await readApiError(response);
      onState('open');
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const parser = new SseParser(deliver);
      let receivedEvent = false;
      while (!finished && !closed) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (error) {
          throw new NetworkError(error);
        }
        if (chunk.done) break;
        armIdleTimer();
        const before = lastSeq;
        parser.push(decoder.decode(chunk.value, { stream: true }));
        receivedEvent ||= lastSeq !== before;
      }
      if (finished || closed) await reader.cancel().catch(() => {});
      return receivedEvent;
    } finally {
      clearTimeout(idleTimer);
    }
  };

  const loop = async () => {
    let attempt = 0;
    onState('connecting');
    while (!closed && !finished) {
      try {
        if (await readOnce()) attempt = 0;
        if (finished || closed) break;
        onState('reconnecting');
      } catch (error) {
        if (closed) break;
        if (isPermanent(error)) {
          onFatal?.(error);
          break;
        }
        onState('reconnecting', error);
      }
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]);
      });
      wake = null;
      attempt += 1;
    }
    window.removeEventListener('online', onOnline);
    onState('closed');
  };

  void loop();
  return {
    close() {
      closed = true;
      controller?.abort();
      wake?.();
    },
  };
}

function isPermanent(error) {
  return [400, 401, 403, 404].includes(error?.status);
}

function parseData(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { line: text };
  }
}
