import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { chmod, type FileHandle, lchown, lstat, mkdir, open, readdir, readlink, rename, rmdir, symlink, unlink } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DomainError } from '../../../common/domain-error';
import type { VolumeAccess, VolumeEntry } from '../sandbox-provider';
import {
  PathOutsideVolumeError,
  ProviderConflictError,
  ProviderFailureError,
  ProviderInvalidError,
  VolumePathNotFoundError,
} from '../sandbox-provider.errors';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = constants;
const DEFAULT_FILE_MODE = 0o644;
const DEFAULT_DIRECTORY_MODE = 0o755;

/** Host uid/gid that what the service creates on a volume belongs to: the sandbox's root. */
export interface VolumeOwner {
  uid: number;
  gid: number;
}

/** An open directory of the volume; `via` addresses its children through the descriptor itself. */
interface OpenDirectory {
  handle: FileHandle;
  via: string;
}

/**
 * A volume that is a directory on this host. Every operation walks from the volume root through
 * open directory descriptors (/proc/self/fd/N/child, the openat of Node) and checks where each
 * descriptor really points, so a symlink or a directory swapped for one while we work can never
 * take a read or a write outside the volume. Symlinks inside the volume that stay inside are
 * followed for reading; walk() and list() never follow any.
 */
export class LocalVolumeAccess implements VolumeAccess {
  constructor(
    private readonly rootDir: string,
    private readonly owner?: VolumeOwner,
  ) {}

  async list(dir: string): Promise<VolumeEntry[]> {
    const segments = volumeSegments(dir);
    return this.withDirectory(segments, dir, false, (opened, root) => this.readEntries(opened, segments.join('/'), root));
  }

  async stat(path: string): Promise<VolumeEntry | null> {
    const segments = volumeSegments(path);
    if (segments.length === 0) return this.withDirectory([], path, false, async (root) => toEntry('', await root.handle.stat()));
    try {
      return await this.withParent(segments, path, false, async (parent, name) => {
        const target = `${parent.via}/${name}`;
        return toEntry(segments.join('/'), await lstat(target), await readLinkIfSymlink(target));
      });
    } catch (error) {
      if (error instanceof VolumePathNotFoundError || error instanceof ProviderConflictError) return null;
      throw error;
    }
  }

  async openRead(path: string): Promise<Readable> {
    const segments = volumeSegments(path);
    if (segments.length === 0) throw new ProviderInvalidError('filesystem', 'the volume root is a directory');
    const file = await this.withParent(segments, path, false, async (parent, name, rootReal) => {
      const handle = await this.openInside(`${parent.via}/${name}`, O_RDONLY | O_NONBLOCK | O_NOCTTY, rootReal, path);
      const stats = await handle.stat();
      if (stats.isFile()) return handle;
      await handle.close();
      throw new ProviderInvalidError('filesystem', `not a regular file: ${path}`);
    });
    return file.createReadStream();
  }

  async write(path: string, content: Readable, mode?: number): Promise<{ bytes: number }> {
    const segments = volumeSegments(path);
    if (segments.length === 0) throw new ProviderInvalidError('filesystem', 'the volume root is a directory');
    return this.withParent(segments, path, true, async (parent, name) => {
      const target = `${parent.via}/${name}`;
      const fileMode = mode ?? (await existingFileMode(target)) ?? DEFAULT_FILE_MODE;
      const temporary = `${parent.via}/${temporaryName(name)}`;
      try {
        const bytes = await writeNewFile(temporary, content, fileMode, this.owner);
        await rename(temporary, target);
        return { bytes };
      } catch (error) {
        await unlink(temporary).catch(() => undefined);
        throw error;
      }
    });
  }

  async mkdir(path: string, mode?: number): Promise<void> {
    const segments = volumeSegments(path);
    await this.withDirectory(segments, path, true, async (opened) => {
      if (mode !== undefined) await opened.handle.chmod(mode);
    });
  }

  async symlink(path: string, target: string): Promise<void> {
    const segments = volumeSegments(path);
    if (segments.length === 0 || target.length === 0 || target.includes('\0')) {
      throw new ProviderInvalidError('filesystem', `invalid symlink: ${path}`);
    }
    await this.withParent(segments, path, true, async (parent, name) => {
      const temporary = `${parent.via}/${temporaryName(name)}`;
      await symlink(target, temporary);
      if (this.owner) await lchown(temporary, this.owner.uid, this.owner.gid);
      await rename(temporary, `${parent.via}/${name}`).catch(async (error: unknown) => {
        await unlink(temporary).catch(() => undefined);
        throw error;
      });
    });
  }

  async remove(path: string): Promise<void> {
    const segments = volumeSegments(path);
    if (segments.length === 0) throw new ProviderInvalidError('filesystem', 'the volume root cannot be removed');
    await this.withParent(segments, path, false, (parent, name) => removeTree(parent.via, name));
  }

  async *walk(dir = ''): AsyncIterable<VolumeEntry> {
    const segments = volumeSegments(dir);
    const root = await this.openRoot(dir);
    let start: OpenDirectory = root.opened;
    try {
      start = await this.descend(root.opened, segments, false, root.real, dir).catch((error: unknown) => {
        throw translateFsError(error, dir);
      });
      yield* this.walkFrom(start, segments.join('/'), root.real);
    } finally {
      await closeQuietly(start);
      if (start !== root.opened) await closeQuietly(root.opened);
    }
  }

  private async *walkFrom(dir: OpenDirectory, relative: string, rootReal: string): AsyncGenerator<VolumeEntry> {
    const entries = await this.readEntries(dir, relative, rootReal).catch((error: unknown) => {
      throw translateFsError(error, relative || '.');
    });
    for (const entry of entries) {
      yield entry;
      if (entry.type !== 'directory') continue;
      const child = await this.openChildDirectory(dir, entry.name, false, rootReal, entry.path, false).catch((error: unknown) => {
        throw translateFsError(error, entry.path);
      }).catch(skipVanished);
      if (!child) continue;
      try {
        yield* this.walkFrom(child, entry.path, rootReal);
      } finally {
        await closeQuietly(child);
      }
    }
  }

  private async readEntries(dir: OpenDirectory, relative: string, rootReal: string): Promise<VolumeEntry[]> {
    await this.assertInside(dir.handle, rootReal, relative);
    const names = (await readdir(dir.via)).sort();
    const entries: VolumeEntry[] = [];
    for (const name of names) {
      const target = `${dir.via}/${name}`;
      const stats = await lstat(target).catch(skipVanished);
      if (!stats) continue;
      const path = relative ? `${relative}/${name}` : name;
      entries.push(toEntry(path, stats, stats.isSymbolicLink() ? await readlink(target) : undefined));
    }
    return entries;
  }

  /** Runs fn with the directory at segments open (created when asked), translating OS errors. */
  private async withDirectory<T>(segments: string[], path: string, create: boolean, fn: (dir: OpenDirectory, rootReal: string) => Promise<T>): Promise<T> {
    const root = await this.openRoot(path);
    let dir = root.opened;
    try {
      dir = await this.descend(root.opened, segments, create, root.real, path);
      return await fn(dir, root.real);
    } catch (error) {
      throw translateFsError(error, path);
    } finally {
      await closeQuietly(dir);
      if (dir !== root.opened) await closeQuietly(root.opened);
    }
  }

  private withParent<T>(segments: string[], path: string, create: boolean, fn: (parent: OpenDirectory, name: string, rootReal: string) => Promise<T>): Promise<T> {
    const name = segments[segments.length - 1];
    return this.withDirectory(segments.slice(0, -1), path, create, (parent, rootReal) => fn(parent, name, rootReal));
  }

  private async openRoot(path: string): Promise<{ opened: OpenDirectory; real: string }> {
    try {
      const handle = await open(this.rootDir, O_RDONLY | O_DIRECTORY);
      return { opened: { handle, via: descriptorPath(handle) }, real: await readlink(descriptorPath(handle)) };
    } catch (error) {
      throw translateFsError(error, path || '.');
    }
  }

  /** Opens each segment below start in turn; the caller closes the result (start is kept open). */
  private async descend(start: OpenDirectory, segments: string[], create: boolean, rootReal: string, path: string): Promise<OpenDirectory> {
    let current = start;
    for (const segment of segments) {
      const next = await this.openChildDirectory(current, segment, create, rootReal, path, true).catch(async (error: unknown) => {
        if (current !== start) await closeQuietly(current);
        throw error;
      });
      if (current !== start) await closeQuietly(current);
      current = next;
    }
    return current;
  }

  private async createDirectory(path: string): Promise<void> {
    try {
      await mkdir(path, DEFAULT_DIRECTORY_MODE);
    } catch (error) {
      if (errorCode(error) === 'EEXIST') return;
      throw error;
    }
    await chmod(path, DEFAULT_DIRECTORY_MODE); // not subject to the service's umask
    if (this.owner) await lchown(path, this.owner.uid, this.owner.gid);
  }

  private async openChildDirectory(parent: OpenDirectory, name: string, create: boolean, rootReal: string, path: string, followInside: boolean): Promise<OpenDirectory> {
    const child = `${parent.via}/${name}`;
    try {
      const handle = await open(child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      return { handle, via: descriptorPath(handle) };
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' && create) {
        await this.createDirectory(child);
        return this.openChildDirectory(parent, name, false, rootReal, path, followInside);
      }
      const isLink = (code === 'ELOOP' || code === 'ENOTDIR') && (await lstat(child)).isSymbolicLink();
      if (!isLink) throw code === 'ENOTDIR' ? new ProviderConflictError('filesystem', `not a directory: ${path}`) : error;
      if (!followInside) throw new VolumePathNotFoundError(path);
      const handle = await this.openInside(child, O_RDONLY | O_DIRECTORY, rootReal, path);
      return { handle, via: descriptorPath(handle) };
    }
  }

  /** Opens a path that may end in a symlink and refuses the result unless it lies in the volume. */
  private async openInside(path: string, flags: number, rootReal: string, requested: string): Promise<FileHandle> {
    const handle = await open(path, flags);
    try {
      await this.assertInside(handle, rootReal, requested);
      return handle;
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  private async assertInside(handle: FileHandle, rootReal: string, requested: string): Promise<void> {
    const actual = await readlink(descriptorPath(handle));
    if (actual !== rootReal && !actual.startsWith(`${rootReal}/`)) throw new PathOutsideVolumeError(requested);
  }
}

/** Splits a volume path into its segments; refuses anything that could name a place outside. */
function volumeSegments(path: string): string[] {
  if (path.includes('\0') || path.startsWith('/')) throw new PathOutsideVolumeError(path.replace(/\0/g, '\\0'));
  const segments = path.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new PathOutsideVolumeError(path);
  return segments;
}

function descriptorPath(handle: FileHandle): string {
  return `/proc/self/fd/${handle.fd}`;
}

function toEntry(path: string, stats: Stats, target?: string): VolumeEntry {
  return {
    name: path.slice(path.lastIndexOf('/') + 1),
    path,
    type: stats.isFile() ? 'file' : stats.isDirectory() ? 'directory' : stats.isSymbolicLink() ? 'symlink' : 'other',
    size: stats.size,
    mode: stats.mode & 0o7777,
    modifiedAt: stats.mtime,
    ...(target !== undefined ? { target } : {}),
  };
}

async function readLinkIfSymlink(path: string): Promise<string | undefined> {
  return (await lstat(path)).isSymbolicLink() ? readlink(path) : undefined;
}

async function existingFileMode(path: string): Promise<number | undefined> {
  const stats = await lstat(path).catch(() => undefined);
  return stats?.isFile() ? stats.mode & 0o7777 : undefined;
}

function temporaryName(name: string): string {
  return `.${name.slice(0, 64)}.${randomBytes(6).toString('hex')}.partial`;
}

/** Creates path exclusively (never through a symlink) and streams content into it. */
async function writeNewFile(path: string, content: Readable, mode: number, owner?: VolumeOwner): Promise<number> {
  const handle = await open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  try {
    if (owner) await handle.chown(owner.uid, owner.gid);
    await handle.chmod(mode); // after chown, which clears setuid bits
  } catch (error) {
    await handle.close();
    throw error;
  }
  // The stream owns the descriptor from here: it syncs and closes it when done or destroyed.
  await pipeline(content, counter, handle.createWriteStream({ flush: true }));
  return bytes;
}

/** Removes name below the directory `via`, descending only into real directories (never links). */
async function removeTree(via: string, name: string): Promise<void> {
  const path = `${via}/${name}`;
  const stats = await lstat(path);
  if (!stats.isDirectory()) return unlink(path);
  const handle = await open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  try {
    for (const child of await readdir(descriptorPath(handle))) await removeTree(descriptorPath(handle), child);
  } finally {
    await handle.close();
  }
  await rmdir(path);
}

async function closeQuietly(dir: OpenDirectory): Promise<void> {
  await dir.handle.close().catch(() => undefined);
}

/** An entry deleted (or replaced by a symlink) between listing and reading is no longer walked. */
function skipVanished(error: unknown): undefined {
  if (errorCode(error) === 'ENOENT' || error instanceof VolumePathNotFoundError) return undefined;
  throw error;
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

function translateFsError(error: unknown, path: string): Error {
  if (error instanceof DomainError) return error;
  switch (errorCode(error)) {
    case 'ENOENT':
      return new VolumePathNotFoundError(path);
    case 'ENOTDIR':
      return new ProviderConflictError('filesystem', `not a directory: ${path}`);
    case 'EISDIR':
      return new ProviderConflictError('filesystem', `is a directory: ${path}`);
    case 'ENOTEMPTY':
    case 'EEXIST':
      return new ProviderConflictError('filesystem', `already exists: ${path}`);
    case 'EACCES':
    case 'EPERM':
      return new ProviderFailureError('filesystem', `permission denied: ${path}`);
    case 'ENOSPC':
    case 'EDQUOT':
      return new ProviderFailureError('filesystem', `no space left for ${path}`);
    case 'ENAMETOOLONG':
      return new ProviderInvalidError('filesystem', `name too long: ${path}`);
    case 'ELOOP':
      return new ProviderInvalidError('filesystem', `too many levels of symbolic links: ${path}`);
    default:
      return new ProviderFailureError('filesystem', `${errorCode(error) ?? (error as Error).message} on ${path}`);
  }
}
