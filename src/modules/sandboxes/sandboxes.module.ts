import { Module, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClusterLock } from '../../common/cluster-lock';
import { InstanceIdentity } from '../../common/instance-identity';
import { AppConfig } from '../../config/app-config';
import { IntegrationsModule } from '../../integrations/integrations.module';
import { SnapshotsModule } from '../snapshots/snapshots.module';
import { Sandbox } from './sandbox.entity';
import { SandboxAccessGuard } from './sandbox-access.guard';
import { SandboxSnapshotsController } from './sandbox-snapshots.controller';
import { SandboxesController } from './sandboxes.controller';
import { SandboxActivity } from './sandbox-activity';
import { SandboxesService } from './sandboxes.service';
import { SecretsStore } from './secrets.store';

@Module({
  imports: [TypeOrmModule.forFeature([Sandbox]), IntegrationsModule, SnapshotsModule],
  controllers: [SandboxesController, SandboxSnapshotsController],
  providers: [SandboxesService, SecretsStore, SandboxAccessGuard, SandboxActivity, ClusterLock, InstanceIdentity],
  exports: [SandboxesService, SandboxAccessGuard, SandboxActivity],
})
export class SandboxesModule implements OnModuleInit, OnModuleDestroy {
  private idleSweep?: NodeJS.Timeout;

  constructor(
    private readonly sandboxes: SandboxesService,
    private readonly config: AppConfig,
  ) {}

  /** Every instance ticks; one pass per period runs among the instances sharing the database. */
  onModuleInit(): void {
    this.idleSweep = setInterval(() => void this.sandboxes.sweepOnce().catch(() => undefined), this.config.sandbox.sweepIntervalSeconds * 1000).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.idleSweep);
  }
}
