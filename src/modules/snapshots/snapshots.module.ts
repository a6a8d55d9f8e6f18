import { Module } from '@nestjs/common';
import { StorageModule } from '../../integrations/storage/storage.module';
import { SnapshotEngine } from './snapshot-engine';
import { SnapshotsService } from './snapshots.service';

@Module({
  imports: [StorageModule],
  providers: [SnapshotEngine, SnapshotsService],
  exports: [SnapshotsService],
})
export class SnapshotsModule {}
