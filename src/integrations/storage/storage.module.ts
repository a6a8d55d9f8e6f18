import { Module } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { ObjectStore } from './object-store';
import { createObjectStore } from './object-store.factory';

@Module({
  providers: [{ provide: ObjectStore, useFactory: createObjectStore, inject: [AppConfig] }],
  exports: [ObjectStore],
})
export class StorageModule {}
