import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { createWriteStream, type Dirent } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DomainError } from '../../common/domain-error';
import { InvalidObjectKeyError, ObjectNotFoundError, StorageFailureError, type StorageOperation } from './object-store.errors';
import { listLimit, type ListOptions, type ObjectListing, ObjectStore, type StoredObject } from './object-store';

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const MAX_KEY_BYTES = 1024;
/** Where objects are written before they are renamed into place; no bucket can have this name. */
const STAGING_DIR = '.staging';

/**
 * Object storage in a local directory: `{rootDir}/{bucket}/{key}`, the same key layout as S3.
 * Objects appear atomically (written in a staging directory on the same filesystem, then renamed);
 * copies are hard links, which is safe because objects are never modified in place.
 */
export class LocalObjectStore extends ObjectStore {
  readonly kind = 'local';
  private readonly logger = new Logger(LocalObjectStore.name);

  constructor(private readonly rootDir: string) {
    super();
    this.logger.log(`object storage: local directory ${rootDir}`);
  }

  async put(bucket: string, key: string, body: Readable): Promise<void> {
    const target = this.objectPath(bucket, key);
    const staged = await this.stagingPath();
    try {
      await pipeline(body, createWriteStream(staged, { flags: 'wx', flush: true }));
      await this.moveIntoPlace(staged, target);
    } catch (error) {
      await unlink(staged).catch(() => undefined);
      throw translateFsError(error, 'put', bucket, key);
    }
  }

  async get(bucket: string, key: string): Promise<Readable> {
    const path = this.objectPath(bucket, key);
    try {
      const handle = await open(path, 'r');
      if ((await handle.stat()).isFile()) return handle.createReadStream();
      await handle.close();
      throw new ObjectNotFoundError(bucket, key);
    } catch (error) {
      throw translateFsError(error, 'get', bucket, key);
    }
  }

  async copy(bucket: string, fromKey: string, toKey: string): Promise<void> {
    const source = this.objectPath(bucket, fromKey);
    const target = this.objectPath(bucket, toKey);
    const staged = await this.stagingPath();
    try {
      await link(source, staged).catch((error: unknown) => {
        if (isMissing(error)) throw new ObjectNotFoundError(bucket, fromKey);
        return copyFile(source, staged);
      });
      await this.moveIntoPlace(staged, target);
    } catch (error) {
      throw translateFsError(error, 'copy', bucket, toKey);
    } finally {
      // Also after a successful rename: between two links of one file, rename() leaves the source link.
      await unlink(staged).catch(() => undefined);
    }
  }

  async list(bucket: string, prefix: string, options: ListOptions = {}): Promise<ObjectListing> {
    const directoryKey = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const directory = this.prefixPath(bucket, directoryKey);
    const limit = listLimit(options.limit);
    const listing: ObjectListing = { objects: [] };
    try {
      for await (const object of this.scanKeys(directory, directoryKey, { prefix, cursor: options.cursor })) {
        if (listing.objects.length === limit) {
          listing.nextCursor = listing.objects.at(-1)?.key;
          break;
        }
        listing.objects.push(object);
      }
    } catch (error) {
      throw translateFsError(error, 'list', bucket, prefix);
    }
    return listing;
  }

  async delete(bucket: string, key: string): Promise<void> {
    const path = this.objectPath(bucket, key);
    try {
      await unlink(path);
    } catch (error) {
      if (isMissing(error)) return;
      throw translateFsError(error, 'delete', bucket, key);
    }
    await this.pruneEmptyDirectories(dirname(path), this.bucketPath(bucket));
  }

  /** Objects below prefix after cursor, in key order. */
  private async *scanKeys(directory: string, directoryKey: string, scan: { prefix: string; cursor?: string }): AsyncGenerator<StoredObject> {
    const entries = await readdir(directory, { withFileTypes: true }).catch((error: unknown) => {
      if (isMissing(error)) return [] as Dirent[];
      throw error;
    });
    for (const entry of entries.map((dirent) => ({ dirent, key: `${directoryKey}${dirent.name}${dirent.isDirectory() ? '/' : ''}` })).sort(byKey)) {
      const { dirent, key } = entry;
      if (dirent.isFile() && key.startsWith(scan.prefix) && isAfter(key, scan.cursor)) {
        const stats = await stat(join(directory, dirent.name)).catch(() => null);
        if (stats) yield { key, size: stats.size, lastModified: stats.mtime };
      } else if (dirent.isDirectory() && (key.startsWith(scan.prefix) || scan.prefix.startsWith(key)) && !coversOnlyEarlierKeys(key, scan.cursor)) {
        yield* this.scanKeys(join(directory, dirent.name), key, scan);
      }
    }
  }

  private async moveIntoPlace(staged: string, target: string): Promise<void> {
    await mkdir(dirname(target), { recursive: true });
    await rename(staged, target).catch(async (error: unknown) => {
      // A concurrent delete may have pruned the freshly created directory; create it once more.
      if (!isMissing(error)) throw error;
      await mkdir(dirname(target), { recursive: true });
      await rename(staged, target);
    });
  }

  private async pruneEmptyDirectories(directory: string, bucketDirectory: string): Promise<void> {
    for (let current = directory; current.startsWith(`${bucketDirectory}/`); current = dirname(current)) {
      const removed = await rmdir(current).then(() => true, () => false);
      if (!removed) return;
    }
  }

  private async stagingPath(): Promise<string> {
    const staging = join(this.rootDir, STAGING_DIR);
    await mkdir(staging, { recursive: true });
    return join(staging, randomBytes(12).toString('hex'));
  }

  private bucketPath(bucket: string): string {
    if (!BUCKET_NAME.test(bucket) || bucket.includes('..')) throw new InvalidObjectKeyError(bucket, 'not a valid bucket name');
    return join(this.rootDir, bucket);
  }

  private objectPath(bucket: string, key: string): string {
    assertKeySegments(key, key.split('/'));
    return join(this.bucketPath(bucket), ...key.split('/'));
  }

  private prefixPath(bucket: string, directoryKey: string): string {
    const segments = directoryKey.split('/').slice(0, -1);
    if (segments.length > 0) assertKeySegments(directoryKey, segments);
    return join(this.bucketPath(bucket), ...segments);
  }
}

/** Keys map to paths here, so they must be plain relative paths. */
function assertKeySegments(key: string, segments: string[]): void {
  if (key.includes('\0')) throw new InvalidObjectKeyError(key.replace(/\0/g, '\\0'), 'contains a NUL byte');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new InvalidObjectKeyError(key.slice(0, 64), `longer than ${MAX_KEY_BYTES} bytes`);
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new InvalidObjectKeyError(key, "empty, '.' or '..' segment");
  }
}

function byKey(a: { key: string }, b: { key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function isAfter(key: string, cursor: string | undefined): boolean {
  return cursor === undefined || key > cursor;
}

/** Every key starting with directoryKey sorts at or before cursor, so the directory can be skipped. */
function coversOnlyEarlierKeys(directoryKey: string, cursor: string | undefined): boolean {
  return cursor !== undefined && cursor >= directoryKey && !cursor.startsWith(directoryKey);
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function translateFsError(error: unknown, operation: StorageOperation, bucket: string, key: string): unknown {
  if (error instanceof DomainError) return error;
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (typeof (error as NodeJS.ErrnoException | null)?.errno !== 'number') return error;
  if (isMissing(error) && operation === 'get') return new ObjectNotFoundError(bucket, key);
  return new StorageFailureError(operation, bucket, key, code ?? 'filesystem error');
}
