import type { Readable } from 'node:stream';
import type { InventoryEntry, VolumeEntry } from '../sandbox-provider';
import { ProviderInvalidError } from '../sandbox-provider.errors';

/**
 * What GNU find prints per entry (-printf): type letter, size, octal mode, mtime in seconds, the
 * path as found, the link text; each field NUL-terminated, so any file name passes intact.
 */
export const FIND_RECORD = String.raw`%y\0%s\0%m\0%T@\0%p\0%l\0`;
const FIELDS_PER_RECORD = 6;
/** Ends the entries of an inventory; the SHA-256 lines of its regular files follow. */
export const DIGESTS_FOLLOW = '#';
/** Longer than any path or link text a Linux filesystem allows (PATH_MAX 4096). */
const MAX_FIELD_BYTES = 16 * 1024;
/** A bound on what a sandbox can make us hold in memory for one inventory. */
export const MAX_INVENTORY_ENTRIES = 1_000_000;

const TYPES: Record<string, VolumeEntry['type']> = { f: 'file', d: 'directory', l: 'symlink' };
const DIGEST_LINE = /^([0-9a-f]{64}) [ *]\.\/(.+)$/s;

/** The NUL-terminated fields of a stream; refuses a field longer than any real path. */
export async function* nulFields(source: Readable): AsyncGenerator<string> {
  let partial: Buffer[] = [];
  let partialBytes = 0;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    let start = 0;
    for (let end = chunk.indexOf(0, start); end !== -1; end = chunk.indexOf(0, start)) {
      partial.push(chunk.subarray(start, end));
      yield Buffer.concat(partial).toString('utf8');
      partial = [];
      partialBytes = 0;
      start = end + 1;
    }
    partialBytes += chunk.length - start;
    if (partialBytes > MAX_FIELD_BYTES) throw unreadable('a field longer than any path');
    if (start < chunk.length) partial.push(chunk.subarray(start));
  }
  if (partialBytes > 0) throw unreadable('output ends inside a field');
}

/**
 * Entries found below `dir` (relative to the volume root; find started at `./`), then, when the
 * inventory has them, the SHA-256 of its regular files.
 */
export async function readInventory(source: Readable, dir: string): Promise<InventoryEntry[]> {
  const entries = new Map<string, InventoryEntry>();
  const fields = nulFields(source);
  for (;;) {
    const record = await nextRecord(fields);
    if (!record) return [...entries.values()];
    if (record[0] === DIGESTS_FOLLOW) break;
    if (entries.size >= MAX_INVENTORY_ENTRIES) throw unreadable(`more than ${MAX_INVENTORY_ENTRIES} entries`);
    const entry = entryOf(record, dir);
    entries.set(entry.path, entry);
  }
  for await (const line of fields) {
    const match = DIGEST_LINE.exec(line);
    if (!match) throw unreadable('an unreadable digest line');
    const entry = entries.get(join(dir, safeRelative(match[2])));
    if (entry?.type === 'file') entry.sha256 = match[1];
  }
  return [...entries.values()];
}

/** One entry described by a find record whose path is absolute or below `./`; path given by the caller. */
export function entryOf(record: string[], dir: string, path?: string): InventoryEntry {
  const [typeLetter, size, mode, mtime, found, target] = record;
  const relative = path ?? join(dir, safeRelative(stripDotSlash(found)));
  const type = TYPES[typeLetter] ?? 'other';
  const entry: InventoryEntry = {
    name: relative.slice(relative.lastIndexOf('/') + 1),
    path: relative,
    type,
    size: decimal(size),
    mode: octalMode(mode),
    modifiedAt: new Date(Math.floor(seconds(mtime)) * 1000),
  };
  if (type === 'symlink' && target !== '') entry.target = target;
  return entry;
}

/** The next complete record, undefined at the end; the digest marker comes back as a one-field record. */
export async function nextRecord(fields: AsyncGenerator<string>): Promise<string[] | undefined> {
  const record: string[] = [];
  while (record.length < FIELDS_PER_RECORD) {
    const next = await fields.next();
    if (next.done) {
      if (record.length === 0) return undefined;
      throw unreadable('a truncated record');
    }
    if (record.length === 0 && next.value === DIGESTS_FOLLOW) return [DIGESTS_FOLLOW];
    record.push(next.value);
  }
  return record;
}

/** A path below the volume root as the sandbox reported it; anything that could leave it is refused. */
export function safeRelative(path: string): string {
  const segments = path.split('/');
  if (path === '' || segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new ProviderInvalidError('filesystem', `the sandbox reported a path outside the volume: ${JSON.stringify(path.slice(0, 200))}`);
  }
  return path;
}

function stripDotSlash(found: string): string {
  if (!found.startsWith('./')) throw unreadable(`a path not below the listed directory: ${JSON.stringify(found.slice(0, 200))}`);
  return found.slice(2);
}

function join(dir: string, name: string): string {
  return dir ? `${dir}/${name}` : name;
}

function decimal(text: string): number {
  const value = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value)) throw unreadable(`an unreadable size ${JSON.stringify(text.slice(0, 40))}`);
  return value;
}

function octalMode(text: string): number {
  if (!/^[0-7]{1,6}$/.test(text)) throw unreadable(`an unreadable mode ${JSON.stringify(text.slice(0, 40))}`);
  return parseInt(text, 8) & 0o7777;
}

function seconds(text: string): number {
  const value = /^-?\d{1,15}(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value)) throw unreadable(`an unreadable time ${JSON.stringify(text.slice(0, 40))}`);
  return value;
}

function unreadable(problem: string): ProviderInvalidError {
  return new ProviderInvalidError('filesystem', `unreadable listing from the sandbox: ${problem}`);
}
