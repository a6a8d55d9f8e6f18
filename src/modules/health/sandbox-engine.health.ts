import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { SandboxProvider } from '../../integrations/sandbox/sandbox-provider';

/** Whether the configured sandbox engine can be used (bwrap present / Modal credentials set). */
@Injectable()
export class SandboxEngineHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly provider: SandboxProvider,
  ) {}

  check(): HealthIndicatorResult {
    const session = this.indicators.check('sandbox_engine');
    return this.provider.isConfigured() ? session.up({ provider: this.provider.kind }) : session.down({ provider: this.provider.kind });
  }
}
