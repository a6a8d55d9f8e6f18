import { Logger } from '@nestjs/common';
import type { FileInfo } from 'modal';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  PathOutsideVolumeError,
  ProviderConflictError,
  ProviderInvalidError,
  ProviderTimeoutError,
  VolumePathNotFoundError,
} from '../sandbox-provider.errors';
import { withDeadline, type ModalCall } from './modal-errors';
import { ModalVolumeAccess } from './modal-volume-access';
import { fakeProcess, fakeSandbox, never } from './testing/fake-modal';
import { localSandbox } from '../../../testing/local-modal-sandbox';

const logger = new Logger('test');
const call: ModalCall = (step, what, work, seconds = 5) => withDeadline(step, what, seconds, logger, work);

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

describe('ModalVolumeAccess, SDK calls', () => {
  it.each(['../etc/passwd', 'a/../../b', '/etc/passwd', 'a\0b'])('refuses %j before any SDK call', async (path) => {
    const volume = new ModalVolumeAccess(fakeSandbox('sb-1'), '/workspace', call, 5);
    await expect(volume.openRead(path)).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.stat(path)).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.write(path, Readable.from([Buffer.from('x')]))).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.remove(path)).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.mkdir(path)).rejects.toBeInstanceOf(PathOutsideVolumeError);
  });

  it('streams a read through one exec of the read step, in binary mode', async () => {
    const sandbox = fakeSandbox('sb-1');
    sandbox.exec.mockResolvedValueOnce(fakeProcess({ stdout: [Buffer.from('hel'), Buffer.from('lo')] }));
    const volume = new ModalVolumeAccess(sandbox, '/workspace', call, 5);

    expect(await text(await volume.openRead('./docs//a.txt'))).toBe('hello');
    expect(sandbox.exec).toHaveBeenCalledWith(['sh', '-c', expect.stringContaining('exec cat -- "$p"'), 'volume-read', '/workspace', 'docs/a.txt'], { mode: 'binary' });
  });

  it('lists and stats in one exec each, from GNU find records', async () => {
    const sandbox = fakeSandbox('sb-1');
    const record = (path: string) => Buffer.from(['f', '3', '640', '1700000000.25', path, ''].join('\0') + '\0');
    sandbox.exec.mockResolvedValueOnce(fakeProcess({ stdout: [record('/workspace/d/a.txt')] }));
    sandbox.exec.mockResolvedValueOnce(fakeProcess({ stdout: [record('./b.txt').subarray(0, 7), Buffer.concat([record('./b.txt').subarray(7), record('./a.txt')])] }));
    const volume = new ModalVolumeAccess(sandbox, '/workspace', call, 5);
    const entry = (path: string) => ({ name: path.slice(2), path, type: 'file', size: 3, mode: 0o640, modifiedAt: new Date(1_700_000_000_000) });

    await expect(volume.stat('d/a.txt')).resolves.toEqual(entry('d/a.txt'));
    await expect(volume.list('d')).resolves.toEqual([entry('d/a.txt'), entry('d/b.txt')]);
    expect(sandbox.exec).toHaveBeenCalledTimes(2);
    expect(sandbox.exec.mock.calls.map(([argv]) => argv.slice(3))).toEqual([
      ['volume-statEntry', '/workspace', 'd/a.txt'],
      ['volume-listEntries', '/workspace', 'd'],
    ]);
  });

  it.each([
    ['../x', 'a path that climbs out'],
    ['./a/../../x', 'a path with ..'],
    ['/etc/passwd', 'an absolute path'],
  ])('refuses a listing naming %j (%s)', async (path) => {
    const sandbox = fakeSandbox('sb-1');
    sandbox.exec.mockResolvedValueOnce(fakeProcess({ stdout: [Buffer.from(['f', '3', '640', '1', path, ''].join('\0') + '\0')] }));
    const volume = new ModalVolumeAccess(sandbox, '/workspace', call, 5);

    await expect(volume.list('')).rejects.toBeInstanceOf(ProviderInvalidError);
  });

  it('falls back to sandbox.filesystem, once and for all, when the image lacks GNU find', async () => {
    const sandbox = fakeSandbox('sb-1');
    const info: FileInfo = { name: 'a.txt', path: '/workspace/d/a.txt', type: 'file', size: 3, mode: 0o100640, permissions: '-rw-r-----', owner: 'root', group: 'root', modifiedTime: 1_700_000_000, symlinkTarget: null };
    sandbox.exec
      .mockResolvedValueOnce(fakeProcess({ exitCode: 127 }))
      .mockResolvedValueOnce(fakeProcess())
      .mockResolvedValueOnce(fakeProcess());
    sandbox.filesystem.stat.mockResolvedValueOnce(info);
    sandbox.filesystem.listFiles.mockResolvedValueOnce([info]);
    const volume = new ModalVolumeAccess(sandbox, '/workspace', call, 5);
    const entry = { name: 'a.txt', path: 'd/a.txt', type: 'file', size: 3, mode: 0o640, modifiedAt: new Date(1_700_000_000_000) };

    await expect(volume.stat('d/a.txt')).resolves.toEqual(entry);
    await expect(volume.list('d')).resolves.toEqual([entry]);
    await expect(volume.bulk.inventory()).resolves.toBeNull();
    expect(sandbox.filesystem.stat).toHaveBeenCalledWith('/workspace/d/a.txt');
    expect(sandbox.filesystem.listFiles).toHaveBeenCalledWith('/workspace/d');
    expect(sandbox.exec).toHaveBeenCalledTimes(3);
  });

  it('gives an exec that never answers a deadline', async () => {
    jest.useFakeTimers();
    try {
      const sandbox = fakeSandbox('sb-1');
      sandbox.exec.mockReturnValueOnce(never());
      const volume = new ModalVolumeAccess(sandbox, '/workspace', call, 5);
      const outcome = volume.stat('');
      const rejected = expect(outcome).rejects.toBeInstanceOf(ProviderTimeoutError);
      await jest.advanceTimersByTimeAsync(5000);
      await rejected;
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('ModalVolumeAccess, behaviour against a real shell and disk', () => {
  let base: string;
  let root: string;
  let outside: string;
  let volume: ModalVolumeAccess;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'modal-volume-'));
    root = join(base, 'workspace');
    outside = join(base, 'outside');
    await mkdir(root);
    await mkdir(outside);
    await writeFile(join(outside, 'secret.txt'), 'not yours');
    volume = new ModalVolumeAccess(localSandbox(), root, call, 5, base);
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  it('writes atomically through an upload, creating parents, and reads back the same bytes', async () => {
    const content = Buffer.concat([Buffer.from('héllo 🎉\n'), Buffer.alloc(300_000, 7)]);
    const written = await volume.write('src/deep/file.bin', Readable.from([content.subarray(0, 5), content.subarray(5)]), 0o600);

    expect(written).toEqual({ bytes: content.length });
    expect(await readFile(join(root, 'src/deep/file.bin'))).toEqual(content);
    expect((await lstat(join(root, 'src/deep/file.bin'))).mode & 0o777).toBe(0o600);
    const read: Buffer[] = [];
    for await (const chunk of await volume.openRead('src/deep/file.bin')) read.push(chunk as Buffer);
    expect(Buffer.concat(read)).toEqual(content);
    expect((await readdir(root)).filter((name) => name.startsWith('.upload-'))).toEqual([]);
    expect((await readdir(base)).filter((name) => name.startsWith('modal-upload-'))).toEqual([]);
  });

  it('keeps the mode of a file it overwrites and defaults new files to 644', async () => {
    await writeFile(join(root, 'run.sh'), 'old');
    await volume.write('run.sh', Readable.from([Buffer.from('new')]));
    await volume.write('notes.txt', Readable.from([Buffer.from('n')]));
    await rm(join(root, 'run.sh'));
    await writeFile(join(root, 'run.sh'), 'old');
    await chmod(join(root, 'run.sh'), 0o750); // whatever the umask of the worker
    await volume.write('run.sh', Readable.from([Buffer.from('newer')]));

    expect((await lstat(join(root, 'run.sh'))).mode & 0o777).toBe(0o750);
    expect((await lstat(join(root, 'notes.txt'))).mode & 0o777).toBe(0o644);
    expect(await readFile(join(root, 'run.sh'), 'utf8')).toBe('newer');
  });

  it('reads an empty file, and reports a missing one or a directory', async () => {
    await writeFile(join(root, 'empty'), '');
    await mkdir(join(root, 'dir'));
    expect(await text(await volume.openRead('empty'))).toBe('');
    await expect(volume.openRead('missing.txt')).rejects.toBeInstanceOf(VolumePathNotFoundError);
    await expect(volume.openRead('dir')).rejects.toBeInstanceOf(ProviderInvalidError);
    await expect(volume.openRead('')).rejects.toBeInstanceOf(ProviderInvalidError);
    await expect(volume.write('dir', Readable.from([Buffer.from('x')]))).rejects.toBeInstanceOf(ProviderConflictError);
  });

  it('follows a symlink that stays inside the volume and refuses one that leaves it', async () => {
    await writeFile(join(root, 'real.txt'), 'inside');
    await symlink('real.txt', join(root, 'alias.txt'));
    await symlink(join(outside, 'secret.txt'), join(root, 'escape.txt'));
    await symlink(outside, join(root, 'elsewhere'));

    expect(await text(await volume.openRead('alias.txt'))).toBe('inside');
    await expect(volume.openRead('escape.txt')).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.openRead('elsewhere/secret.txt')).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.write('elsewhere/planted.txt', Readable.from([Buffer.from('x')]))).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.list('elsewhere')).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.mkdir('elsewhere/new')).rejects.toBeInstanceOf(PathOutsideVolumeError);
    await expect(volume.remove('elsewhere/secret.txt')).rejects.toBeInstanceOf(PathOutsideVolumeError);
    expect(await readdir(outside)).toEqual(['secret.txt']);
    expect((await readdir(root)).filter((name) => name.startsWith('.upload-'))).toEqual([]);
  });

  it('stats, lists and walks without following symlinks', async () => {
    await mkdir(join(root, 'a/b'), { recursive: true });
    await writeFile(join(root, 'a/b/c.txt'), 'abc');
    await volume.symlink('a/link', '../../outside');

    expect(await volume.stat('a/link')).toMatchObject({ path: 'a/link', type: 'symlink', target: '../../outside' });
    expect(await volume.stat('a/nothing')).toBeNull();
    expect(await volume.stat('')).toMatchObject({ path: '', type: 'directory' });
    expect((await volume.list('a')).map((entry) => [entry.path, entry.type])).toEqual([
      ['a/b', 'directory'],
      ['a/link', 'symlink'],
    ]);
    const walked: string[] = [];
    for await (const entry of volume.walk()) walked.push(`${entry.type}:${entry.path}`);
    expect(walked).toEqual(['directory:a', 'directory:a/b', 'file:a/b/c.txt', 'symlink:a/link']);
  });

  it('makes directories with a mode, replaces symlinks and removes trees', async () => {
    await volume.mkdir('x/y', 0o700);
    expect((await lstat(join(root, 'x/y'))).mode & 0o777).toBe(0o700);
    await volume.symlink('x/l', 'y');
    await volume.symlink('x/l', 'z');
    expect(await readlink(join(root, 'x/l'))).toBe('z');
    await volume.remove('x');
    expect(await readdir(root)).toEqual([]);
    await expect(volume.remove('x')).rejects.toBeInstanceOf(VolumePathNotFoundError);
    await expect(volume.remove('')).rejects.toBeInstanceOf(ProviderInvalidError);
    await expect(volume.list('missing')).rejects.toBeInstanceOf(VolumePathNotFoundError);
  });
});
