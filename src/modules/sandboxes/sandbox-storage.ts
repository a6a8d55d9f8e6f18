import type { WorkspaceStorage } from '../snapshots/snapshots.service';
import type { Sandbox } from './sandbox.entity';

/** What the sandbox's snapshots are tied to, as its creator asked for it. */
export function workspaceStorageOf(sandbox: Sandbox): WorkspaceStorage {
  return { accountId: sandbox.accountId, volumeName: sandbox.config.volume_name, bucket: sandbox.config.s3_bucket_name, keyPrefix: sandbox.config.s3_key_prefix };
}
