import { Module } from '@nestjs/common';
import { IntegrationsModule } from '../../integrations/integrations.module';
import { SnapshotEngine } from './snapshot-engine';
import { SnapshotsService } from './snapshots.service';

@Module({
  imports: [IntegrationsModule],
  providers: [SnapshotEngine, SnapshotsService],
  exports: [SnapshotsService],
})
export class SnapshotsModule {}
