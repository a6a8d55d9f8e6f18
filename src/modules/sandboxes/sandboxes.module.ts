import { Module, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { SandboxProviderModule } from '../../integrations/sandbox/sandbox-provider.module';
import { StorageModule } from '../../integrations/storage/storage.module';
import { Sandbox } from './sandbox.entity';
import { SandboxesController } from './sandboxes.controller';
import { SandboxesService } from './sandboxes.service';
import { SecretsStore } from './secrets.store';

const IDLE_SWEEP_MS = 10_000;

@Module({
  imports: [TypeOrmModule.forFeature([Sandbox]), SandboxProviderModule, StorageModule],
  controllers: [SandboxesController],
  providers: [SandboxesService, SecretsStore],
  exports: [SandboxesService, SandboxProviderModule, StorageModule],
})
export class SandboxesModule implements OnModuleInit, OnModuleDestroy {
  private idleSweep?: NodeJS.Timeout;

  constructor(private readonly sandboxes: SandboxesService) {}

  onModuleInit(): void {
    this.idleSweep = setInterval(() => void this.sandboxes.terminateIdle().catch(() => undefined), IDLE_SWEEP_MS).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.idleSweep);
  }
}
