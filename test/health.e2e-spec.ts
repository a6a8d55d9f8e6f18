import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StartupState } from '../src/common/startup-state';
import { findExecutable } from '../src/integrations/sandbox/local/host-tools';
import { RunsService } from '../src/modules/runs/runs.service';
import { SandboxesService } from '../src/modules/sandboxes/sandboxes.service';
import { startTestApp, type TestApp } from './support/test-app';

describe('GET /api/health and /api/health/ready', () => {
  let app: TestApp;
  let toolDir: string;
  /** The start-up work and the readiness flip, in the order they happened. */
  const startup: string[] = [];

  beforeAll(async () => {
    toolDir = mkdtempSync(join(tmpdir(), 'health-e2e-'));
    symlinkSync(findExecutable('bwrap')!, join(toolDir, 'bwrap'));
    recordStartupOrder(startup);
    app = await startTestApp({ env: { BWRAP_BIN: join(toolDir, 'bwrap'), INSTANCE_ID: 'health-e2e' } });
  });
  afterAll(async () => {
    jest.restoreAllMocks();
    await app?.close({ purge: true });
    rmSync(toolDir, { recursive: true, force: true });
  });

  it('turns ready only after the sandboxes were reconciled and the runs resumed, even when that takes a while', async () => {
    expect(startup).toEqual(['sandboxes reconciled', 'runs started', 'runs resumed', 'ready']);
    const ready = await fetch(`${app.url}/api/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', instance_id: 'health-e2e' });
  });

  it('documents the readiness endpoint', async () => {
    const document = (await (await fetch(`${app.url}/docs-json`)).json()) as { paths: Record<string, { get: { operationId: string; security?: unknown; responses: Record<string, { content: { 'application/json': { examples: Record<string, unknown> } } }> } }> };
    const ready = document.paths['/api/health/ready'].get;
    expect(ready.operationId).toBe('getReadiness');
    expect(Object.keys(ready.responses['200'].content['application/json'].examples)).toEqual(['ready']);
    expect(Object.keys(ready.responses['503'].content['application/json'].examples)).toEqual(['starting', 'failed']);
  });

  it('reports the sandbox engine as it is now, not as it was at start-up: up with a working engine, down (503, naming the engine) once bubblewrap is gone', async () => {
    const up = await fetch(`${app.url}/api/health`);
    expect(up.status).toBe(200);
    expect(await up.json()).toMatchObject({ status: 'ok', info: { instance: { status: 'up', instance_id: 'health-e2e', ready: true }, sandbox_engine: { status: 'up', provider: 'local' } } });

    rmSync(join(toolDir, 'bwrap'));
    const down = await fetch(`${app.url}/api/health`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({
      statusCode: 503,
      details: { sandbox_engine: { status: 'down', provider: 'local' }, database: { status: 'up' }, instance: { instance_id: 'health-e2e' } },
    });
  });
});

/** Slows the runs' start-up work down and records when it ends, and when readiness is declared. */
function recordStartupOrder(order: string[]): void {
  const reconcile = SandboxesService.prototype.reconcileAfterRestart;
  jest.spyOn(SandboxesService.prototype, 'reconcileAfterRestart').mockImplementation(async function (this: SandboxesService) {
    await reconcile.call(this);
    if (!order.includes('sandboxes reconciled')) order.push('sandboxes reconciled');
  });
  const resume = RunsService.prototype.onApplicationBootstrap;
  jest.spyOn(RunsService.prototype, 'onApplicationBootstrap').mockImplementation(async function (this: RunsService) {
    order.push('runs started');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await resume.call(this);
    order.push('runs resumed');
  });
  const markReady = StartupState.prototype.markReady;
  jest.spyOn(StartupState.prototype, 'markReady').mockImplementation(function (this: StartupState) {
    order.push('ready');
    markReady.call(this);
  });
}
