import { parseManifest, SnapshotLayout } from './manifest';
import { CorruptManifestError } from './snapshot.errors';

describe('snapshot layout', () => {
  it('always puts the account between the prefix and the version', () => {
    const layout = new SnapshotLayout({ bucket: 'b', keyPrefix: 'workspaces', accountId: 'acc-1' });

    expect(layout.fileKey(1_800_000_000, 'src/a.ts')).toBe('workspaces/acc-1/1800000000/src/a.ts');
    expect(layout.manifestKey(1_800_000_000)).toBe('workspaces/acc-1/.manifests/1800000000.json');
    expect(layout.versionOf('workspaces/acc-1/.manifests/1800000000.json')).toBe(1_800_000_000);
    expect(layout.versionOf('workspaces/acc-1/.manifests/1800000000.json.partial')).toBeUndefined();
    expect(layout.versionOf('workspaces/acc-2/.manifests/1800000000.json')).toBeUndefined();
  });

  it('rejects a manifest recorded for another version or with a symlink target containing NUL', () => {
    const manifest = { format: 1, version: 7, created_at: '', account_id: 'a', bytes_total: 0, files: [], directories: [], symlinks: [], skipped: [] };

    expect(() => parseManifest(Buffer.from(JSON.stringify(manifest)), 8)).toThrow(CorruptManifestError);
    expect(() => parseManifest(Buffer.from(JSON.stringify({ ...manifest, symlinks: [{ path: 'l', target: 'a\0b', mtime: '' }] })), 7)).toThrow(CorruptManifestError);
    expect(parseManifest(Buffer.from(JSON.stringify(manifest)), 7)).toEqual(manifest);
  });
});
