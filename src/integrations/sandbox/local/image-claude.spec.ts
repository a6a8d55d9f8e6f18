import { lstatSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { prepareImageClaude } from './image-claude';

describe('prepareImageClaude (x64 host with glibc)', () => {
  let root: string;
  let baseDir: string;
  let claudeBinMusl: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'image-claude-spec-'));
    baseDir = join(root, 'rootfs');
    mkdirSync(baseDir);
    claudeBinMusl = join(root, 'claude-musl');
    writeFileSync(claudeBinMusl, '#!/bin/sh\n', { mode: 0o755 });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const image = (files: string[], links: Array<[string, string]> = []) => {
    const dir = join(root, `image-${readdirSync(root).length}`);
    for (const file of files) {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file), '');
    }
    for (const [target, path] of links) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      symlinkSync(target, join(dir, path));
    }
    mkdirSync(dir, { recursive: true });
    return dir;
  };

  it('adds nothing to a glibc image: the additions hold the host build', async () => {
    await expect(prepareImageClaude([image(['lib64/ld-linux-x86-64.so.2'])], { baseDir, claudeBinMusl })).resolves.toEqual({ libc: 'glibc', lowerDirs: [] });
  });

  it('puts the musl build at the CLI path over a musl image, as one layer shared by later sandboxes', async () => {
    const alpine = image(['lib/ld-musl-x86_64.so.1']);

    const first = await prepareImageClaude([alpine], { baseDir, claudeBinMusl });
    const second = await prepareImageClaude([alpine], { baseDir, claudeBinMusl });

    expect(first).toEqual({ libc: 'musl', lowerDirs: [expect.stringMatching(/\/rootfs\/claude-musl-[0-9a-f]{16}$/)] });
    expect(second).toEqual(first);
    expect(statSync(join(first.lowerDirs[0], 'opt/claude-code/bin/claude')).ino).toBe(statSync(claudeBinMusl).ino);
  });

  it('says why Claude will not run when the musl build is missing', async () => {
    rmSync(claudeBinMusl);

    await expect(prepareImageClaude([image(['lib/ld-musl-x86_64.so.1'])], { baseDir, claudeBinMusl })).resolves.toEqual({
      libc: 'musl',
      lowerDirs: [],
      problem: expect.stringContaining(`musl build is not an executable at ${claudeBinMusl}`),
    });
  });

  it('gives an image with no libc the host glibc loader and libraries, where the image’s symlinks lead', async () => {
    const busybox = image(['bin/busybox', 'usr/lib/.keep'], [['usr/lib', 'lib']]);

    const claude = await prepareImageClaude([busybox], { baseDir, claudeBinMusl });

    expect(claude).toEqual({ libc: 'none', lowerDirs: [expect.stringMatching(/\/rootfs\/glibc-loader-[0-9a-f]{16}$/)] });
    const layer = claude.lowerDirs[0];
    const hostLibDir = dirname(realpathSync('/lib64/ld-linux-x86-64.so.2'));
    const libDirInImage = hostLibDir.replace(/^\/lib\//, '/usr/lib/');
    expect(statSync(join(layer, 'lib64/ld-linux-x86-64.so.2')).size).toBe(statSync('/lib64/ld-linux-x86-64.so.2').size);
    for (const name of ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1']) {
      expect(lstatSync(join(layer, libDirInImage, name)).isFile()).toBe(true);
    }
    // The image's /lib stays its symlink: the layer has no /lib of its own to hide it.
    expect(readdirSync(layer).sort()).toEqual(libDirInImage.startsWith('/usr/') ? ['lib64', 'usr'] : ['lib64']);
  });
});
