import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { IntegrationsModule } from '../../integrations/integrations.module';
import { DataDirDiskHealthIndicator } from './data-dir-disk.health';
import { HealthController } from './health.controller';
import { InstanceHealthIndicator } from './instance.health';
import { SandboxEngineHealthIndicator } from './sandbox-engine.health';

@Module({
  imports: [TerminusModule, IntegrationsModule],
  controllers: [HealthController],
  providers: [SandboxEngineHealthIndicator, DataDirDiskHealthIndicator, InstanceHealthIndicator],
})
export class HealthModule {}
