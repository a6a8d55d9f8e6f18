import { chmod, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidInputError } from '../src/common/domain-error';
import { LocalVolumeAccess } from '../src/integrations/sandbox/local/local-volume-access';
import type { VolumeAccess } from '../src/integrations/sandbox/sandbox-provider';
import { LocalObjectStore } from '../src/integrations/storage/local-object-store';
import type { ObjectStore } from '../src/integrations/storage/object-store';
import { S3ObjectStore } from '../src/integrations/storage/s3-object-store';
import { SnapshotEngine } from '../src/modules/snapshots/snapshot-engine';
import type { SnapshotLocation } from '../src/modules/snapshots/snapshot.types';
import { SnapshotFailedError } from '../src/modules/snapshots/snapshot.errors';
import { S3TestServer } from './support/s3-server';

const BUCKET = 'workspaces';
const SPARSE_FILE_BYTES = 1024 ** 3 + 4096;
const RSS_GROWTH_LIMIT_BYTES = 200 * 1024 ** 2;

/** Runs action while sampling the resident set size; returns the highest value seen. */
async function peakRssDuring(action: () => Promise<unknown>): Promise<number> {
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  try {
    await action();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, process.memoryUsage.rss());
}

async function readTail(path: string, bytes: number): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    await handle.read(buffer, 0, bytes, (await handle.stat()).size - bytes);
    return buffer.toString();
  } finally {
    await handle.close();
  }
}

interface Backend {
  name: string;
  store: ObjectStore;
  dispose(): Promise<void>;
}

let server: S3TestServer;

const backends: [string, () => Promise<Backend>][] = [
  [
    's3rver through S3ObjectStore',
    async () => {
      server = await S3TestServer.start([BUCKET]);
      const store = new S3ObjectStore(server.settings);
      return { name: 's3', store, dispose: async () => (store.onModuleDestroy(), server.dispose()) };
    },
  ],
  [
    'LocalObjectStore',
    async () => {
      const root = await mkdtemp(join(tmpdir(), 'local-store-e2e-'));
      return { name: 'local', store: new LocalObjectStore(root), dispose: () => rm(root, { recursive: true, force: true }) };
    },
  ],
];

describe.each(backends)('SnapshotEngine against %s', (label, createBackend) => {
  let backend: Backend;
  let engine: SnapshotEngine;
  let base: string;
  let workspace: string;
  let location: SnapshotLocation;
  let volumeCount = 0;

  beforeAll(async () => {
    backend = await createBackend();
    engine = new SnapshotEngine(backend.store);
  });

  afterAll(async () => {
    await backend.dispose();
  });

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'snapshot-e2e-'));
    workspace = join(base, 'workspace');
    await mkdir(workspace);
    volumeCount += 1;
    location = { bucket: BUCKET, keyPrefix: 'e2e/', accountId: `account-${volumeCount}` };
  });

  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  async function freshVolume(): Promise<{ dir: string; volume: LocalVolumeAccess }> {
    const dir = await mkdtemp(join(base, 'restore-'));
    return { dir, volume: new LocalVolumeAccess(dir) };
  }

  async function writeProject(): Promise<void> {
    await mkdir(join(workspace, 'src/components/forms'), { recursive: true });
    await mkdir(join(workspace, 'cache'), { mode: 0o700 });
    await writeFile(join(workspace, 'package.json'), '{"name":"demo"}\n');
    await writeFile(join(workspace, 'src/components/forms/input.tsx'), 'export const Input = () => null;\n'.repeat(200));
    await writeFile(join(workspace, 'src/components/forms/ünïcode name.txt'), 'ü\n');
    await writeFile(join(workspace, 'deploy.sh'), '#!/bin/sh\nexit 0\n');
    await writeFile(join(workspace, 'secrets.env'), 'TOKEN=1\n');
    // explicit modes: a worker that booted the app runs with the service's umask 077
    await chmod(join(workspace, 'deploy.sh'), 0o755);
    await chmod(join(workspace, 'secrets.env'), 0o600);
  }

  it('snapshots a project, lists it and restores it into a fresh volume with structure and modes', async () => {
    await writeProject();

    const stats = await engine.snapshot(new LocalVolumeAccess(workspace), location);
    const versions = await engine.listVersions(location);
    const target = await freshVolume();
    const restored = await engine.restore(target.volume, location);

    expect(stats).toMatchObject({ files: 5, errors: [], skipped: [] });
    expect(versions).toEqual([{ version: stats.version, created_at: expect.any(String), files: 5, bytes: stats.bytes_total }]);
    expect(restored).toMatchObject({ version: stats.version, files: 5, directories: 4 });
    expect(await readFile(join(target.dir, 'src/components/forms/input.tsx'), 'utf8')).toBe('export const Input = () => null;\n'.repeat(200));
    expect(await readFile(join(target.dir, 'src/components/forms/ünïcode name.txt'), 'utf8')).toBe('ü\n');
    expect((await stat(join(target.dir, 'deploy.sh'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(target.dir, 'secrets.env'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(target.dir, 'cache'))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(target.dir, 'cache'))).toEqual([]);
  });

  it('uploads no content bytes when snapshotting an unchanged workspace again', async () => {
    await writeProject();
    const first = await engine.snapshot(new LocalVolumeAccess(workspace), location);

    const second = await engine.snapshot(new LocalVolumeAccess(workspace), location);

    expect(first.bytes_uploaded).toBe(first.bytes_total);
    expect(second).toMatchObject({ bytes_uploaded: 0, files_copied: 5, bytes_total: first.bytes_total });
    const target = await freshVolume();
    await engine.restore(target.volume, location);
    expect(await readFile(join(target.dir, 'package.json'), 'utf8')).toBe('{"name":"demo"}\n');
  });

  it('snapshots and restores an empty volume', async () => {
    const stats = await engine.snapshot(new LocalVolumeAccess(workspace), location);
    const target = await freshVolume();

    expect(stats).toMatchObject({ files: 0, bytes_total: 0, errors: [] });
    expect(await engine.restore(target.volume, location)).toMatchObject({ version: stats.version, files: 0 });
    expect(await readdir(target.dir)).toEqual([]);
  });

  it('answers null and leaves the volume alone when there is no version yet', async () => {
    const target = await freshVolume();
    await writeFile(join(target.dir, 'existing.txt'), 'keep me');

    expect(await engine.restore(target.volume, location)).toBeNull();
    expect(await engine.listVersions(location)).toEqual([]);
    expect(await readdir(target.dir)).toEqual(['existing.txt']);
  });

  it('stores a symlink that points outside as a link and never follows it', async () => {
    const outside = join(base, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'host-secret.txt'), 'host secret');
    await symlink(outside, join(workspace, 'escape'));
    await symlink(join(outside, 'host-secret.txt'), join(workspace, 'secret-link'));

    const stats = await engine.snapshot(new LocalVolumeAccess(workspace), location);
    const target = await freshVolume();
    await engine.restore(target.volume, location);

    expect(stats).toMatchObject({ files: 0, bytes_total: 0 });
    expect(await readlink(join(target.dir, 'escape'))).toBe(outside);
    expect(await readlink(join(target.dir, 'secret-link'))).toBe(join(outside, 'host-secret.txt'));
    expect(await readdir(outside)).toEqual(['host-secret.txt']);
    expect(await readFile(join(outside, 'host-secret.txt'), 'utf8')).toBe('host secret');
  });

  it("keeps accounts apart and refuses prefixes that climb out of the account's place", async () => {
    await writeProject();
    await engine.snapshot(new LocalVolumeAccess(workspace), location);

    expect(await engine.listVersions({ ...location, accountId: 'someone-else' })).toEqual([]);
    await expect(engine.listVersions({ ...location, keyPrefix: `e2e/${location.accountId}/../` })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(engine.snapshot(new LocalVolumeAccess(workspace), { ...location, keyPrefix: '../' })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(engine.restore((await freshVolume()).volume, { ...location, accountId: '..' })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('moves a sparse file of more than 1 GiB with bounded memory', async () => {
    const big = join(workspace, 'disk.img');
    const handle = await open(big, 'w');
    await handle.write('head-marker', 0);
    await handle.write('tail-marker', SPARSE_FILE_BYTES - 'tail-marker'.length);
    await handle.close();
    const target = await freshVolume();

    const baseline = process.memoryUsage.rss();
    const snapshotGrowth = (await peakRssDuring(() => engine.snapshot(new LocalVolumeAccess(workspace), location))) - baseline;
    const restoreGrowth = (await peakRssDuring(() => engine.restore(target.volume, location))) - baseline;

    console.log(`[${backend.name}] RSS growth over the baseline for a ${SPARSE_FILE_BYTES} byte file: snapshot ${(snapshotGrowth / 1024 ** 2).toFixed(1)} MiB, restore ${(restoreGrowth / 1024 ** 2).toFixed(1)} MiB`);
    expect(snapshotGrowth).toBeLessThan(RSS_GROWTH_LIMIT_BYTES);
    expect(restoreGrowth).toBeLessThan(RSS_GROWTH_LIMIT_BYTES);
    expect((await stat(join(target.dir, 'disk.img'))).size).toBe(SPARSE_FILE_BYTES);
    expect(await readTail(join(target.dir, 'disk.img'), 'tail-marker'.length)).toBe('tail-marker');
  }, 600_000);

  if (label.startsWith('s3rver')) {
    it('does not commit a version when the server goes away mid-snapshot, lists the files and keeps the latest', async () => {
      const names = Array.from({ length: 24 }, (_, index) => `notes/${String(index).padStart(2, '0')}.md`);
      await mkdir(join(workspace, 'notes'));
      for (const name of names) await writeFile(join(workspace, name), `first ${name}`);
      const committed = await engine.snapshot(new LocalVolumeAccess(workspace), location);
      for (const name of names) await writeFile(join(workspace, name), `second ${name}`);
      const volume = stopServerOnRead(new LocalVolumeAccess(workspace), names[6]);

      const failure = (await engine.snapshot(volume, location).catch((error: unknown) => error)) as SnapshotFailedError;
      await server.restart();

      expect(failure).toBeInstanceOf(SnapshotFailedError);
      expect(failure.stats.version).toBeGreaterThan(committed.version);
      expect(failure.stats.errors.map((entry) => entry.path)).toContain(names[6]);
      expect(failure.stats.errors.every((entry) => names.includes(entry.path))).toBe(true);
      expect(failure.stats.errors.length).toBeGreaterThan(names.length / 2);
      expect(failure.stats.errors.every((entry) => entry.error.includes('object storage unavailable'))).toBe(true);
      expect((await engine.listVersions(location)).map((entry) => entry.version)).toEqual([committed.version]);
      const target = await freshVolume();
      await engine.restore(target.volume, location);
      expect(await readFile(join(target.dir, names[0]), 'utf8')).toBe(`first ${names[0]}`);
    }, 120_000);
  }
});

/** The storage outage happens while the engine is reading the given file. */
function stopServerOnRead(volume: VolumeAccess, path: string): VolumeAccess {
  return Object.assign(Object.create(volume) as VolumeAccess, {
    openRead: async (requested: string) => {
      if (requested === path && server.running) await server.stop();
      return volume.openRead(requested);
    },
  });
}
