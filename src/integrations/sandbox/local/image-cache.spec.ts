import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDockerfileCommands } from '../dockerfile';
import { findExecutable } from './host-tools';
import { ImageCache, imageCacheKey } from './image-cache';

describe('imageCacheKey', () => {
  const steps = parseDockerfileCommands(['ENV A=1', 'RUN make']);

  it('is the same for the same account, base and lines, and differs when any of them changes', () => {
    expect(imageCacheKey('a1', 'host', steps)).toBe(imageCacheKey('a1', 'host', parseDockerfileCommands(['ENV A=1', 'RUN make'])));
    expect(imageCacheKey('a1', 'host', steps)).not.toBe(imageCacheKey('a2', 'host', steps));
    expect(imageCacheKey('a1', 'host', steps)).not.toBe(imageCacheKey('a1', 'debian', steps));
    expect(imageCacheKey('a1', 'host', steps)).not.toBe(imageCacheKey('a1', 'host', parseDockerfileCommands(['ENV A=2', 'RUN make'])));
  });
});

describe('ImageCache', () => {
  let dir: string;
  let cache: ImageCache;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'image-cache-'));
    cache = new ImageCache(join(dir, 'cache'), findExecutable('cp')!);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function upperDir(layer: string, file: string): string {
    mkdirSync(join(dir, 'upper', layer, 'local'), { recursive: true });
    writeFileSync(join(dir, 'upper', layer, 'local', file), layer);
    return join(dir, 'upper', layer);
  }

  it('finds nothing before a store, then the copied layers by name', async () => {
    expect(await cache.find('k1')).toBeNull();

    await cache.store('k1', [upperDir('usr', 'tool'), upperDir('root', 'marker')]);

    const found = await cache.find('k1');
    expect(found).toBe(join(dir, 'cache', 'k1'));
    expect(readFileSync(join(found!, 'usr', 'local', 'tool'), 'utf8')).toBe('usr');
    expect(readFileSync(join(found!, 'root', 'local', 'marker'), 'utf8')).toBe('root');
  });

  it('keeps the first of two stores of the same key without failing or leaving partial copies', async () => {
    const upper = upperDir('usr', 'tool');

    await Promise.all([cache.store('k1', [upper]), cache.store('k1', [upper])]);

    expect(readdirSync(join(dir, 'cache'))).toEqual(['k1']);
  });
});
