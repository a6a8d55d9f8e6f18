import { Logger, ServiceUnavailableException } from '@nestjs/common';
import type { HealthCheckService, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { StartupState } from '../../common/startup-state';
import type { AppConfig } from '../../config/app-config';
import type { DataDirDiskHealthIndicator } from './data-dir-disk.health';
import { HealthController } from './health.controller';
import type { InstanceHealthIndicator } from './instance.health';
import type { SandboxEngineHealthIndicator } from './sandbox-engine.health';

describe('GET /api/health/ready', () => {
  beforeEach(() => {
    for (const level of ['log', 'error'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  function controller(startup: StartupState): HealthController {
    const unused = {} as never;
    return new HealthController(
      unused as HealthCheckService,
      unused as TypeOrmHealthIndicator,
      unused as SandboxEngineHealthIndicator,
      unused as DataDirDiskHealthIndicator,
      unused as InstanceHealthIndicator,
      startup,
      { instanceId: 'web-1-abc123' } as AppConfig,
    );
  }

  function refusal(call: () => unknown): { status: number; body: Record<string, unknown> } {
    try {
      call();
    } catch (error) {
      if (!(error instanceof ServiceUnavailableException)) throw error;
      return { status: error.getStatus(), body: error.getResponse() as Record<string, unknown> };
    }
    throw new Error('expected a 503');
  }

  it('answers 503 while start-up work runs, naming what is pending, and 200 with the instance id after', async () => {
    const startup = new StartupState();
    let finish!: () => void;
    startup.register('runs', new Promise<void>((resolve) => (finish = resolve)));

    expect(refusal(() => controller(startup).ready())).toEqual({
      status: 503,
      body: { message: expect.stringContaining('not finished'), details: { status: 'starting', instance_id: 'web-1-abc123', pending: ['runs'], failed: [] } },
    });

    startup.markReady();
    expect(refusal(() => controller(startup).ready()).body.details).toMatchObject({ pending: ['runs'] });

    finish();
    await new Promise((resolve) => setImmediate(resolve));
    expect(controller(startup).ready()).toEqual({ status: 'ready', instance_id: 'web-1-abc123' });
  });

  it('answers 503 naming the start-up task that failed', async () => {
    const startup = new StartupState();
    startup.register('runs', Promise.reject(new Error('boom'))).catch(() => undefined);
    startup.markReady();
    await new Promise((resolve) => setImmediate(resolve));

    expect(refusal(() => controller(startup).ready()).body).toEqual({
      message: 'A start-up task of this instance failed: runs',
      details: { status: 'failed', instance_id: 'web-1-abc123', pending: [], failed: [{ task: 'runs', error: 'boom' }] },
    });
  });
});
