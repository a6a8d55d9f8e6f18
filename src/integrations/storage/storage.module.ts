import { Module } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { SnapshotEngine } from '../../modules/snapshots/snapshot-engine';
import { ObjectStore } from './object-store';
import { createObjectStore } from './object-store.factory';

@Module({
  providers: [{ provide: ObjectStore, useFactory: createObjectStore, inject: [AppConfig] }, SnapshotEngine],
  exports: [ObjectStore, SnapshotEngine],
})
export class StorageModule {}
