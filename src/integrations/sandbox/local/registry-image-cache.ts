import { lstat, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CachedImage } from '../sandbox-provider';
import { ImageInUseError, ImageNotCachedError } from '../sandbox-provider.errors';

/** image.json of an entry, as far as housekeeping reads it. */
interface EntryRecord {
  reference: string;
  digest: string;
  pulledAt: string;
  sizeBytes?: number;
}

const ENTRY_NAME = /^v(\d+)-sha256-([0-9a-f]{64})$/;
const LAST_USED = 'last-used';

/** Says whether an image is used by a sandbox (or about to be); such an image is never removed. */
export type InUse = (digest: string) => boolean | Promise<boolean>;

/**
 * Housekeeping of the registry image store's layout (see RegistryImageStore): listing with size and
 * last use, removal of one entry, and pruning least-recently-used unused entries under a size cap.
 * The caller serialises removal and pruning against pulls.
 */
export class RegistryImageCache {
  constructor(private readonly dir: string) {}

  /** Every complete entry, most recently used first. */
  async list(): Promise<CachedImage[]> {
    const names = await readdir(join(this.dir, 'images')).catch(() => [] as string[]);
    const images: CachedImage[] = [];
    for (const name of names) {
      if (!ENTRY_NAME.test(name)) continue;
      const entry = join(this.dir, 'images', name);
      const record = await readJson<EntryRecord>(join(entry, 'image.json'));
      if (!record) continue;
      const pulledAt = new Date(record.pulledAt);
      const lastUsed = await readFile(join(entry, LAST_USED), 'utf8').then((text) => new Date(text.trim()), () => pulledAt);
      const sizeBytes = record.sizeBytes ?? (await treeSize(join(entry, 'rootfs')));
      images.push({ digest: record.digest, reference: record.reference, sizeBytes, pulledAt, lastUsedAt: Number.isNaN(lastUsed.getTime()) ? pulledAt : lastUsed });
    }
    return images.sort((a, b) => b.lastUsedAt.getTime() - a.lastUsedAt.getTime());
  }

  /** Records that a sandbox was just created from the image. */
  async touch(digest: string, at = new Date()): Promise<void> {
    await writeFile(join(this.entryDir(digest), LAST_USED), at.toISOString()).catch(() => undefined);
  }

  /** Removes one entry: refused when absent (404) or in use (409). */
  async remove(digest: string, inUse: InUse): Promise<void> {
    const images = await this.list();
    if (!images.some((image) => image.digest === digest)) throw new ImageNotCachedError(digest);
    if (await inUse(digest)) throw new ImageInUseError(digest);
    await this.drop(digest);
  }

  /** Removes least-recently-used entries not in use until the cache holds at most maxBytes; answers the digests removed. */
  async prune(maxBytes: number, inUse: InUse): Promise<string[]> {
    const images = await this.list();
    let total = images.reduce((sum, image) => sum + image.sizeBytes, 0);
    const removed: string[] = [];
    for (const image of [...images].reverse()) {
      if (total <= maxBytes) break;
      if (await inUse(image.digest)) continue;
      await this.drop(image.digest);
      total -= image.sizeBytes;
      removed.push(image.digest);
    }
    return removed;
  }

  /** Out of images/ by one rename (no create can pick up a half-deleted entry), its tags dropped, then deleted. */
  private async drop(digest: string): Promise<void> {
    const trash = await mkdtemp(join(this.dir, 'tmp', 'remove-'));
    await rename(this.entryDir(digest), join(trash, 'entry'));
    const tags = join(this.dir, 'tags');
    for (const name of await readdir(tags).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue;
      const tag = await readJson<{ digest: string }>(join(tags, name));
      if (tag?.digest === digest) await rm(join(tags, name), { force: true });
    }
    await rm(trash, { recursive: true, force: true });
  }

  private entryDir(digest: string): string {
    return join(this.dir, 'images', registryEntryName(digest));
  }
}

/** Directory name of an entry under images/ (the store's format 1). */
export function registryEntryName(digest: string): string {
  return `v1-${digest.replace(':', '-')}`;
}

/** Apparent size of the files below dir, a file with several hard links counted once; symlinks not followed. */
export async function treeSize(dir: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (path: string): Promise<void> => {
    const info = await lstat(path).catch(() => undefined);
    if (!info) return;
    if (info.isDirectory()) {
      for (const name of await readdir(path).catch(() => [] as string[])) await walk(join(path, name));
      return;
    }
    const key = `${info.dev}:${info.ino}`;
    if (info.nlink > 1 && seen.has(key)) return;
    seen.add(key);
    total += info.size;
  };
  await walk(dir);
  return total;
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}
