import type { AppConfig } from '../../config/app-config';
import { LocalObjectStore } from './local-object-store';
import type { ObjectStore } from './object-store';
import { S3ObjectStore } from './s3-object-store';

/** The object store named by STORAGE_PROVIDER: a local directory (default) or an S3-compatible service. */
export function createObjectStore(config: AppConfig): ObjectStore {
  return config.storage.provider === 's3' ? new S3ObjectStore(config.storage.s3) : new LocalObjectStore(config.storage.rootDir);
}
