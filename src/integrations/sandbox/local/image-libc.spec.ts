import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { detectImageLibc, libcLoaders, resolveInImage } from './image-libc';

describe('image libc detection', () => {
  let root: string;
  const loaders = libcLoaders('x64');

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'image-libc-spec-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const layer = (name: string) => join(root, name);
  const file = (path: string) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '');
  };
  const link = (target: string, path: string) => {
    mkdirSync(dirname(path), { recursive: true });
    symlinkSync(target, path);
  };

  it('finds musl by its loader, glibc by its loader through merged-usr symlinks, and neither in a static image', async () => {
    file(join(layer('alpine'), 'lib/ld-musl-x86_64.so.1'));
    link('usr/lib64', join(layer('debian'), 'lib64'));
    file(join(layer('debian'), 'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'));
    link('/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', join(layer('debian'), 'usr/lib64/ld-linux-x86-64.so.2'));
    file(join(layer('busybox'), 'bin/busybox'));

    await expect(detectImageLibc([layer('alpine')], loaders)).resolves.toBe('musl');
    await expect(detectImageLibc([layer('debian')], loaders)).resolves.toBe('glibc');
    await expect(detectImageLibc([layer('busybox')], loaders)).resolves.toBe('none');
  });

  it('prefers musl when an image has both loaders (alpine with gcompat)', async () => {
    file(join(layer('alpine'), 'lib/ld-musl-x86_64.so.1'));
    file(join(layer('alpine'), 'lib64/ld-linux-x86-64.so.2'));

    await expect(detectImageLibc([layer('alpine')], loaders)).resolves.toBe('musl');
  });

  it('follows absolute symlinks inside the image, never into the host (whose loader exists)', async () => {
    link('/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', join(layer('image'), 'lib64/ld-linux-x86-64.so.2'));
    link('../../../../../lib/x86_64-linux-gnu', join(layer('escape'), 'lib64'));

    await expect(detectImageLibc([layer('image')], loaders)).resolves.toBe('none');
    await expect(resolveInImage([layer('image')], '/lib64/ld-linux-x86-64.so.2')).resolves.toEqual({ path: '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' });
    await expect(detectImageLibc([layer('escape')], loaders)).resolves.toBe('none');
    await expect(resolveInImage([layer('escape')], '/lib64/ld-linux-x86-64.so.2')).resolves.toEqual({ path: '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' });
  });

  it('sees the image as overlayfs stacks its layers: the highest entry wins, a whiteout hides the ones below', async () => {
    file(join(layer('base'), 'lib/ld-musl-x86_64.so.1'));
    mkdirSync(join(layer('upper'), 'lib'), { recursive: true });
    execFileSync('mknod', [join(layer('upper'), 'lib/ld-musl-x86_64.so.1'), 'c', '0', '0']);
    link('usr/lib', join(layer('relinked'), 'lib'));
    file(join(layer('relinked'), 'usr/lib/ld-musl-x86_64.so.1'));

    await expect(detectImageLibc([layer('base')], loaders)).resolves.toBe('musl');
    await expect(detectImageLibc([layer('upper'), layer('base')], loaders)).resolves.toBe('none');
    await expect(resolveInImage([layer('relinked'), layer('base')], '/lib/ld-musl-x86_64.so.1')).resolves.toMatchObject({ path: '/usr/lib/ld-musl-x86_64.so.1', stats: expect.anything() });
  });

  it('gives up on a loop of symlinks and on a file used as a directory', async () => {
    link('lib64', join(layer('loop'), 'lib64'));
    file(join(layer('file'), 'lib64'));

    await expect(resolveInImage([layer('loop')], '/lib64/ld-linux-x86-64.so.2')).resolves.toBeNull();
    await expect(resolveInImage([layer('file')], '/lib64/ld-linux-x86-64.so.2')).resolves.toBeNull();
    await expect(detectImageLibc([layer('loop')], loaders)).resolves.toBe('none');
  });

  it('appends what is missing to where the image leads, for placing files there', async () => {
    link('usr/lib', join(layer('merged'), 'lib'));
    mkdirSync(join(layer('merged'), 'usr/lib'), { recursive: true });

    await expect(resolveInImage([layer('merged')], '/lib/x86_64-linux-gnu')).resolves.toEqual({ path: '/usr/lib/x86_64-linux-gnu' });
    await expect(resolveInImage([layer('merged')], '/lib')).resolves.toMatchObject({ path: '/usr/lib', stats: expect.anything() });
  });
});
