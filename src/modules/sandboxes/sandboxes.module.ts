import { Module, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { IntegrationsModule } from '../../integrations/integrations.module';
import { SnapshotsModule } from '../snapshots/snapshots.module';
import { Sandbox } from './sandbox.entity';
import { SandboxAccessGuard } from './sandbox-access.guard';
import { SandboxSnapshotsController } from './sandbox-snapshots.controller';
import { SandboxesController } from './sandboxes.controller';
import { SandboxActivity } from './sandbox-activity';
import { SandboxesService } from './sandboxes.service';
import { SecretsStore } from './secrets.store';

const SWEEP_MS = 10_000;

@Module({
  imports: [TypeOrmModule.forFeature([Sandbox]), IntegrationsModule, SnapshotsModule],
  controllers: [SandboxesController, SandboxSnapshotsController],
  providers: [SandboxesService, SecretsStore, SandboxAccessGuard, SandboxActivity],
  exports: [SandboxesService, SandboxAccessGuard, SandboxActivity],
})
export class SandboxesModule implements OnModuleInit, OnModuleDestroy {
  private idleSweep?: NodeJS.Timeout;

  constructor(private readonly sandboxes: SandboxesService) {}

  onModuleInit(): void {
    this.idleSweep = setInterval(() => void this.sandboxes.sweep().catch(() => undefined), SWEEP_MS).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.idleSweep);
  }
}
