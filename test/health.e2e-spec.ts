import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findExecutable } from '../src/integrations/sandbox/local/host-tools';
import { startTestApp, type TestApp } from './support/test-app';

describe('GET /api/health reports the sandbox engine as it is now, not as it was at start-up', () => {
  let app: TestApp;
  let toolDir: string;

  beforeAll(async () => {
    toolDir = mkdtempSync(join(tmpdir(), 'health-e2e-'));
    symlinkSync(findExecutable('bwrap')!, join(toolDir, 'bwrap'));
    app = await startTestApp({ env: { BWRAP_BIN: join(toolDir, 'bwrap') } });
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    rmSync(toolDir, { recursive: true, force: true });
  });

  it('is up with a working engine, and down (503, naming the engine) once bubblewrap is gone', async () => {
    const up = await fetch(`${app.url}/api/health`);
    expect(up.status).toBe(200);
    expect(await up.json()).toMatchObject({ status: 'ok', info: { sandbox_engine: { status: 'up', provider: 'local' } } });

    rmSync(join(toolDir, 'bwrap'));
    const down = await fetch(`${app.url}/api/health`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ statusCode: 503, details: { sandbox_engine: { status: 'down', provider: 'local' }, database: { status: 'up' } } });
  });
});
