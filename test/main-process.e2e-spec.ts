import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from './support/http';

const MAIN = join(__dirname, '..', 'dist', 'src', 'main.js');
const ADMIN = { email: 'owner@example.test', password: 'quick-start-password' };

/** The service as the README starts it: the built entry point in its own process. */
describe('the service process (README start command)', () => {
  let dataDir: string;
  beforeAll(() => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (npm test does)`);
    dataDir = mkdtempSync(join(tmpdir(), 'mss-main-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('serves health, docs and the page, lets the bootstrap admin log in, and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const child = start({ PORT: String(port), DATA_DIR: dataDir, ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHealth(url, child);
      expect((await call(url, 'GET', '/docs')).status).toBe(200);
      const page = await call(url, 'GET', '/');
      expect(page.status).toBe(200);
      expect(page.text).toContain('<html');
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
      expect((await call(url, 'GET', '/vendor/purify.es.mjs')).status).toBe(200);
      const login = await call(url, 'POST', '/api/auth/login', { body: ADMIN });
      expect(login.status).toBe(200);
      expect(login.body.data.token_type).toBe('Bearer');
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(output(child)).toContain('service shut down gracefully');
    expect(output(child)).toContain(`Listening on ${url}`);
    expect(output(child)).not.toContain(ADMIN.password);
  });

  it('refuses to start on an invalid setting and names the variable', async () => {
    const child = start({ PORT: 'not-a-port', DATA_DIR: dataDir });
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    expect(output(child)).toContain('PORT');
  });
});

function start(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: string[] = [];
  child.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  (child as ChildProcess & { chunks: string[] }).chunks = chunks;
  return child;
}

function output(child: ChildProcess): string {
  return (child as ChildProcess & { chunks: string[] }).chunks.join('');
}

async function waitForHealth(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the service exited early:\n${output(child)}`);
    const ok = await fetch(`${url}/api/health`).then((response) => response.status === 200, () => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the service did not become healthy:\n${output(child)}`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
