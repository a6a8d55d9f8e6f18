import { Injectable, Logger } from '@nestjs/common';
import { Readable } from 'node:stream';
import { UnavailableError } from '../../common/domain-error';
import type { BulkFile, BulkVolumeAccess, InventoryEntry, TreeFile, VolumeAccess, VolumeEntry } from '../../integrations/sandbox/sandbox-provider';
import { VolumePathNotFoundError } from '../../integrations/sandbox/sandbox-provider.errors';
import { type ContentDigest, DigestStream, digestOf, streamThrough } from '../../integrations/storage/digest-stream';
import { ObjectStore } from '../../integrations/storage/object-store';
import { ObjectNotFoundError } from '../../integrations/storage/object-store.errors';
import {
  MANIFEST_FORMAT,
  type ManifestDirectory,
  type ManifestFile,
  type ManifestSymlink,
  parseManifest,
  serializeManifest,
  SnapshotLayout,
  type SnapshotManifest,
} from './manifest';
import { CorruptManifestError, RestoreFailedError, SnapshotFailedError, SnapshotVersionNotFoundError } from './snapshot.errors';
import type { FileFailure, RestoreStats, SnapshotLocation, SnapshotStats, SnapshotVersionSummary } from './snapshot.types';

/**
 * Small files are latency-bound (one request each), so many move at once; a larger upload buffers up
 * to a couple of multipart parts, so few of those run together and memory stays bounded.
 */
const SMALL_FILE_BYTES = 1024 * 1024;
const SMALL_FILES_IN_FLIGHT = 16;
const LARGE_FILES_IN_FLIGHT = 4;
const REQUESTS_IN_FLIGHT = 8;
const SUMMARY_CACHE_LIMIT = 10_000;
/** setuid/setgid are never recreated from a manifest, which a bucket writer could have forged. */
const RESTORABLE_FILE_MODE = 0o777;
const RESTORABLE_DIRECTORY_MODE = 0o1777;

interface VolumeTree {
  files: InventoryEntry[];
  directories: ManifestDirectory[];
  symlinks: ManifestSymlink[];
  skipped: { path: string; reason: string }[];
}

interface CapturedFile {
  file: ManifestFile;
  uploadedBytes: number;
  copied: boolean;
}

/**
 * Versioned, incremental copies of a volume in object storage. A version's files are stored under
 * its own prefix and the version exists only once its manifest is written, last; a failed run
 * leaves the previous latest version in place. Callers run one snapshot per account at a time.
 */
@Injectable()
export class SnapshotEngine {
  private readonly logger = new Logger(SnapshotEngine.name);
  /** Committed manifests never change, so their summaries are kept (keyed by bucket and key). */
  private readonly summaries = new Map<string, SnapshotVersionSummary>();

  constructor(private readonly store: ObjectStore) {}

  async snapshot(volume: VolumeAccess, target: SnapshotLocation): Promise<SnapshotStats> {
    const startedAt = Date.now();
    const layout = new SnapshotLayout(target);
    const [latest] = await this.committedVersions(layout);
    const previous = latest === undefined ? undefined : await this.manifestToCompareWith(layout, latest);
    const version = await this.nextVersion(layout, latest);
    const run = new RunLog();
    const inventory = await volume.bulk?.inventory().catch((error: unknown) => {
      run.fail('.', error);
      return [];
    });
    const tree = inventory
      ? treeOf(inventory)
      : await readTree(volume).catch((error: unknown) => {
          run.fail('.', error);
          return treeOf([]);
        });
    const captured =
      inventory && volume.bulk
        ? await this.captureInBulk(volume, volume.bulk, layout, version, tree, previous, run)
        : await this.captureFiles(volume, layout, version, tree.files, tree, previous, run);
    const files = captured.map((entry) => entry.file).sort(byPath);
    const stats: SnapshotStats = {
      version,
      files: files.length,
      bytes_total: sum(files.map((file) => file.size)),
      bytes_uploaded: sum(captured.map((entry) => entry.uploadedBytes)),
      files_copied: captured.filter((entry) => entry.copied).length,
      duration_ms: 0,
      errors: run.failures,
      skipped: tree.skipped.sort(byPath),
    };
    if (run.failures.length === 0) {
      await run.attempt(layout.manifestKey(version), () => this.commit(layout, target.accountId, stats, files, tree));
    }
    stats.duration_ms = Date.now() - startedAt;
    if (run.failures.length > 0) return this.abandon(layout, target.accountId, stats);
    this.logger.log(
      `snapshot ${version} of account ${target.accountId} committed to ${layout.bucket}/${layout.accountBase}: ${stats.files} files, ` +
        `${stats.bytes_uploaded} of ${stats.bytes_total} bytes uploaded, ${stats.files_copied} copied, ${stats.duration_ms} ms`,
    );
    return stats;
  }

  /** Restores the latest committed version, or the given one, into volume; null when there is none yet. */
  async restore(volume: VolumeAccess, source: SnapshotLocation, version?: number): Promise<RestoreStats | null> {
    const startedAt = Date.now();
    const layout = new SnapshotLayout(source);
    const versions = await this.committedVersions(layout);
    if (version !== undefined && !versions.includes(version)) throw new SnapshotVersionNotFoundError(version);
    const chosen = version ?? versions[0];
    if (chosen === undefined) return null;
    const manifest = await this.readManifest(layout, chosen);
    const run = new RunLog();
    const restoredInBulk = volume.bulk && (await this.restoreInBulk(volume.bulk, layout, manifest, run));
    if (!restoredInBulk) await this.restoreEntries(volume, layout, manifest, run);
    if (run.failures.length > 0) throw new RestoreFailedError(chosen, run.failures.sort(byPath));
    const stats: RestoreStats = {
      version: chosen,
      files: manifest.files.length,
      bytes_total: manifest.bytes_total,
      directories: manifest.directories.length,
      symlinks: manifest.symlinks.length,
      duration_ms: Date.now() - startedAt,
    };
    this.logger.log(`restored snapshot ${chosen} of account ${source.accountId} from ${layout.bucket}/${layout.accountBase}: ${stats.files} files in ${stats.duration_ms} ms`);
    return stats;
  }

  /** One entry after the other through the volume's single-entry operations. */
  private async restoreEntries(volume: VolumeAccess, layout: SnapshotLayout, manifest: SnapshotManifest, run: RunLog): Promise<void> {
    const chosen = manifest.version;
    const directories = [...manifest.directories].sort(byPath);
    for (const directory of directories) await run.attempt(directory.path, () => volume.mkdir(directory.path));
    await forEachFile(manifest.files, (file) => run.attempt(file.path, () => this.restoreFile(volume, layout, chosen, file)));
    for (const link of manifest.symlinks) await run.attempt(link.path, () => volume.symlink(link.path, link.target));
    // Final directory modes last and deepest first, so a read-only directory does not block its own contents.
    for (const directory of directories.reverse().filter((entry) => !run.hasFailed(entry.path))) {
      await run.attempt(directory.path, () => volume.mkdir(directory.path, directory.mode & RESTORABLE_DIRECTORY_MODE));
    }
  }

  /**
   * The whole version as one tree written by the volume (one step on engines where steps cost);
   * false when the volume cannot, before anything was written. Contents are checked against the
   * manifest by the volume before they are written.
   */
  private async restoreInBulk(bulk: BulkVolumeAccess, layout: SnapshotLayout, manifest: SnapshotManifest, run: RunLog): Promise<boolean> {
    let unavailable: string | undefined;
    const open = async (file: ManifestFile): Promise<Readable> => {
      if (unavailable) throw new Error(`not attempted: ${unavailable}`);
      return this.store.get(layout.bucket, layout.fileKey(manifest.version, file.path)).catch((error: unknown) => {
        if (error instanceof UnavailableError) unavailable ??= describe(error);
        throw error;
      });
    };
    const files = manifest.files.map(
      (file): TreeFile => ({ path: file.path, mode: file.mode & RESTORABLE_FILE_MODE, size: file.size, sha256: file.sha256, open: () => open(file) }),
    );
    const directories = manifest.directories.map((directory) => ({ path: directory.path, mode: directory.mode & RESTORABLE_DIRECTORY_MODE }));
    const symlinks = manifest.symlinks.map((link) => ({ path: link.path, target: link.target }));
    const written = await bulk.writeTree({ directories, files, symlinks }).catch((error: unknown) => {
      run.fail('.', error);
      return { failures: [] };
    });
    if (!written) return false;
    for (const failure of written.failures) run.fail(failure.path, failure.error);
    return true;
  }

  /** Committed versions, newest first. */
  async listVersions(source: SnapshotLocation): Promise<SnapshotVersionSummary[]> {
    const layout = new SnapshotLayout(source);
    const versions = await this.committedVersions(layout);
    const summaries: SnapshotVersionSummary[] = new Array(versions.length);
    await forEachConcurrently([...versions.keys()], REQUESTS_IN_FLIGHT, async (index) => {
      summaries[index] = await this.summary(layout, versions[index]);
    });
    return summaries;
  }

  private async captureFiles(
    volume: VolumeAccess,
    layout: SnapshotLayout,
    version: number,
    entries: VolumeEntry[],
    tree: VolumeTree,
    previous: SnapshotManifest | undefined,
    run: RunLog,
  ): Promise<CapturedFile[]> {
    const earlierFiles = new Map(previous?.files.map((file) => [file.path, file]));
    const captured: CapturedFile[] = [];
    await forEachFile(entries, async (entry) => {
      const earlier = previous && earlierFiles.has(entry.path) ? { version: previous.version, file: earlierFiles.get(entry.path)! } : undefined;
      const result = await run.attempt(entry.path, () =>
        this.captureFile(volume, layout, version, entry, earlier).catch((error: unknown) => {
          if (!(error instanceof VolumePathNotFoundError)) throw error;
          tree.skipped.push({ path: entry.path, reason: 'deleted while the snapshot ran' });
          return undefined;
        }),
      );
      if (result) captured.push(result);
    });
    return captured;
  }

  /**
   * The volume describes every file with a digest it computed itself: files the latest version has
   * with the same size and digest are copied inside the store, the others are read in one stream and
   * hashed here as they are uploaded. Files the stream did not deliver are read one by one.
   */
  private async captureInBulk(
    volume: VolumeAccess,
    bulk: BulkVolumeAccess,
    layout: SnapshotLayout,
    version: number,
    tree: VolumeTree,
    previous: SnapshotManifest | undefined,
    run: RunLog,
  ): Promise<CapturedFile[]> {
    const earlierFiles = new Map(previous?.files.map((file) => [file.path, file]));
    const captured = new Map<string, CapturedFile>();
    const toRead: InventoryEntry[] = [];
    const sameAsEarlier = (entry: InventoryEntry) => {
      const earlier = earlierFiles.get(entry.path);
      return earlier !== undefined && entry.sha256 !== undefined && earlier.size === entry.size && earlier.sha256 === entry.sha256;
    };
    toRead.push(...tree.files.filter((entry) => !sameAsEarlier(entry)));
    await forEachConcurrently(tree.files.filter(sameAsEarlier), SMALL_FILES_IN_FLIGHT, async (entry) => {
      const earlier = earlierFiles.get(entry.path)!;
      const copied = await run.attempt(entry.path, () => this.copyFromEarlier(layout, version, previous!.version, entry.path, earlier));
      if (copied === false) toRead.push(entry);
      if (copied) captured.set(entry.path, { file: fileRecord(entry, earlier), uploadedBytes: 0, copied: true });
    });
    const unread = await this.readInBulk(bulk, layout, version, toRead, captured, run);
    const oneByOne = toRead.filter((entry) => unread.has(entry.path));
    for (const entry of oneByOne) captured.delete(entry.path);
    return [...captured.values(), ...(await this.captureFiles(volume, layout, version, oneByOne, tree, previous, run))];
  }

  /** Uploads what one bulk read delivers; small files are buffered and several uploaded at a time. Answers the paths left unread. */
  private async readInBulk(
    bulk: BulkVolumeAccess,
    layout: SnapshotLayout,
    version: number,
    entries: InventoryEntry[],
    captured: Map<string, CapturedFile>,
    run: RunLog,
  ): Promise<Set<string>> {
    const byPath = new Map(entries.map((entry) => [entry.path, entry]));
    const uploads = new BoundedTasks(SMALL_FILES_IN_FLIGHT);
    const upload = async (entry: InventoryEntry, body: Readable, size: number) => {
      const result = await run.attempt(entry.path, () => this.uploadFile(layout, version, entry, body, size));
      if (result) captured.set(entry.path, result);
    };
    const receive = async (file: BulkFile): Promise<void> => {
      const entry = byPath.get(file.path)!;
      if (file.size > SMALL_FILE_BYTES) return upload(entry, file.content, file.size);
      const content = await run.attempt(file.path, () => bufferAtMost(file.content, SMALL_FILE_BYTES));
      if (content) await uploads.start(() => upload(entry, Readable.from([content]), content.length));
    };
    const result = await bulk.readFiles(entries.map(({ path, size }) => ({ path, size })), receive).catch((error: unknown) => {
      for (const entry of entries) if (!captured.has(entry.path) && !run.hasFailed(entry.path)) run.fail(entry.path, error);
      return { unread: [] };
    });
    await uploads.settled();
    return new Set(result ? result.unread : entries.map((entry) => entry.path));
  }

  /** Copies the file inside the store when the latest version has the same content, uploads it otherwise. */
  private async captureFile(
    volume: VolumeAccess,
    layout: SnapshotLayout,
    version: number,
    entry: VolumeEntry,
    earlier?: { version: number; file: ManifestFile },
  ): Promise<CapturedFile> {
    if (earlier && earlier.file.size === entry.size) {
      const content = await digestOf(await volume.openRead(entry.path));
      if (content.size === earlier.file.size && content.sha256 === earlier.file.sha256) {
        if (await this.copyFromEarlier(layout, version, earlier.version, entry.path, content)) {
          return { file: fileRecord(entry, content), uploadedBytes: 0, copied: true };
        }
      }
    }
    return this.uploadFile(layout, version, entry, await volume.openRead(entry.path), entry.size);
  }

  /** False when the earlier object is gone (deleted by hand): uploading again still yields a complete version. */
  private async copyFromEarlier(layout: SnapshotLayout, version: number, earlierVersion: number, path: string, content: ContentDigest): Promise<boolean> {
    return this.store.copy(layout.bucket, layout.fileKey(earlierVersion, path), layout.fileKey(version, path), content.size).then(
      () => true,
      (error: unknown) => {
        if (error instanceof ObjectNotFoundError) return false;
        throw error;
      },
    );
  }

  /** The manifest records the digest computed here, of the bytes actually stored. */
  private async uploadFile(layout: SnapshotLayout, version: number, entry: VolumeEntry, body: Readable, size: number): Promise<CapturedFile> {
    const digest = new DigestStream();
    await streamThrough(body, digest, (content) => this.store.put(layout.bucket, layout.fileKey(version, entry.path), content, size));
    return { file: fileRecord(entry, digest.result()), uploadedBytes: digest.result().size, copied: false };
  }

  /** Writes the file only if its content matches the manifest; the volume keeps the old file otherwise. */
  private async restoreFile(volume: VolumeAccess, layout: SnapshotLayout, version: number, file: ManifestFile): Promise<void> {
    const body = await this.store.get(layout.bucket, layout.fileKey(version, file.path));
    const verified = new DigestStream({ size: file.size, sha256: file.sha256 });
    await streamThrough(body, verified, (content) => volume.write(file.path, content, file.mode & RESTORABLE_FILE_MODE));
  }

  /** Unix seconds, above the latest committed version and above any leftovers of failed runs. */
  private async nextVersion(layout: SnapshotLayout, latest: number | undefined): Promise<number> {
    let version = Math.max(Math.floor(Date.now() / 1000), (latest ?? 0) + 1);
    while ((await this.store.list(layout.bucket, layout.versionPrefix(version), { limit: 1 })).objects.length > 0) version += 1;
    return version;
  }

  private async committedVersions(layout: SnapshotLayout): Promise<number[]> {
    const versions: number[] = [];
    for await (const object of this.store.listAll(layout.bucket, layout.manifestsPrefix)) {
      const version = layout.versionOf(object.key);
      if (version !== undefined) versions.push(version);
    }
    return versions.sort((a, b) => b - a);
  }

  /** An unreadable latest manifest must not block new snapshots: they then upload everything. */
  private async manifestToCompareWith(layout: SnapshotLayout, latest: number): Promise<SnapshotManifest | undefined> {
    try {
      return await this.readManifest(layout, latest);
    } catch (error) {
      if (!(error instanceof CorruptManifestError)) throw error;
      this.logger.warn(`${error.message}; snapshotting ${layout.bucket}/${layout.accountBase} without reusing it`);
      return undefined;
    }
  }

  private async readManifest(layout: SnapshotLayout, version: number): Promise<SnapshotManifest> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.store.get(layout.bucket, layout.manifestKey(version))) chunks.push(chunk as Buffer);
    const manifest = parseManifest(Buffer.concat(chunks), version);
    this.remember(layout, manifest);
    return manifest;
  }

  private async summary(layout: SnapshotLayout, version: number): Promise<SnapshotVersionSummary> {
    return this.summaries.get(`${layout.bucket}/${layout.manifestKey(version)}`) ?? summarize(await this.readManifest(layout, version));
  }

  private remember(layout: SnapshotLayout, manifest: SnapshotManifest): void {
    if (this.summaries.size >= SUMMARY_CACHE_LIMIT) this.summaries.delete(this.summaries.keys().next().value!);
    this.summaries.set(`${layout.bucket}/${layout.manifestKey(manifest.version)}`, summarize(manifest));
  }

  /** Writing the manifest is what makes the version exist. */
  private async commit(layout: SnapshotLayout, accountId: string, stats: SnapshotStats, files: ManifestFile[], tree: VolumeTree): Promise<void> {
    const manifest: SnapshotManifest = {
      format: MANIFEST_FORMAT,
      version: stats.version,
      created_at: new Date().toISOString(),
      account_id: accountId,
      bytes_total: stats.bytes_total,
      files,
      directories: tree.directories.sort(byPath),
      symlinks: tree.symlinks.sort(byPath),
      skipped: stats.skipped,
    };
    await this.store.put(layout.bucket, layout.manifestKey(stats.version), Readable.from([serializeManifest(manifest)]));
  }

  private async abandon(layout: SnapshotLayout, accountId: string, stats: SnapshotStats): Promise<never> {
    stats.errors.sort(byPath);
    await this.discardIncomplete(layout, stats.version);
    this.logger.warn(`snapshot ${stats.version} of account ${accountId} in ${layout.bucket}/${layout.accountBase} failed for ${stats.errors.length} entries; not committed`);
    throw new SnapshotFailedError(stats);
  }

  /**
   * Best effort: objects of an uncommitted version are invisible anyway, this only saves space. The
   * manifest goes first: a manifest write that failed on our side may still have landed in the store.
   */
  private async discardIncomplete(layout: SnapshotLayout, version: number): Promise<void> {
    try {
      await this.store.delete(layout.bucket, layout.manifestKey(version));
      const keys: string[] = [];
      for await (const object of this.store.listAll(layout.bucket, layout.versionPrefix(version))) keys.push(object.key);
      await forEachConcurrently(keys, REQUESTS_IN_FLIGHT, (key) => this.store.delete(layout.bucket, key));
    } catch (error) {
      this.logger.warn(`could not remove the objects of uncommitted snapshot ${version} in ${layout.bucket}/${layout.versionPrefix(version)}: ${describe(error)}`);
    }
  }
}

/** Failures of one run. Once the store or volume is unavailable, the remaining entries are not attempted. */
class RunLog {
  readonly failures: FileFailure[] = [];
  private unavailable?: string;

  async attempt<T>(path: string, action: () => Promise<T>): Promise<T | undefined> {
    if (this.unavailable) {
      this.failures.push({ path, error: `not attempted: ${this.unavailable}` });
      return undefined;
    }
    try {
      return await action();
    } catch (error) {
      this.fail(path, error);
      if (error instanceof UnavailableError) this.unavailable ??= describe(error);
      return undefined;
    }
  }

  fail(path: string, error: unknown): void {
    this.failures.push({ path, error: describe(error) });
  }

  hasFailed(path: string): boolean {
    return this.failures.some((failure) => failure.path === path);
  }
}

async function readTree(volume: VolumeAccess): Promise<VolumeTree> {
  const entries: VolumeEntry[] = [];
  for await (const entry of volume.walk()) entries.push(entry);
  return treeOf(entries);
}

function treeOf(entries: InventoryEntry[]): VolumeTree {
  const tree: VolumeTree = { files: [], directories: [], symlinks: [], skipped: [] };
  for (const entry of entries) {
    const mtime = entry.modifiedAt.toISOString();
    if (entry.type === 'file') tree.files.push(entry);
    else if (entry.type === 'directory') tree.directories.push({ path: entry.path, mode: entry.mode, mtime });
    else if (entry.type === 'symlink' && entry.target) tree.symlinks.push({ path: entry.path, target: entry.target, mtime });
    else tree.skipped.push({ path: entry.path, reason: entry.type === 'symlink' ? 'symlink without a readable target' : 'special file (fifo, socket or device)' });
  }
  return tree;
}

function fileRecord(entry: VolumeEntry, content: ContentDigest): ManifestFile {
  return { path: entry.path, size: content.size, sha256: content.sha256, mode: entry.mode, mtime: entry.modifiedAt.toISOString() };
}

/** The whole stream, refused past `limit` bytes (whatever size was announced for it). */
async function bufferAtMost(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > limit) {
      stream.destroy();
      throw new Error(`more than the ${limit} bytes announced`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, bytes);
}

/** Runs tasks in the background, at most `limit` at a time; start waits for a free slot. */
class BoundedTasks {
  private readonly running = new Set<Promise<void>>();
  private failure: unknown;

  constructor(private readonly limit: number) {}

  async start(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    const running: Promise<void> = task()
      .catch((error: unknown) => {
        this.failure ??= error;
      })
      .finally(() => this.running.delete(running));
    this.running.add(running);
  }

  async settled(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure !== undefined) throw this.failure;
  }
}

function summarize(manifest: SnapshotManifest): SnapshotVersionSummary {
  return { version: manifest.version, created_at: manifest.created_at, files: manifest.files.length, bytes: manifest.bytes_total };
}

async function forEachFile<T extends { size: number }>(files: T[], action: (file: T) => Promise<unknown>): Promise<void> {
  await Promise.all([
    forEachConcurrently(files.filter((file) => file.size <= SMALL_FILE_BYTES), SMALL_FILES_IN_FLIGHT, action),
    forEachConcurrently(files.filter((file) => file.size > SMALL_FILE_BYTES), LARGE_FILES_IN_FLIGHT, action),
  ]);
}

async function forEachConcurrently<T>(items: T[], limit: number, action: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await action(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function byPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

function sum(values: number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
