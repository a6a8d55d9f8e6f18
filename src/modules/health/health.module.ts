import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { SandboxProviderModule } from '../../integrations/sandbox/sandbox-provider.module';
import { HealthController } from './health.controller';
import { SandboxEngineHealthIndicator } from './sandbox-engine.health';

@Module({ imports: [TerminusModule, SandboxProviderModule], controllers: [HealthController], providers: [SandboxEngineHealthIndicator] })
export class HealthModule {}
