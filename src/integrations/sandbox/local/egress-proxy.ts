import { Logger } from '@nestjs/common';
import { lookup } from 'node:dns/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, request as httpRequest, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, BlockList, connect, isIP, type Socket } from 'node:net';
import { buildBlockList, domainAllowed, isAllowedDestination } from './egress-rules';
import { ownHostAddresses } from './sandbox-network';

/** The kernel's list of the host's addresses, in the shape of os.networkInterfaces(). */
function hostAddressesAsInterfaces() {
  return { host: ownHostAddresses().map((address) => ({ address, family: address.includes(':') ? 'IPv6' : 'IPv4' })) };
}

export interface EgressPolicy {
  /** Host names and `*.example.com` wildcards, already normalized by the API. */
  allowedDomains: string[];
}

export interface ResolvedAddress {
  address: string;
  family: number;
}
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

export interface EgressProxyOptions {
  resolve?: Resolver;
  blockList?: BlockList;
  /** Concurrent client connections per sandbox; further ones are dropped. */
  maxConnections?: number;
  /** Resolving plus connecting upstream. */
  connectTimeoutMs?: number;
  /** A connection (either side) silent for this long is closed. */
  idleTimeoutMs?: number;
  logger?: Pick<Logger, 'warn'>;
}

const DEFAULTS = { maxConnections: 256, connectTimeoutMs: 10_000, idleTimeoutMs: 300_000 };
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

/** A destination the policy refuses; answered 403 with the one-line reason. */
class EgressDenied extends Error {}
/** The destination could not be reached; answered 502. */
class EgressUnreachable extends Error {}

interface Listener {
  server: Server;
  sockets: Set<Socket>;
}

/**
 * The HTTP/HTTPS proxy through which sandboxes with network "allowlist" reach allowed_domains.
 * It runs on the host, one listener (127.0.0.1, own port) per sandbox: the engine lets each
 * sandbox reach only its own port, so the port identifies the sandbox and the sandbox holds no
 * credential. Names are checked, resolved once, every address checked against the blocked
 * ranges, and the proxy then connects to the checked address itself (no DNS rebinding).
 */
export class EgressProxy {
  private readonly listeners = new Map<string, Listener>();
  private readonly resolve: Resolver;
  /** Fixed (tests), or undefined: built at each check from the host's addresses of that moment. */
  private readonly fixedBlockList?: BlockList;
  private readonly limits: typeof DEFAULTS;
  private readonly logger: Pick<Logger, 'warn'>;

  constructor(options: EgressProxyOptions = {}) {
    this.resolve = options.resolve ?? ((host) => lookup(host, { all: true, verbatim: true }));
    this.fixedBlockList = options.blockList;
    this.limits = {
      maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
    };
    this.logger = options.logger ?? new Logger(EgressProxy.name);
  }

  /** Starts the sandbox's listener and returns its port on 127.0.0.1: `port`, when given (after a restart), else any free one. */
  async open(sandboxId: string, policy: EgressPolicy, port = 0): Promise<number> {
    if (this.listeners.has(sandboxId)) throw new Error(`egress proxy already open for sandbox ${sandboxId}`);
    const domains = [...policy.allowedDomains];
    const sockets = new Set<Socket>();
    const server = createServer((request, response) => void this.forward(sandboxId, domains, request, response, sockets));
    server.maxConnections = this.limits.maxConnections;
    server.setTimeout(this.limits.idleTimeoutMs);
    server.on('connection', (socket: Socket) => this.track(sockets, socket));
    server.on('connect', (request: IncomingMessage, socket: Socket, head: Buffer) => void this.tunnel(sandboxId, domains, request, socket, head, sockets));
    server.on('clientError', (_error, socket: Socket) => socket.destroy());
    this.listeners.set(sandboxId, { server, sockets });
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    } catch (error) {
      this.listeners.delete(sandboxId);
      throw error;
    }
    return (server.address() as AddressInfo).port;
  }

  /** The sandbox's port, while its listener is open. */
  portOf(sandboxId: string): number | undefined {
    const address = this.listeners.get(sandboxId)?.server.address();
    return address && typeof address === 'object' ? address.port : undefined;
  }

  /** Stops the sandbox's listener and drops its connections and tunnels; idempotent. */
  async close(sandboxId: string): Promise<void> {
    const listener = this.listeners.get(sandboxId);
    if (!listener) return;
    this.listeners.delete(sandboxId);
    const closed = new Promise<void>((resolve) => listener.server.close(() => resolve()));
    for (const socket of listener.sockets) socket.destroy();
    await closed;
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((id) => this.close(id)));
  }

  private async tunnel(sandboxId: string, domains: string[], request: IncomingMessage, client: Socket, head: Buffer, sockets: Set<Socket>): Promise<void> {
    client.setTimeout(this.limits.idleTimeoutMs, () => client.destroy());
    client.on('error', () => client.destroy());
    try {
      const { host, port } = authorityOf(request.url ?? '');
      const upstream = await this.connectChecked(sandboxId, domains, host, port, sockets);
      if (client.destroyed) return void upstream.destroy();
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client).on('error', () => undefined);
      client.pipe(upstream);
      const closeBoth = () => {
        client.destroy();
        upstream.destroy();
      };
      upstream.on('close', closeBoth);
      client.on('close', closeBoth);
    } catch (error) {
      const [status, reason] = answerOf(error);
      client.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(reason) + 1}\r\n\r\n${reason}\n`);
    }
  }

  private async forward(sandboxId: string, domains: string[], request: IncomingMessage, response: ServerResponse, sockets: Set<Socket>): Promise<void> {
    try {
      const target = absoluteHttpUrl(request.url ?? '');
      const host = unbracketed(target.hostname);
      const port = Number(target.port || 80);
      const upstream = await this.connectChecked(sandboxId, domains, host, port, sockets);
      const outgoing = httpRequest({
        createConnection: () => upstream,
        method: request.method,
        path: `${target.pathname}${target.search}`,
        headers: { ...withoutHopByHop(request.headers), host: target.host },
        setHost: false,
      });
      outgoing.on('response', (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.statusMessage, withoutHopByHop(answer.headers));
        answer.pipe(response);
      });
      outgoing.on('error', () => (response.headersSent ? response.destroy() : reply(response, 502, `egress: ${host} closed the connection`)));
      response.on('close', () => upstream.destroy());
      request.pipe(outgoing);
    } catch (error) {
      const [status, reason] = answerOf(error);
      reply(response, Number(status.split(' ')[0]), reason);
    }
  }

  /** Checks the name, resolves it once, checks every address, then connects to the first one. */
  private async connectChecked(sandboxId: string, domains: string[], host: string, port: number, sockets: Set<Socket>): Promise<Socket> {
    const name = host.toLowerCase().replace(/\.$/, '');
    const deny = (reason: string): never => {
      this.logger.warn({ sandbox_id: sandboxId, host: name, port, reason }, 'egress denied');
      throw new EgressDenied(`egress denied: ${name} ${reason}`);
    };
    if (isIP(name) !== 0) deny('is an IP address; only names in allowed_domains are reachable');
    if (!domainAllowed(name, domains)) deny('is not in allowed_domains');
    const deadline = AbortSignal.timeout(this.limits.connectTimeoutMs);
    const addresses = await withAbort(this.resolve(name), deadline).catch(() => {
      throw new EgressUnreachable(`egress: cannot resolve ${name}`);
    });
    if (addresses.length === 0) throw new EgressUnreachable(`egress: cannot resolve ${name}`);
    // The host's addresses as they are now: an interface added since the service started is its own too.
    const blockList = this.fixedBlockList ?? buildBlockList(hostAddressesAsInterfaces);
    if (addresses.some(({ address }) => !isAllowedDestination(address, blockList))) deny('resolves to a blocked address');
    const socket = connect({ host: addresses[0].address, port, family: addresses[0].family === 6 ? 6 : 4 });
    this.track(sockets, socket);
    try {
      await withAbort(new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject)), deadline);
    } catch {
      socket.destroy();
      throw new EgressUnreachable(`egress: cannot connect to ${name}:${port}`);
    }
    socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    return socket;
  }

  private track(sockets: Set<Socket>, socket: Socket): void {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  }
}

/** `host:port` of a CONNECT request; IPv6 literals come bracketed. */
function authorityOf(target: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(target);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) throw new EgressRefusedSyntax(`egress: CONNECT needs host:port, got "${target.slice(0, 100)}"`);
  return { host: unbracketed(match[1]), port };
}

function absoluteHttpUrl(target: string): URL {
  let url: URL | undefined;
  try {
    url = new URL(target);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== 'http:' || !target.startsWith('http://')) throw new EgressRefusedSyntax('egress: plain requests need an absolute http:// URI (use CONNECT for HTTPS)');
  return url;
}

class EgressRefusedSyntax extends Error {}

function answerOf(error: unknown): [string, string] {
  if (error instanceof EgressDenied) return ['403 Forbidden', error.message];
  if (error instanceof EgressRefusedSyntax) return ['400 Bad Request', error.message];
  if (error instanceof EgressUnreachable) return ['502 Bad Gateway', error.message];
  return ['502 Bad Gateway', 'egress: upstream failure'];
}

function reply(response: ServerResponse, status: number, reason: string): void {
  response.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(`${reason}\n`);
}

function unbracketed(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = String(headers.connection ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase());
  const dropped = new Set([...HOP_BY_HOP, ...named]);
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !dropped.has(name.toLowerCase())));
}

function withAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    work.then(resolve, reject);
  });
}
