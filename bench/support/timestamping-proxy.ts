import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { epochNow } from './stats';

const MARKER = /\[\[sent=(\d+(?:\.\d+)?)\]\]/g;

/**
 * Sits between the Claude CLI and the fake Messages API and replaces the text of every streamed
 * text delta with the time (epoch ms) at which the proxy writes it to the CLI. A client that finds
 * the marker in a run's stream_event knows how long the delta took from the model's side of the
 * CLI to itself: an upper bound on the delay from the CLI's stdout line to the client.
 */
export class TimestampingProxy {
  private constructor(private readonly server: Server, readonly url: string, private readonly upstream: URL) {}

  /** On host loopback, or on a listening socket made elsewhere (a test host's namespace) reached at `address`. */
  static async start(upstreamUrl: string, listening?: { socket: NetServer; address: string }): Promise<TimestampingProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => (listening ? server.listen(listening.socket, resolve) : server.listen(0, '127.0.0.1', resolve)));
    const { port } = (listening?.socket ?? server).address() as AddressInfo;
    const proxy = new TimestampingProxy(server, `http://${listening?.address ?? '127.0.0.1'}:${port}`, new URL(upstreamUrl));
    server.on('request', (request, response) => proxy.forward(request, response));
    return proxy;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private forward(request: IncomingMessage, response: ServerResponse): void {
    const upstream = httpRequest(
      { host: this.upstream.hostname, port: this.upstream.port, method: request.method, path: request.url, headers: { ...request.headers, host: this.upstream.host } },
      (answer) => {
        const isStream = (answer.headers['content-type'] ?? '').startsWith('text/event-stream');
        if (!isStream) {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
          return;
        }
        const { 'content-length': _length, ...headers } = answer.headers;
        response.writeHead(answer.statusCode ?? 502, headers);
        relayStampingDeltas(answer, response);
      },
    );
    upstream.on('error', () => response.destroy());
    request.pipe(upstream);
  }
}

/** Relays an SSE response event by event, stamping each text delta as it is written. */
function relayStampingDeltas(source: IncomingMessage, target: ServerResponse): void {
  let buffer = '';
  source.setEncoding('utf8');
  source.on('data', (chunk: string) => {
    buffer += chunk;
    let boundary: number;
    while ((boundary = buffer.indexOf('\n\n')) >= 0) {
      target.write(`${stampTextDelta(buffer.slice(0, boundary))}\n\n`);
      buffer = buffer.slice(boundary + 2);
    }
  });
  source.on('end', () => target.end(buffer));
  source.on('error', () => target.destroy());
}

function stampTextDelta(block: string): string {
  return block
    .split('\n')
    .map((line) => {
      if (!line.startsWith('data: ')) return line;
      const payload = JSON.parse(line.slice('data: '.length)) as { delta?: { type?: string; text?: string } };
      if (payload.delta?.type !== 'text_delta') return line;
      payload.delta.text = `[[sent=${epochNow().toFixed(3)}]]`;
      return `data: ${JSON.stringify(payload)}`;
    })
    .join('\n');
}

/** The send times stamped into a text (one per delta it carries). */
export function stampsIn(text: string): number[] {
  return [...text.matchAll(MARKER)].map((match) => Number(match[1]));
}
