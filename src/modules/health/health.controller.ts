import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckResult, HealthCheckService, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { RawResponse } from '../../common/response-envelope.interceptor';
import { Public } from '../../common/auth-policy.decorator';
import { DataDirDiskHealthIndicator } from './data-dir-disk.health';
import { SandboxEngineHealthIndicator } from './sandbox-engine.health';

@ApiTags('health')
@Controller('api/health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: TypeOrmHealthIndicator,
    private readonly sandboxEngine: SandboxEngineHealthIndicator,
    private readonly disk: DataDirDiskHealthIndicator,
  ) {}

  @Get()
  @Public()
  @RawResponse()
  @HealthCheck()
  @ApiOperation({ operationId: 'getHealth', summary: "Liveness and dependency health (database, sandbox engine, data directory's free disk space); 503 when one is down" })
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.database.pingCheck('database', { timeout: 3000 }), () => this.sandboxEngine.check(), () => this.disk.check()]);
  }
}
