import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from './support/http';
import { freePort, MAIN, serviceOutput, startService, waitForHealth } from './support/service-process';

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
    const child = startService({ PORT: String(port), DATA_DIR: dataDir, ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
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
    expect(serviceOutput(child)).toContain('service shut down gracefully');
    expect(serviceOutput(child)).toContain(`Listening on ${url}`);
    expect(serviceOutput(child)).not.toContain(ADMIN.password);
  });

  it('refuses to start on an invalid setting and names the variable', async () => {
    const child = startService({ PORT: 'not-a-port', DATA_DIR: dataDir });
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    expect(serviceOutput(child)).toContain('PORT');
  });
});
