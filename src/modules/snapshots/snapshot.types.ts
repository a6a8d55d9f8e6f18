/** Where an account's snapshots live; the engine always adds the account segment after keyPrefix. */
export interface SnapshotLocation {
  bucket: string;
  keyPrefix: string;
  accountId: string;
}

export interface FileFailure {
  path: string;
  error: string;
}

export interface SnapshotStats {
  version: number;
  files: number;
  bytes_total: number;
  /** Content bytes sent to the store; files unchanged since the latest version are copied instead. */
  bytes_uploaded: number;
  files_copied: number;
  duration_ms: number;
  errors: FileFailure[];
  skipped: { path: string; reason: string }[];
}

export interface RestoreStats {
  version: number;
  files: number;
  bytes_total: number;
  directories: number;
  symlinks: number;
  duration_ms: number;
}

export interface SnapshotVersionSummary {
  version: number;
  created_at: string;
  files: number;
  bytes: number;
}
