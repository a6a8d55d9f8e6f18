import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageInUseError, ImageNotCachedError } from '../sandbox-provider.errors';
import { RegistryImageCache, registryEntryName, treeSize } from './registry-image-cache';

const digest = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('RegistryImageCache', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'registry-image-cache-'));
    for (const name of ['images', 'tags', 'tmp']) mkdirSync(join(dir, name));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** An entry as RegistryImageStore leaves it: rootfs with `bytes` bytes of files, image.json, optionally last-used and a tag. */
  function entry(n: number, bytes: number, { lastUsed, recordSize = true }: { lastUsed?: string; recordSize?: boolean } = {}): string {
    const path = join(dir, 'images', registryEntryName(digest(n)));
    mkdirSync(join(path, 'rootfs', 'etc'), { recursive: true });
    writeFileSync(join(path, 'rootfs', 'etc', 'data'), Buffer.alloc(bytes));
    writeFileSync(join(path, 'image.json'), JSON.stringify({ reference: `127.0.0.1:5000/img${n}:1`, digest: digest(n), pulledAt: '2026-01-01T00:00:00.000Z', ...(recordSize ? { sizeBytes: bytes } : {}) }));
    if (lastUsed) writeFileSync(join(path, 'last-used'), lastUsed);
    writeFileSync(join(dir, 'tags', `tag${n}.json`), JSON.stringify({ reference: `img${n}:1`, digest: digest(n) }));
    return path;
  }

  it('lists entries most recently used first, with size, pull time and last use (pull time when never used)', async () => {
    entry(1, 100, { lastUsed: '2026-02-01T00:00:00.000Z' });
    entry(2, 50, { recordSize: false });
    entry(3, 10, { lastUsed: '2026-03-01T00:00:00.000Z' });
    mkdirSync(join(dir, 'images', 'not-an-entry'));

    const images = await new RegistryImageCache(dir).list();

    expect(images.map((image) => [image.digest, image.sizeBytes, image.lastUsedAt.toISOString()])).toEqual([
      [digest(3), 10, '2026-03-01T00:00:00.000Z'],
      [digest(1), 100, '2026-02-01T00:00:00.000Z'],
      [digest(2), 50, '2026-01-01T00:00:00.000Z'],
    ]);
    expect(images[0]).toMatchObject({ reference: '127.0.0.1:5000/img3:1', pulledAt: new Date('2026-01-01T00:00:00.000Z') });
  });

  it('touch records the last use', async () => {
    entry(1, 1);
    const cache = new RegistryImageCache(dir);
    await cache.touch(digest(1), new Date('2026-05-05T00:00:00.000Z'));
    expect((await cache.list())[0].lastUsedAt.toISOString()).toBe('2026-05-05T00:00:00.000Z');
  });

  it('removes an entry and the tags naming it; refuses one absent (404) or in use (409)', async () => {
    const path = entry(1, 1);
    entry(2, 1);
    const cache = new RegistryImageCache(dir);

    await expect(cache.remove(digest(1), (candidate) => candidate === digest(1))).rejects.toThrow(ImageInUseError);
    expect(existsSync(path)).toBe(true);
    await cache.remove(digest(1), () => false);
    await expect(cache.remove(digest(1), () => false)).rejects.toThrow(ImageNotCachedError);

    expect(existsSync(path)).toBe(false);
    expect(readdirSync(join(dir, 'tags'))).toEqual(['tag2.json']);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    expect((await cache.list()).map((image) => image.digest)).toEqual([digest(2)]);
  });

  it('prunes least recently used entries not in use until under the cap', async () => {
    entry(1, 100, { lastUsed: '2026-01-02T00:00:00.000Z' }); // oldest, in use
    entry(2, 100, { lastUsed: '2026-01-03T00:00:00.000Z' }); // next oldest: goes
    entry(3, 100, { lastUsed: '2026-01-04T00:00:00.000Z' }); // goes too: 300 is still over 250
    entry(4, 100, { lastUsed: '2026-01-05T00:00:00.000Z' }); // newest: stays
    const cache = new RegistryImageCache(dir);

    const removed = await cache.prune(250, (candidate) => candidate === digest(1));

    expect(removed).toEqual([digest(2), digest(3)]);
    expect((await cache.list()).map((image) => image.digest)).toEqual([digest(4), digest(1)]);
  });

  it('prunes nothing under the cap, and never an entry in use even when over it', async () => {
    entry(1, 100);
    const cache = new RegistryImageCache(dir);
    expect(await cache.prune(1000, () => false)).toEqual([]);
    expect(await cache.prune(0, () => true)).toEqual([]);
    expect(await cache.list()).toHaveLength(1);
  });

  it('treeSize counts a hard-linked file once and does not follow symlinks', async () => {
    const root = join(dir, 'tree');
    mkdirSync(join(root, 'a'), { recursive: true });
    writeFileSync(join(root, 'a', 'file'), Buffer.alloc(1000));
    linkSync(join(root, 'a', 'file'), join(root, 'link'));
    writeFileSync(join(root, 'small'), 'abc');
    expect(await treeSize(root)).toBe(1003);
  });
});
