import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClaudeAgent } from '../../integrations/claude/claude.agent';
import { ClaudeCliAgent } from '../../integrations/claude/claude-cli.agent';
import { ModelGatewayModule } from '../model-gateway/model-gateway.module';
import { SandboxesModule } from '../sandboxes/sandboxes.module';
import { Run } from './run.entity';
import { RunEvent } from './run-event.entity';
import { RunEventLog } from './run-event-log';
import { RunExecutor } from './run-executor';
import { RunStateStore } from './run-state.store';
import { RunsController } from './runs.controller';
import { RunsService } from './runs.service';

@Module({
  imports: [TypeOrmModule.forFeature([Run, RunEvent]), SandboxesModule, ModelGatewayModule],
  controllers: [RunsController],
  providers: [RunsService, RunExecutor, RunEventLog, RunStateStore, { provide: ClaudeAgent, useClass: ClaudeCliAgent }],
})
export class RunsModule {}
