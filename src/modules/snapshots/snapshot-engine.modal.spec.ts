import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalObjectStore } from '../../integrations/storage/local-object-store';
import { localSandbox, modalVolumeOnLocalDisk } from '../../testing/local-modal-sandbox';
import type { ModalProcessLike } from '../../integrations/sandbox/modal/modal-client';
import { SnapshotEngine } from './snapshot-engine';
import type { SnapshotLocation } from './snapshot.types';
import { RestoreFailedError, SnapshotFailedError } from './snapshot.errors';

const BUCKET = 'snapshots';

/** The snapshot engine on the Modal volume access, whose sandbox is this machine (execs counted). */
describe('SnapshotEngine on a Modal volume', () => {
  let base: string;
  let storeRoot: string;
  let store: LocalObjectStore;
  let engine: SnapshotEngine;
  const location: SnapshotLocation = { bucket: BUCKET, keyPrefix: 'workspaces/', accountId: 'acc-1' };

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'snapshot-engine-modal-'));
    storeRoot = join(base, 'store');
    store = new LocalObjectStore(storeRoot);
    engine = new SnapshotEngine(store);
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  async function volumeAt(name: string) {
    const dir = join(base, name);
    await mkdir(dir, { recursive: true });
    const sandbox = localSandbox();
    return { dir, sandbox, volume: modalVolumeOnLocalDisk(dir, base, sandbox) };
  }

  async function fillWorkspace(dir: string, files: number): Promise<void> {
    for (let index = 0; index < files; index += 1) {
      const directory = join(dir, `pkg-${index % 7}`);
      await mkdir(directory, { recursive: true });
      await writeFile(join(directory, `file-${index}.txt`), `content of file ${index}\n`.repeat(index % 5 + 1));
    }
    await writeFile(join(dir, 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 7));
    await symlink('pkg-0/file-0.txt', join(dir, 'link'));
  }

  async function execsOfSnapshotAndRestore(files: number): Promise<{ snapshot: number; resnapshot: number; restore: number }> {
    const source = await volumeAt(`source-${files}`);
    await fillWorkspace(source.dir, files);
    const first = await engine.snapshot(source.volume, { ...location, accountId: `acc-${files}` });
    const snapshot = source.sandbox.execs.length;
    await writeFile(join(source.dir, 'pkg-1/file-1.txt'), 'edited\n');
    const second = await engine.snapshot(source.volume, { ...location, accountId: `acc-${files}` });
    const resnapshot = source.sandbox.execs.length - snapshot;
    expect(first).toMatchObject({ files: files + 1, files_copied: 0, errors: [] });
    expect(second).toMatchObject({ files: files + 1, files_copied: files, bytes_uploaded: 7 });

    const target = await volumeAt(`target-${files}`);
    const restored = await engine.restore(target.volume, { ...location, accountId: `acc-${files}` });
    expect(restored).toMatchObject({ files: files + 1, symlinks: 1 });
    expect(await readFile(join(target.dir, 'pkg-1/file-1.txt'), 'utf8')).toBe('edited\n');
    expect(await readFile(join(target.dir, `pkg-${(files - 1) % 7}/file-${files - 1}.txt`), 'utf8')).toBe(`content of file ${files - 1}\n`.repeat((files - 1) % 5 + 1));
    expect((await stat(join(target.dir, 'big.bin'))).size).toBe(3 * 1024 * 1024);
    expect(await readlink(join(target.dir, 'link'))).toBe('pkg-0/file-0.txt');
    return { snapshot, resnapshot, restore: target.sandbox.execs.length };
  }

  it('snapshots and restores in the same few execs for 5 files as for 200', async () => {
    const few = await execsOfSnapshotAndRestore(5);
    const many = await execsOfSnapshotAndRestore(200);

    expect(few).toEqual({ snapshot: 2, resnapshot: 2, restore: 1 });
    expect(many).toEqual(few);
  });

  it('restores modes without setuid, read-only directories with their contents, and replaces a planted symlink instead of writing through it', async () => {
    const source = await volumeAt('source');
    await mkdir(join(source.dir, 'ro/inner'), { recursive: true });
    await writeFile(join(source.dir, 'ro/inner/file.txt'), 'inside a read-only directory');
    await writeFile(join(source.dir, 'tool'), 'binary');
    await chmod(join(source.dir, 'tool'), 0o4755);
    await chmod(join(source.dir, 'ro'), 0o555);
    await engine.snapshot(source.volume, location);
    await chmod(join(source.dir, 'ro'), 0o755);
    const target = await volumeAt('target');
    const outside = join(base, 'outside');
    await mkdir(outside);
    await symlink(outside, join(target.dir, 'ro'));

    await engine.restore(target.volume, location);

    expect(await readFile(join(target.dir, 'ro/inner/file.txt'), 'utf8')).toBe('inside a read-only directory');
    expect((await lstat(join(target.dir, 'ro'))).isDirectory()).toBe(true);
    expect((await stat(join(target.dir, 'ro'))).mode & 0o7777).toBe(0o555);
    expect((await stat(join(target.dir, 'tool'))).mode & 0o7777).toBe(0o755);
    expect(await readdir(outside)).toEqual([]);
    await chmod(join(target.dir, 'ro'), 0o755);
  });

  it('never writes content that does not match the manifest, and restores the rest', async () => {
    const source = await volumeAt('source');
    await writeFile(join(source.dir, 'a.txt'), 'alpha');
    await writeFile(join(source.dir, 'b.txt'), 'bravo');
    const { version } = await engine.snapshot(source.volume, location);
    await writeFile(join(storeRoot, BUCKET, `workspaces/acc-1/${version}/a.txt`), 'ALPHA');
    const target = await volumeAt('target');
    await writeFile(join(target.dir, 'a.txt'), 'local edit');

    const failure = (await engine.restore(target.volume, location).catch((error: unknown) => error)) as RestoreFailedError;

    expect(failure).toBeInstanceOf(RestoreFailedError);
    expect(failure.failures).toEqual([{ path: 'a.txt', error: expect.stringContaining('content does not match') }]);
    expect(await readFile(join(target.dir, 'a.txt'), 'utf8')).toBe('local edit');
    expect(await readFile(join(target.dir, 'b.txt'), 'utf8')).toBe('bravo');
    expect(target.sandbox.execs).toHaveLength(1);
  });

  it('names the entries tar could not write and restores the others', async () => {
    const source = await volumeAt('source');
    await writeFile(join(source.dir, 'a.txt'), 'alpha');
    await writeFile(join(source.dir, 'b.txt'), 'bravo');
    await engine.snapshot(source.volume, location);
    const target = await volumeAt('target');
    await mkdir(join(target.dir, 'a.txt/occupied'), { recursive: true });

    const failure = (await engine.restore(target.volume, location).catch((error: unknown) => error)) as RestoreFailedError;

    expect(failure).toBeInstanceOf(RestoreFailedError);
    expect(failure.failures.map((entry) => entry.path)).toEqual(['a.txt']);
    expect(await readFile(join(target.dir, 'b.txt'), 'utf8')).toBe('bravo');
  });

  it('fails the snapshot, committing nothing, when the sandbox answers the file read with an entry outside the volume', async () => {
    const dir = join(base, 'hostile');
    await mkdir(dir);
    await writeFile(join(dir, 'a.txt'), 'alpha');
    const planted = (): ModalProcessLike => ({
      stdin: new WritableStream<Uint8Array>(),
      stdout: new Blob([Buffer.from('ready\n'), hostileTar()]).stream(),
      stderr: new Blob([]).stream(),
      wait: async () => 0,
    });
    const sandbox = localSandbox({ onExec: (argv, run) => (argv[3] === 'volume-readFiles' ? planted() : run()) });

    const failure = (await engine.snapshot(modalVolumeOnLocalDisk(dir, base, sandbox), location).catch((error: unknown) => error)) as SnapshotFailedError;

    expect(failure).toBeInstanceOf(SnapshotFailedError);
    expect(failure.stats.errors).toEqual([{ path: 'a.txt', error: expect.stringContaining('outside the volume') }]);
    expect(await engine.listVersions(location)).toEqual([]);
  });
});

/** A ustar archive with one file named ../a.txt. */
function hostileTar(): Buffer {
  const header = Buffer.alloc(512);
  header.write('../a.txt', 0, 'latin1');
  header.write('0000644\0', 100, 'latin1');
  header.write('0000000\0', 108, 'latin1');
  header.write('0000000\0', 116, 'latin1');
  header.write('00000000005\0', 124, 'latin1');
  header.write('00000000000\0', 136, 'latin1');
  header.write('0', 156, 'latin1');
  header.write('ustar\0' + '00', 257, 'latin1');
  header.fill(' ', 148, 156);
  const sum = header.reduce((total, byte) => total + byte, 0);
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const body = Buffer.alloc(512);
  body.write('alpha');
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}
