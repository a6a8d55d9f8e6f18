import { createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import { type AddressInfo, BlockList, connect, createServer, type Server, type Socket } from 'node:net';
import { EgressProxy, type Resolver } from './egress-proxy';

/** Test resolver: these names resolve to loopback, one to a blocked address, the rest fail. */
const NAMES: Record<string, string[]> = {
  'api.example.test': ['127.0.0.1'],
  'deep.sub.example.test': ['127.0.0.1'],
  'metadata.example.test': ['127.0.0.1', '169.254.169.254'],
};
const resolve: Resolver = async (host) => {
  const addresses = NAMES[host];
  if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return addresses.map((address) => ({ address, family: 4 }));
};

/** Loopback is where the test servers live, so only the metadata range is blocked here. */
function testBlockList(): BlockList {
  const list = new BlockList();
  list.addSubnet('169.254.0.0', 16, 'ipv4');
  return list;
}

function listen<T extends Server | HttpServer>(server: T): Promise<number> {
  return new Promise((done) => server.listen(0, '127.0.0.1', () => done((server.address() as AddressInfo).port)));
}

/** Sends a raw request to the proxy and returns everything it answers until the connection closes. */
function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((done, fail) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('close', () => done(answer));
    socket.on('error', fail);
  });
}

/** Opens a CONNECT tunnel and resolves with the socket once the proxy has answered 200. */
function tunnel(port: number, target: string): Promise<{ socket: Socket; head: string }> {
  return new Promise((done, fail) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    socket.once('data', (chunk) => done({ socket, head: chunk.toString() }));
    socket.on('error', fail);
  });
}

describe('EgressProxy', () => {
  let proxy: EgressProxy;
  let echo: Server;
  let echoPort: number;
  let web: HttpServer;
  let webPort: number;
  let seenHeaders: Record<string, string | string[] | undefined>;
  const warn = jest.fn();
  const upstreamSockets = new Set<Socket>();

  beforeEach(async () => {
    warn.mockReset();
    proxy = new EgressProxy({ resolve, blockList: testBlockList(), logger: { warn }, connectTimeoutMs: 2_000, idleTimeoutMs: 5_000 });
    echo = createServer((socket) => {
      upstreamSockets.add(socket);
      socket.on('close', () => upstreamSockets.delete(socket));
      socket.pipe(socket);
    });
    echoPort = await listen(echo);
    web = createHttpServer((request, response) => {
      seenHeaders = request.headers;
      response.setHeader('connection', 'close');
      response.end(`hello from ${request.method} ${request.url}`);
    });
    webPort = await listen(web);
  });
  afterEach(async () => {
    await proxy.closeAll();
    for (const socket of upstreamSockets) socket.destroy();
    await new Promise((done) => echo.close(done));
    await new Promise((done) => web.close(done));
  });

  it('tunnels a CONNECT to an allowed name to the checked address', async () => {
    const port = await proxy.open('sb-1', { allowedDomains: ['api.example.test'] });
    const { socket, head } = await tunnel(port, `API.Example.Test.:${echoPort}`);
    expect(head).toBe('HTTP/1.1 200 Connection Established\r\n\r\n');
    const echoed = new Promise<string>((done) => socket.once('data', (chunk) => done(chunk.toString())));
    socket.write('ping through the tunnel');
    expect(await echoed).toBe('ping through the tunnel');
    socket.destroy();
  });

  it('forwards a plain-HTTP absolute-URI request without proxy or hop-by-hop headers', async () => {
    const port = await proxy.open('sb-1', { allowedDomains: ['*.example.test'] });
    const answer = await new Promise<{ status: number; body: string }>((done, fail) => {
      const request = httpRequest({
        host: '127.0.0.1',
        port,
        path: `http://deep.sub.example.test:${webPort}/path?q=1`,
        headers: { 'proxy-authorization': 'Basic eA==', 'proxy-connection': 'keep-alive', 'x-custom': 'kept', connection: 'x-drop-me', 'x-drop-me': '1' },
      });
      request.on('response', (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => done({ status: response.statusCode ?? 0, body }));
      });
      request.on('error', fail);
      request.end();
    });
    expect(answer).toEqual({ status: 200, body: 'hello from GET /path?q=1' });
    expect(seenHeaders).toMatchObject({ host: `deep.sub.example.test:${webPort}`, 'x-custom': 'kept' });
    for (const name of ['proxy-authorization', 'proxy-connection', 'x-drop-me']) expect(seenHeaders).not.toHaveProperty(name);
  });

  it.each([
    ['a name not in allowed_domains', 'other.test', 'egress denied: other.test is not in allowed_domains'],
    ['the apex of a wildcard', 'example.test', 'egress denied: example.test is not in allowed_domains'],
    ['a raw IPv4 literal', '127.0.0.1', 'egress denied: 127.0.0.1 is an IP address'],
    ['a raw IPv6 literal', '[::1]', 'egress denied: ::1 is an IP address'],
    ['a name with one blocked address among its addresses', 'metadata.example.test', 'egress denied: metadata.example.test resolves to a blocked address'],
  ])('answers CONNECT to %s with 403 and the reason, and logs it with the sandbox id', async (_label, host, reason) => {
    const port = await proxy.open('sb-deny', { allowedDomains: ['*.example.test', 'api.example.test'] });
    const answer = await rawExchange(port, `CONNECT ${host}:${echoPort} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1.1 403 Forbidden\r\n/);
    expect(answer).toContain(reason);
    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ sandbox_id: 'sb-deny' }), 'egress denied');
    expect(upstreamSockets.size).toBe(0);
  });

  it('answers a denied plain-HTTP request with 403 and the reason', async () => {
    const port = await proxy.open('sb-1', { allowedDomains: ['*.example.test'] });
    const answer = await rawExchange(port, `GET http://example.test:${webPort}/ HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1.1 403 Forbidden\r\n/);
    expect(answer).toContain('egress denied: example.test is not in allowed_domains\n');
  });

  it('answers 502 when an allowed name cannot be resolved or reached, 400 for a request that is not proxy-shaped', async () => {
    const port = await proxy.open('sb-1', { allowedDomains: ['*.example.test', 'unknown.test'] });
    expect(await rawExchange(port, 'CONNECT unknown.test:443 HTTP/1.1\r\n\r\n')).toMatch(/^HTTP\/1.1 502 Bad Gateway\r\n[\s\S]*cannot resolve unknown.test/);
    const closed = createServer();
    const closedPort = await listen(closed);
    await new Promise((done) => closed.close(done));
    expect(await rawExchange(port, `CONNECT api.example.test:${closedPort} HTTP/1.1\r\n\r\n`)).toMatch(/^HTTP\/1.1 502 Bad Gateway\r\n[\s\S]*cannot connect/);
    expect(await rawExchange(port, 'GET /local HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1.1 400 Bad Request\r\n/);
    expect(await rawExchange(port, 'CONNECT api.example.test HTTP/1.1\r\n\r\n')).toMatch(/^HTTP\/1.1 400 Bad Request\r\n/);
  });

  it('gives each sandbox its own port and policy', async () => {
    const first = await proxy.open('sb-a', { allowedDomains: ['api.example.test'] });
    const second = await proxy.open('sb-b', { allowedDomains: [] });
    expect(first).not.toBe(second);
    expect((await tunnel(first, `api.example.test:${echoPort}`)).head).toMatch(/^HTTP\/1.1 200/);
    expect(await rawExchange(second, `CONNECT api.example.test:${echoPort} HTTP/1.1\r\n\r\n`)).toMatch(/^HTTP\/1.1 403/);
    await expect(proxy.open('sb-a', { allowedDomains: [] })).rejects.toThrow(/already open/);
  });

  it('drops the tunnels of a sandbox when its proxy is closed, and stops listening', async () => {
    const port = await proxy.open('sb-1', { allowedDomains: ['api.example.test'] });
    const other = await proxy.open('sb-2', { allowedDomains: ['api.example.test'] });
    const { socket } = await tunnel(port, `api.example.test:${echoPort}`);
    const kept = await tunnel(other, `api.example.test:${echoPort}`);
    const dropped = new Promise<void>((done) => socket.on('close', () => done()));

    await proxy.close('sb-1');

    await dropped;
    await expect(rawExchange(port, 'CONNECT api.example.test:1 HTTP/1.1\r\n\r\n')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const echoed = new Promise<string>((done) => kept.socket.once('data', (chunk) => done(chunk.toString())));
    kept.socket.write('still here');
    expect(await echoed).toBe('still here');
    kept.socket.destroy();
    await proxy.close('sb-1');
  });

  it('closes a tunnel left idle', async () => {
    proxy = new EgressProxy({ resolve, blockList: testBlockList(), logger: { warn }, idleTimeoutMs: 200 });
    const port = await proxy.open('sb-1', { allowedDomains: ['api.example.test'] });
    const { socket } = await tunnel(port, `api.example.test:${echoPort}`);
    await new Promise<void>((done) => socket.on('close', () => done()));
  });

  it('bounds the concurrent connections of a sandbox', async () => {
    proxy = new EgressProxy({ resolve, blockList: testBlockList(), logger: { warn }, maxConnections: 2 });
    const port = await proxy.open('sb-1', { allowedDomains: ['api.example.test'] });
    const open = [await tunnel(port, `api.example.test:${echoPort}`), await tunnel(port, `api.example.test:${echoPort}`)];
    expect(await rawExchange(port, `CONNECT api.example.test:${echoPort} HTTP/1.1\r\n\r\n`)).toBe('');
    for (const { socket } of open) socket.destroy();
  });
});
