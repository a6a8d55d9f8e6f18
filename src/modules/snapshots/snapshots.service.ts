import { Injectable, Logger } from '@nestjs/common';
import { accountKeyBase } from '../../common/key-prefix';
import { KeyedLock } from '../../common/keyed-lock';
import { AppConfig } from '../../config/app-config';
import type { VolumeAccess } from '../../integrations/sandbox/sandbox-provider';
import { SnapshotEngine } from './snapshot-engine';
import type { RestoreStats, SnapshotLocation, SnapshotStats, SnapshotVersionSummary } from './snapshot.types';

/** What a workspace's snapshots are tied to: its account and volume, and the bucket and prefix its creator named. */
export interface WorkspaceStorage {
  accountId: string;
  volumeName: string;
  bucket: string | null;
  /** null: the volume's own location. A string (even ''): that prefix, shared by every volume that names it. */
  keyPrefix: string | null;
}

export interface BucketMount {
  bucket: string;
  /** The account's folder below the prefix: exactly where its snapshots live. */
  keyPrefix: string;
}

/** The key prefix of a volume whose creator named none, so two volumes never share versions by accident. */
export function volumeKeyPrefix(volumeName: string): string {
  return `volumes/${volumeName}/`;
}

/** Workspace snapshots: where they live, and one snapshot at a time per location. */
@Injectable()
export class SnapshotsService {
  private readonly logger = new Logger(SnapshotsService.name);
  private readonly locks = new KeyedLock();

  constructor(
    private readonly engine: SnapshotEngine,
    private readonly config: AppConfig,
  ) {}

  locationOf(storage: WorkspaceStorage): SnapshotLocation {
    return { bucket: storage.bucket ?? this.config.storage.defaultBucket, keyPrefix: storage.keyPrefix ?? volumeKeyPrefix(storage.volumeName), accountId: storage.accountId };
  }

  /** Only a bucket the creator named is mounted into the sandbox; the default bucket stays the service's. */
  bucketMountOf(storage: WorkspaceStorage): BucketMount | undefined {
    if (storage.bucket === null) return undefined;
    const location = this.locationOf(storage);
    return { bucket: location.bucket, keyPrefix: accountKeyBase(location.keyPrefix, location.accountId) };
  }

  /** Serialised per location, so two versions can never race for the same number. */
  async snapshot(storage: WorkspaceStorage, volume: VolumeAccess): Promise<SnapshotStats> {
    const location = this.locationOf(storage);
    const stats = await this.locks.run(lockKeyOf(location), () => this.engine.snapshot(volume, location));
    this.logger.log({ bucket: location.bucket, key_base: accountKeyBase(location.keyPrefix, location.accountId), version: stats.version, files: stats.files, bytes_uploaded: stats.bytes_uploaded }, 'workspace snapshot committed');
    return stats;
  }

  /** The given version, or the latest; null when the location has none yet. */
  restore(storage: WorkspaceStorage, volume: VolumeAccess, version?: number): Promise<RestoreStats | null> {
    return this.engine.restore(volume, this.locationOf(storage), version);
  }

  listVersions(storage: WorkspaceStorage): Promise<SnapshotVersionSummary[]> {
    return this.engine.listVersions(this.locationOf(storage));
  }
}

function lockKeyOf(location: SnapshotLocation): string {
  return `${location.bucket}/${accountKeyBase(location.keyPrefix, location.accountId)}`;
}
