import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { PathOutsideVolumeError, VolumePathNotFoundError } from '../sandbox-provider.errors';
import { LocalVolumeAccess } from './local-volume-access';

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

function failingStream(afterText: string): Readable {
  return new Readable({
    read() {
      this.push(afterText);
      this.destroy(new Error('source broke'));
    },
  });
}

describe('LocalVolumeAccess', () => {
  let base: string;
  let root: string;
  let outside: string;
  let volume: LocalVolumeAccess;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'volume-spec-'));
    root = join(base, 'volume');
    outside = join(base, 'outside');
    await mkdir(root);
    await mkdir(outside);
    await writeFile(join(outside, 'secret.txt'), 'outside secret');
    volume = new LocalVolumeAccess(root);
  });

  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  describe('writing and reading', () => {
    it('writes a file with its parents and mode, and reads it back', async () => {
      const result = await volume.write('a/b/c.txt', Readable.from(['hello ', 'world']), 0o600);

      expect(result).toEqual({ bytes: 11 });
      expect(await readFile(join(root, 'a/b/c.txt'), 'utf8')).toBe('hello world');
      expect((await stat(join(root, 'a/b/c.txt'))).mode & 0o777).toBe(0o600);
      expect(await readAll(await volume.openRead('a/b/c.txt'))).toBe('hello world');
    });

    it('keeps the previous content and leaves no temporary file when the source fails', async () => {
      await volume.write('notes.txt', Readable.from(['original']));

      await expect(volume.write('notes.txt', failingStream('partial'))).rejects.toThrow();

      expect(await readFile(join(root, 'notes.txt'), 'utf8')).toBe('original');
      expect(await readdir(root)).toEqual(['notes.txt']);
    });

    it('keeps the mode of a file it replaces when no mode is given', async () => {
      await volume.write('run.sh', Readable.from(['#!/bin/sh']), 0o755);
      await volume.write('run.sh', Readable.from(['#!/bin/sh\necho']));

      expect((await stat(join(root, 'run.sh'))).mode & 0o777).toBe(0o755);
    });

    it('creates directories with a mode and reports missing paths', async () => {
      await volume.mkdir('x/y', 0o700);

      expect((await stat(join(root, 'x/y'))).mode & 0o777).toBe(0o700);
      await expect(volume.openRead('nope.txt')).rejects.toBeInstanceOf(VolumePathNotFoundError);
      await expect(volume.list('nope')).rejects.toBeInstanceOf(VolumePathNotFoundError);
      await expect(volume.remove('nope')).rejects.toBeInstanceOf(VolumePathNotFoundError);
      expect(await volume.stat('nope/deeper')).toBeNull();
    });
  });

  describe('confinement', () => {
    it.each(['../outside/secret.txt', 'a/../../outside/secret.txt', '/etc/passwd', 'a\0b'])('refuses %j', async (path) => {
      await expect(volume.openRead(path)).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await expect(volume.write(path, Readable.from(['x']))).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await expect(volume.stat(path)).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await expect(volume.remove(path)).rejects.toBeInstanceOf(PathOutsideVolumeError);
    });

    it('does not read, list or write through a symlink to a directory outside', async () => {
      await symlink(outside, join(root, 'escape'));

      await expect(volume.openRead('escape/secret.txt')).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await expect(volume.list('escape')).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await expect(volume.write('escape/planted.txt', Readable.from(['x']))).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await expect(volume.mkdir('escape/planted')).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await expect(volume.symlink('escape/link', '/')).rejects.toBeInstanceOf(PathOutsideVolumeError);
      expect(await readdir(outside)).toEqual(['secret.txt']);
    });

    it('does not read a symlink to a file outside, and replaces the link itself on write', async () => {
      await symlink(join(outside, 'secret.txt'), join(root, 'secret-link'));

      await expect(volume.openRead('secret-link')).rejects.toBeInstanceOf(PathOutsideVolumeError);
      await volume.write('secret-link', Readable.from(['mine']));

      expect(await readFile(join(outside, 'secret.txt'), 'utf8')).toBe('outside secret');
      expect(await readFile(join(root, 'secret-link'), 'utf8')).toBe('mine');
    });

    it('follows a symlink that stays inside the volume for reading', async () => {
      await volume.write('real/file.txt', Readable.from(['inside']));
      await symlink('real', join(root, 'alias'));

      expect(await readAll(await volume.openRead('alias/file.txt'))).toBe('inside');
    });

    it('removes a symlink to an outside directory without touching what it points at', async () => {
      await volume.mkdir('tree');
      await symlink(outside, join(root, 'tree/escape'));

      await volume.remove('tree');

      expect(await readdir(root)).toEqual([]);
      expect(await readdir(outside)).toEqual(['secret.txt']);
    });

    it('refuses a volume whose symlinked parent leads outside even for stat', async () => {
      await symlink(outside, join(root, 'escape'));

      await expect(volume.stat('escape/secret.txt')).rejects.toBeInstanceOf(PathOutsideVolumeError);
    });
  });

  describe('listing', () => {
    it('walks depth first, reports symlinks with their target without following them, and special files as other', async () => {
      await volume.write('b/inner/deep.txt', Readable.from(['deep']), 0o640);
      await volume.write('a.txt', Readable.from(['a']));
      await volume.mkdir('empty');
      await symlink(outside, join(root, 'b/escape'));
      execFileSync('mkfifo', [join(root, 'pipe')]);

      const entries = [];
      for await (const entry of volume.walk()) entries.push(entry);

      expect(entries.map((entry) => [entry.path, entry.type])).toEqual([
        ['a.txt', 'file'],
        ['b', 'directory'],
        ['b/escape', 'symlink'],
        ['b/inner', 'directory'],
        ['b/inner/deep.txt', 'file'],
        ['empty', 'directory'],
        ['pipe', 'other'],
      ]);
      expect(entries.find((entry) => entry.path === 'b/escape')?.target).toBe(outside);
      expect(entries.find((entry) => entry.path === 'b/inner/deep.txt')).toMatchObject({ name: 'deep.txt', size: 4, mode: 0o640 });
    });

    it('lists one directory and stats a symlink as a symlink', async () => {
      await volume.write('dir/one.txt', Readable.from(['1']));
      await volume.symlink('dir/two', 'one.txt');

      expect((await volume.list('dir')).map((entry) => entry.name)).toEqual(['one.txt', 'two']);
      expect(await volume.stat('dir/two')).toMatchObject({ type: 'symlink', target: 'one.txt' });
    });

    it('walks a subdirectory with paths relative to the volume root', async () => {
      await volume.write('sub/x/y.txt', Readable.from(['y']));

      const paths = [];
      for await (const entry of volume.walk('sub')) paths.push(entry.path);

      expect(paths).toEqual(['sub/x', 'sub/x/y.txt']);
    });
  });
});
