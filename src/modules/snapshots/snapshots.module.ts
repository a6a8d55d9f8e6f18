import { Module } from '@nestjs/common';
import { SandboxesModule } from '../sandboxes/sandboxes.module';
import { SnapshotsController } from './snapshots.controller';

@Module({ imports: [SandboxesModule], controllers: [SnapshotsController] })
export class SnapshotsModule {}
