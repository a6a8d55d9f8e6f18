import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { IntegrationsModule } from '../../integrations/integrations.module';
import { SandboxesModule } from '../sandboxes/sandboxes.module';
import { Run } from './run.entity';
import { RunEvent } from './run-event.entity';
import { InstanceIdentity } from '../../common/instance-identity';
import { RunEventFeed } from './run-event-feed';
import { RunLeases } from './run-leases';
import { RunEventLog } from './run-event-log';
import { RunExecutor } from './run-executor';
import { RunStateStore } from './run-state.store';
import { RunTokensModule } from './run-tokens.module';
import { RunsController } from './runs.controller';
import { RunsService } from './runs.service';
import { WorkspaceConversations } from './workspace-conversations';

@Module({
  imports: [TypeOrmModule.forFeature([Run, RunEvent]), IntegrationsModule, SandboxesModule, RunTokensModule],
  controllers: [RunsController],
  providers: [RunsService, RunExecutor, RunEventLog, RunEventFeed, RunStateStore, WorkspaceConversations, RunLeases, InstanceIdentity],
})
export class RunsModule {}
