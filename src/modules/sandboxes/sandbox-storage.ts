import type { SnapshotLocation } from '../snapshots/snapshot-engine';
import type { Sandbox } from './sandbox.entity';

/** Where a sandbox's workspace snapshots live: its bucket (or the default one), prefix and account. */
export function snapshotLocationOf(sandbox: Sandbox, defaultBucket: string): SnapshotLocation {
  return { bucket: sandbox.config.s3_bucket_name ?? defaultBucket, keyPrefix: sandbox.config.s3_key_prefix, accountId: sandbox.accountId };
}

/** Storage is "configured" for a sandbox when its creator named a bucket: then termination syncs first. */
export const hasStorageConfigured = (sandbox: Sandbox) => sandbox.config.s3_bucket_name !== null;
