import { InvalidInputError } from '../../common/domain-error';
import { accountKeyBase, assertSafeKeyPrefix } from '../../common/key-prefix';
import type { SnapshotLocation } from './snapshot.types';
import { CorruptManifestError } from './snapshot.errors';

export const MANIFEST_FORMAT = 1;

export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
  mode: number;
  mtime: string;
}

export interface ManifestDirectory {
  path: string;
  mode: number;
  mtime: string;
}

export interface ManifestSymlink {
  path: string;
  /** The link text exactly as it was; never resolved. */
  target: string;
  mtime: string;
}

/** Everything needed to rebuild a volume; writing it is what commits a version. */
export interface SnapshotManifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  created_at: string;
  account_id: string;
  bytes_total: number;
  files: ManifestFile[];
  directories: ManifestDirectory[];
  symlinks: ManifestSymlink[];
  skipped: { path: string; reason: string }[];
}

const ACCOUNT_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const MANIFEST_NAME = /^(\d{1,15})\.json$/;

/**
 * Where a version lives in the bucket: files at `{keyPrefix}{accountId}/{version}/{path}`, manifests
 * at `{keyPrefix}{accountId}/.manifests/{version}.json`. The account segment is always ours.
 */
export class SnapshotLayout {
  readonly bucket: string;
  readonly accountBase: string;

  constructor(location: SnapshotLocation) {
    assertSafeKeyPrefix(location.keyPrefix);
    if (!ACCOUNT_ID.test(location.accountId)) throw new InvalidInputError('account id is not a plain identifier');
    this.bucket = location.bucket;
    this.accountBase = accountKeyBase(location.keyPrefix, location.accountId);
  }

  versionPrefix(version: number): string {
    return `${this.accountBase}${version}/`;
  }

  fileKey(version: number, path: string): string {
    return `${this.versionPrefix(version)}${path}`;
  }

  get manifestsPrefix(): string {
    return `${this.accountBase}.manifests/`;
  }

  manifestKey(version: number): string {
    return `${this.manifestsPrefix}${version}.json`;
  }

  /** The version a manifest key commits, or undefined for anything else found under the prefix. */
  versionOf(manifestKey: string): number | undefined {
    const match = MANIFEST_NAME.exec(manifestKey.slice(this.manifestsPrefix.length));
    return manifestKey.startsWith(this.manifestsPrefix) && match ? Number(match[1]) : undefined;
  }
}

export function serializeManifest(manifest: SnapshotManifest): Buffer {
  return Buffer.from(JSON.stringify(manifest));
}

/**
 * Parses a stored manifest. Manifests live in a bucket other parties may write to (a sandbox can
 * mount it), so every path is checked to be a plain relative path before anything uses it.
 */
export function parseManifest(raw: Buffer, version: number): SnapshotManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new CorruptManifestError(version, 'not JSON');
  }
  const manifest = parsed as SnapshotManifest;
  const problem = manifestProblem(manifest, version);
  if (problem) throw new CorruptManifestError(version, problem);
  return manifest;
}

function manifestProblem(manifest: SnapshotManifest, version: number): string | undefined {
  if (typeof manifest !== 'object' || manifest === null) return 'not an object';
  if (manifest.format !== MANIFEST_FORMAT) return `unknown format ${String(manifest.format)}`;
  if (manifest.version !== version) return `records version ${String(manifest.version)}`;
  if (!Array.isArray(manifest.files) || !Array.isArray(manifest.directories) || !Array.isArray(manifest.symlinks)) return 'entry lists missing';
  const badFile = manifest.files.find((file) => !isSafePath(file.path) || !isSize(file.size) || !SHA256_HEX.test(String(file.sha256)) || !isMode(file.mode));
  if (badFile) return `invalid file entry ${JSON.stringify(badFile.path)}`;
  const badDirectory = manifest.directories.find((directory) => !isSafePath(directory.path) || !isMode(directory.mode));
  if (badDirectory) return `invalid directory entry ${JSON.stringify(badDirectory.path)}`;
  const badLink = manifest.symlinks.find((link) => !isSafePath(link.path) || typeof link.target !== 'string' || link.target === '' || link.target.includes('\0'));
  if (badLink) return `invalid symlink entry ${JSON.stringify(badLink.path)}`;
  return undefined;
}

export function isSafePath(path: unknown): path is string {
  return (
    typeof path === 'string' &&
    path !== '' &&
    !path.includes('\0') &&
    path.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..')
  );
}

function isSize(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isMode(value: unknown): boolean {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0o7777;
}
