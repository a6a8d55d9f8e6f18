import { Logger } from '@nestjs/common';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppConfig } from '../../config/app-config';
import { LocalVolumeAccess } from '../../integrations/sandbox/local/local-volume-access';
import { LocalObjectStore } from '../../integrations/storage/local-object-store';
import { ObjectStore } from '../../integrations/storage/object-store';
import { StorageUnavailableError } from '../../integrations/storage/object-store.errors';
import { strictMock } from '../../testing/strict-mock';
import { SnapshotEngine } from './snapshot-engine';
import { SnapshotsService, type WorkspaceStorage } from './snapshots.service';

const config = AppConfig.fromEnvironment({ DATA_DIR: '/tmp/snapshots-service-spec', S3_DEFAULT_BUCKET: 'workspaces' });
const storage = (overrides: Partial<WorkspaceStorage> = {}): WorkspaceStorage => ({ accountId: 'acc-1', volumeName: 'web', bucket: null, keyPrefix: null, ...overrides });

describe('SnapshotsService', () => {
  let base: string;
  let service: SnapshotsService;

  beforeEach(async () => {
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    base = await mkdtemp(join(tmpdir(), 'snapshots-service-spec-'));
    service = new SnapshotsService(new SnapshotEngine(new LocalObjectStore(join(base, 'store'))), config);
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await rm(base, { recursive: true, force: true });
  });

  async function volume(name: string, files: Record<string, string> = {}): Promise<LocalVolumeAccess> {
    const dir = join(base, 'volumes', name);
    await mkdir(dir, { recursive: true });
    for (const [path, content] of Object.entries(files)) await writeFile(join(dir, path), content);
    return new LocalVolumeAccess(dir);
  }

  describe('locations', () => {
    it('gives each volume its own location in the default bucket unless a prefix is named', () => {
      expect(service.locationOf(storage())).toEqual({ bucket: 'workspaces', keyPrefix: 'volumes/web/', accountId: 'acc-1' });
      expect(service.locationOf(storage({ bucket: 'team', keyPrefix: 'projects' }))).toEqual({ bucket: 'team', keyPrefix: 'projects', accountId: 'acc-1' });
      expect(service.locationOf(storage({ keyPrefix: '' }))).toEqual({ bucket: 'workspaces', keyPrefix: '', accountId: 'acc-1' });
    });

    it('mounts only a named bucket, at the folder its snapshots use', () => {
      expect(service.bucketMountOf(storage())).toBeUndefined();
      expect(service.bucketMountOf(storage({ bucket: 'team', keyPrefix: 'projects' }))).toEqual({ bucket: 'team', keyPrefix: 'projects/acc-1/' });
      expect(service.bucketMountOf(storage({ bucket: 'team' }))).toEqual({ bucket: 'team', keyPrefix: 'volumes/web/acc-1/' });
    });
  });

  it('keeps the versions of two volumes apart, and shares them under a named prefix', async () => {
    await service.snapshot(storage({ volumeName: 'a' }), await volume('a', { 'a.txt': 'a' }));
    await service.snapshot(storage({ volumeName: 'c', keyPrefix: 'team/' }), await volume('c', { 'c.txt': 'c' }));

    expect(await service.restore(storage({ volumeName: 'b' }), await volume('b'))).toBeNull();
    expect(await service.restore(storage({ volumeName: 'd', keyPrefix: 'team' }), await volume('d'))).toMatchObject({ files: 1 });
    expect(await service.listVersions(storage({ volumeName: 'a' }))).toEqual([expect.objectContaining({ files: 1 })]);
  });

  it('takes one snapshot of a location at a time, so two versions never race for one number', async () => {
    jest.spyOn(Date, 'now').mockReturnValue(1_800_000_000_000);
    const workspace = await volume('web', { 'x.txt': 'x' });

    const versions = await Promise.all([service.snapshot(storage(), workspace), service.snapshot(storage({ keyPrefix: 'volumes/web' }), workspace)]);

    expect(versions.map((stats) => stats.version).sort()).toEqual([1_800_000_000, 1_800_000_001]);
  });

  it('passes storage failures on without committing anything', async () => {
    const store = strictMock<ObjectStore>('store', ['list', 'listAll', 'put', 'get', 'copy', 'delete']);
    store.listAll.mockImplementation(() => {
      throw new StorageUnavailableError('list', 'workspaces', 'down');
    });
    const failing = new SnapshotsService(new SnapshotEngine(store), config);

    await expect(failing.snapshot(storage(), await volume('web', { 'x.txt': 'x' }))).rejects.toThrow(StorageUnavailableError);
    expect(store.put).not.toHaveBeenCalled();
  });
});
