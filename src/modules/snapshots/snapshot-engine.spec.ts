import { execFileSync } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { InvalidInputError } from '../../common/domain-error';
import { LocalVolumeAccess } from '../../integrations/sandbox/local/local-volume-access';
import type { VolumeAccess } from '../../integrations/sandbox/sandbox-provider';
import { ProviderFailureError } from '../../integrations/sandbox/sandbox-provider.errors';
import { LocalObjectStore } from '../../integrations/storage/local-object-store';
import { StorageUnavailableError } from '../../integrations/storage/object-store.errors';
import { SnapshotEngine } from './snapshot-engine';
import type { SnapshotLocation } from './snapshot.types';
import { CorruptManifestError, RestoreFailedError, SnapshotFailedError, SnapshotVersionNotFoundError } from './snapshot.errors';

const BUCKET = 'snapshots';

/** A volume whose reads of the named files fail, as a disk error would make them. */
function failingReads(volume: VolumeAccess, broken: string[]): VolumeAccess {
  return Object.assign(Object.create(volume) as VolumeAccess, {
    openRead: async (path: string) => {
      if (broken.includes(path)) throw new ProviderFailureError('filesystem', `I/O error on ${path}`);
      return volume.openRead(path);
    },
  });
}

describe('SnapshotEngine', () => {
  let base: string;
  let storeRoot: string;
  let workspace: string;
  let store: LocalObjectStore;
  let engine: SnapshotEngine;
  const location: SnapshotLocation = { bucket: BUCKET, keyPrefix: 'workspaces/', accountId: 'acc-1' };

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'snapshot-engine-spec-'));
    storeRoot = join(base, 'store');
    workspace = join(base, 'workspace');
    await mkdir(workspace);
    store = new LocalObjectStore(storeRoot);
    engine = new SnapshotEngine(store);
  });

  afterEach(async () => {
    jest.restoreAllMocks();
    await rm(base, { recursive: true, force: true });
  });

  async function freshVolume(name: string): Promise<{ dir: string; volume: LocalVolumeAccess }> {
    const dir = join(base, name);
    await mkdir(dir);
    return { dir, volume: new LocalVolumeAccess(dir) };
  }

  async function versionObjects(version: number): Promise<string[]> {
    const keys = [];
    for await (const object of store.listAll(BUCKET, `workspaces/acc-1/${version}/`)) keys.push(object.key);
    return keys;
  }

  describe('snapshot and restore', () => {
    beforeEach(async () => {
      await mkdir(join(workspace, 'src/lib'), { recursive: true });
      await mkdir(join(workspace, 'empty'), { mode: 0o700 });
      await writeFile(join(workspace, 'README.md'), '# project\n');
      await writeFile(join(workspace, 'src/lib/util.ts'), 'export const x = 1;\n');
      await writeFile(join(workspace, 'run.sh'), '#!/bin/sh\necho hi\n');
      await chmod(join(workspace, 'run.sh'), 0o750); // whatever the umask of the worker
      await symlink('src/lib/util.ts', join(workspace, 'util-link'));
      execFileSync('mkfifo', [join(workspace, 'queue')]);
    });

    it('stores the volume under the account and version and restores structure, modes and links', async () => {
      const stats = await engine.snapshot(new LocalVolumeAccess(workspace), location);

      expect(stats).toMatchObject({ files: 3, files_copied: 0, errors: [], skipped: [{ path: 'queue', reason: expect.stringContaining('special file') }] });
      expect(stats.bytes_total).toBe(10 + 20 + 18);
      expect(stats.bytes_uploaded).toBe(stats.bytes_total);
      expect((await versionObjects(stats.version)).sort()).toEqual(
        ['README.md', 'run.sh', 'src/lib/util.ts'].map((path) => `workspaces/acc-1/${stats.version}/${path}`),
      );

      const target = await freshVolume('restored');
      const restored = await engine.restore(target.volume, location);

      expect(restored).toMatchObject({ version: stats.version, files: 3, directories: 3, symlinks: 1 });
      expect(await readFile(join(target.dir, 'src/lib/util.ts'), 'utf8')).toBe('export const x = 1;\n');
      expect((await stat(join(target.dir, 'run.sh'))).mode & 0o777).toBe(0o750);
      expect((await stat(join(target.dir, 'empty'))).mode & 0o777).toBe(0o700);
      expect(await readdir(join(target.dir, 'empty'))).toEqual([]);
      expect(await readlink(join(target.dir, 'util-link'))).toBe('src/lib/util.ts');
      await expect(lstat(join(target.dir, 'queue'))).rejects.toThrow('ENOENT');
    });

    it('copies unchanged files inside the store and uploads only changed content', async () => {
      const first = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      const unchanged = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      await writeFile(join(workspace, 'README.md'), '# project, edited\n');
      const edited = await engine.snapshot(new LocalVolumeAccess(workspace), location);

      expect(unchanged).toMatchObject({ bytes_uploaded: 0, files_copied: 3, bytes_total: first.bytes_total });
      expect(unchanged.version).toBeGreaterThan(first.version);
      expect(edited).toMatchObject({ bytes_uploaded: 18, files_copied: 2 });

      const target = await freshVolume('restored');
      await engine.restore(target.volume, location, unchanged.version);
      expect(await readFile(join(target.dir, 'README.md'), 'utf8')).toBe('# project\n');
    });

    it('lists committed versions newest first with their size', async () => {
      const first = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      const second = await engine.snapshot(new LocalVolumeAccess(workspace), location);

      const versions = await engine.listVersions(location);

      expect(versions).toEqual([
        { version: second.version, created_at: expect.any(String), files: 3, bytes: second.bytes_total },
        { version: first.version, created_at: expect.any(String), files: 3, bytes: first.bytes_total },
      ]);
      expect(Date.parse(versions[0].created_at)).not.toBeNaN();
    });

    it('keeps versions strictly increasing when two snapshots fall in the same second', async () => {
      jest.spyOn(Date, 'now').mockReturnValue(1_800_000_000_000);

      const first = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      const second = await engine.snapshot(new LocalVolumeAccess(workspace), location);

      expect([first.version, second.version]).toEqual([1_800_000_000, 1_800_000_001]);
    });
  });

  describe('failures', () => {
    beforeEach(async () => {
      await writeFile(join(workspace, 'a.txt'), 'alpha');
      await writeFile(join(workspace, 'b.txt'), 'bravo');
    });

    it('does not commit a version when a file cannot be read, names the file and keeps the latest', async () => {
      const committed = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      await writeFile(join(workspace, 'c.txt'), 'charlie');

      const failure = await engine.snapshot(failingReads(new LocalVolumeAccess(workspace), ['b.txt']), location).catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(SnapshotFailedError);
      const { stats } = failure as SnapshotFailedError;
      expect(stats.errors).toEqual([{ path: 'b.txt', error: 'filesystem: I/O error on b.txt' }]);
      expect((failure as Error).message).toContain('b.txt');
      expect((await engine.listVersions(location)).map((entry) => entry.version)).toEqual([committed.version]);
      expect(await versionObjects(stats.version)).toEqual([]);
      const target = await freshVolume('restored');
      await engine.restore(target.volume, location);
      expect(await readdir(target.dir)).toEqual(['a.txt', 'b.txt']);
    });

    it('stops attempting files once the store is unavailable and lists every file it did not store', async () => {
      const names = Array.from({ length: 60 }, (_, index) => `file-${String(index).padStart(2, '0')}.txt`);
      for (const name of names) await writeFile(join(workspace, name), name);
      jest.spyOn(store, 'put').mockRejectedValue(new StorageUnavailableError('put', BUCKET, 'ECONNREFUSED'));

      const failure = (await engine.snapshot(new LocalVolumeAccess(workspace), location).catch((error: unknown) => error)) as SnapshotFailedError;

      expect(failure).toBeInstanceOf(SnapshotFailedError);
      expect(failure.stats.errors.map((entry) => entry.path)).toEqual(['a.txt', 'b.txt', ...names]);
      expect((store.put as jest.Mock).mock.calls.length).toBeLessThanOrEqual(16);
      expect(failure.stats.errors.filter((entry) => entry.error.startsWith('not attempted')).length).toBeGreaterThanOrEqual(46);
    });

    it('refuses to restore content that does not match the manifest and leaves the existing file alone', async () => {
      const { version } = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      await writeFile(join(storeRoot, BUCKET, `workspaces/acc-1/${version}/a.txt`), 'ALPHA');
      const target = await freshVolume('restored');
      await writeFile(join(target.dir, 'a.txt'), 'local edit');

      const failure = (await engine.restore(target.volume, location).catch((error: unknown) => error)) as RestoreFailedError;

      expect(failure).toBeInstanceOf(RestoreFailedError);
      expect(failure.failures).toEqual([{ path: 'a.txt', error: expect.stringContaining('content does not match') }]);
      expect(await readFile(join(target.dir, 'a.txt'), 'utf8')).toBe('local edit');
      expect(await readFile(join(target.dir, 'b.txt'), 'utf8')).toBe('bravo');
    });

    it('refuses a manifest whose paths leave the volume', async () => {
      const { version } = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      const manifestPath = join(storeRoot, BUCKET, `workspaces/acc-1/.manifests/${version}.json`);
      const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
      manifest.files[0].path = '../../escape.txt';
      await writeFile(manifestPath, JSON.stringify(manifest));
      const target = await freshVolume('restored');

      await expect(new SnapshotEngine(store).restore(target.volume, location)).rejects.toBeInstanceOf(CorruptManifestError);
      expect(await readdir(target.dir)).toEqual([]);
    });

    it('does not recreate setuid bits recorded in a manifest', async () => {
      await writeFile(join(workspace, 'tool'), 'binary', { mode: 0o755 });
      execFileSync('chmod', ['4755', join(workspace, 'tool')]);
      await engine.snapshot(new LocalVolumeAccess(workspace), location);
      const target = await freshVolume('restored');

      await engine.restore(target.volume, location);

      expect((await stat(join(target.dir, 'tool'))).mode & 0o7777).toBe(0o755);
    });
  });

  describe('versions', () => {
    it('restores nothing and answers null when the account has no version yet', async () => {
      const target = await freshVolume('restored');
      await writeFile(join(target.dir, 'keep.txt'), 'mine');

      expect(await engine.restore(target.volume, location)).toBeNull();
      expect(await readdir(target.dir)).toEqual(['keep.txt']);
      expect(await engine.listVersions(location)).toEqual([]);
    });

    it('rejects an unknown version', async () => {
      await writeFile(join(workspace, 'a.txt'), 'alpha');
      await engine.snapshot(new LocalVolumeAccess(workspace), location);
      const target = await freshVolume('restored');

      await expect(engine.restore(target.volume, location, 42)).rejects.toBeInstanceOf(SnapshotVersionNotFoundError);
    });

    it('ignores versions without a manifest and numbers the next version above their leftovers', async () => {
      jest.spyOn(Date, 'now').mockReturnValue(1_800_000_000_000);
      await store.put(BUCKET, 'workspaces/acc-1/1800000000/orphan.txt', Readable.from(['left over']));
      await writeFile(join(workspace, 'a.txt'), 'alpha');

      expect(await engine.listVersions(location)).toEqual([]);
      expect(await engine.restore((await freshVolume('restored')).volume, location)).toBeNull();
      expect((await engine.snapshot(new LocalVolumeAccess(workspace), location)).version).toBe(1_800_000_001);
    });

    it("keeps accounts apart: another account's versions are invisible", async () => {
      await writeFile(join(workspace, 'a.txt'), 'alpha');
      await engine.snapshot(new LocalVolumeAccess(workspace), location);

      expect(await engine.listVersions({ ...location, accountId: 'acc-2' })).toEqual([]);
      expect(await engine.restore((await freshVolume('restored')).volume, { ...location, accountId: 'acc-2' })).toBeNull();
    });

    it.each([
      { keyPrefix: '../other/' },
      { keyPrefix: 'a/../../b/' },
      { keyPrefix: '/absolute/' },
      { keyPrefix: 'line\nbreak/' },
      { accountId: '../acc-2' },
      { accountId: 'acc-1/../acc-2' },
    ])('rejects the location %j', async (override) => {
      const unsafe = { ...location, ...override };

      await expect(engine.snapshot(new LocalVolumeAccess(workspace), unsafe)).rejects.toBeInstanceOf(InvalidInputError);
      await expect(engine.listVersions(unsafe)).rejects.toBeInstanceOf(InvalidInputError);
    });
  });
});
