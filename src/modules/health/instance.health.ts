import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { StartupState } from '../../common/startup-state';
import { AppConfig } from '../../config/app-config';

/** Which instance answers, and whether its start-up work is done; always up (readiness has its own endpoint). */
@Injectable()
export class InstanceHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly config: AppConfig,
    private readonly startup: StartupState,
  ) {}

  check(): HealthIndicatorResult {
    return this.indicators.check('instance').up({ instance_id: this.config.instanceId, ready: this.startup.isReady() });
  }
}
