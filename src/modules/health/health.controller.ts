import { Controller, Get, ServiceUnavailableException } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckResult, HealthCheckService, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { RawResponse } from '../../common/response-envelope.interceptor';
import { Public } from '../../common/auth-policy.decorator';
import { StartupState } from '../../common/startup-state';
import { AppConfig } from '../../config/app-config';
import { DataDirDiskHealthIndicator } from './data-dir-disk.health';
import { InstanceHealthIndicator } from './instance.health';
import { SandboxEngineHealthIndicator } from './sandbox-engine.health';

export interface ReadinessResponse {
  status: 'ready';
  instance_id: string;
}

const READY_EXAMPLE: ReadinessResponse = { status: 'ready', instance_id: 'web-1-3f9a2c' };
const STARTING_EXAMPLE = {
  statusCode: 503,
  error: 'Service Unavailable',
  message: 'This instance has not finished its start-up work yet',
  details: { status: 'starting', instance_id: 'web-1-3f9a2c', pending: ['runs'], failed: [] },
};
const FAILED_EXAMPLE = {
  statusCode: 503,
  error: 'Service Unavailable',
  message: 'A start-up task of this instance failed: runs',
  details: { status: 'failed', instance_id: 'web-1-3f9a2c', pending: [], failed: [{ task: 'runs', error: 'Connection terminated unexpectedly' }] },
};

@ApiTags('health')
@Controller('api/health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: TypeOrmHealthIndicator,
    private readonly sandboxEngine: SandboxEngineHealthIndicator,
    private readonly disk: DataDirDiskHealthIndicator,
    private readonly instance: InstanceHealthIndicator,
    private readonly startup: StartupState,
    private readonly config: AppConfig,
  ) {}

  @Get()
  @Public()
  @RawResponse()
  @HealthCheck()
  @ApiOperation({
    operationId: 'getHealth',
    summary: "Liveness and dependency health (database, sandbox engine, data directory's free disk space) of the instance named in `instance`; 503 when one is down",
  })
  check(): Promise<HealthCheckResult> {
    return this.health.check([
      () => this.instance.check(),
      () => this.database.pingCheck('database', { timeout: 3000 }),
      () => this.sandboxEngine.check(),
      () => this.disk.check(),
    ]);
  }

  @Get('ready')
  @Public()
  @RawResponse()
  @ApiOperation({
    operationId: 'getReadiness',
    summary: 'Readiness for a load balancer: 200 once this instance has finished its start-up work (sandboxes re-attached, runs resumed), 503 until then',
  })
  @ApiOkResponse({
    description: 'Start-up work is done',
    schema: { type: 'object', required: ['status', 'instance_id'], properties: { status: { type: 'string', enum: ['ready'] }, instance_id: { type: 'string' } } },
    examples: { ready: { summary: 'Ready', value: READY_EXAMPLE } },
  })
  @ApiServiceUnavailableResponse({
    description: 'Start-up work is still running (`starting`), or a start-up task failed (`failed`, the instance stays not ready)',
    examples: { starting: { summary: 'Still starting', value: STARTING_EXAMPLE }, failed: { summary: 'A start-up task failed', value: FAILED_EXAMPLE } },
  })
  ready(): ReadinessResponse {
    const { ready, pending, failed } = this.startup.status();
    const instanceId = this.config.instanceId;
    if (ready) return { status: 'ready', instance_id: instanceId };
    const message =
      failed.length > 0 ? `A start-up task of this instance failed: ${failed.map(({ task }) => task).join(', ')}` : 'This instance has not finished its start-up work yet';
    throw new ServiceUnavailableException({ message, details: { status: failed.length > 0 ? 'failed' : 'starting', instance_id: instanceId, pending, failed } });
  }
}
