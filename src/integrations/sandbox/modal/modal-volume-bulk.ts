import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { DigestStream } from '../../storage/digest-stream';
import type { BulkFile, BulkVolumeAccess, InventoryEntry, PathFailure, TreeFile, TreeToWrite } from '../sandbox-provider';
import { ProviderFailureError } from '../sandbox-provider.errors';
import type { ModalSandboxLike } from './modal-client';
import type { ModalCall } from './modal-errors';
import { DIGESTS_FOLLOW, FIND_RECORD, readInventory, safeRelative } from './modal-volume-records';
import { type BoundedText, PRELUDE, READY_LINE, REQUIRE_GNU_FIND, REQUIRE_GNU_TAR, scriptError, ShellStep, TOOLS_MISSING } from './modal-volume-steps';

/**
 * Whole-volume steps, one exec each: an inventory (GNU find for the entries, sha256sum for the
 * content of regular files, so unchanged files need not leave the sandbox), a tar of chosen files
 * out through stdout, and a tar of a tree in through stdin. Everything the sandbox sends back is
 * treated as hostile: paths are checked, fields bounded, sizes only ever bound streams.
 */
const SCRIPTS = {
  inventory: `${PRELUDE}${REQUIRE_GNU_FIND}
printf '' | sha256sum -z >/dev/null 2>&1 || exit ${TOOLS_MISSING}
cd -- "$root" || exit 42
find . -mindepth 1 -printf '${FIND_RECORD}' || exit 46
printf '${DIGESTS_FOLLOW}\\0'
find . -mindepth 1 -type f -print0 | xargs -0 -r sha256sum -z -- 2>/dev/null
exit 0`,
  // --hard-dereference: every requested path comes with its content, never as a link to another.
  readFiles: `${PRELUDE}${REQUIRE_GNU_TAR}
cd -- "$root" || exit 42
printf '${READY_LINE.trim()}\\n'
exec tar -c -f - --null --no-recursion --hard-dereference -T -`,
  // -p: modes exactly as archived (already stripped of setuid/setgid); -m: files get the time of the
  // restore, as with single writes; --delay-directory-restore: directory modes last, so a read-only
  // directory does not block its contents. An existing symlink where the archive has a directory or
  // file is replaced (GNU tar's default without --keep-directory-symlink), so nothing is written
  // through a link planted in the volume.
  writeTree: `${PRELUDE}${REQUIRE_GNU_TAR}
cd -- "$root" || exit 42
printf '${READY_LINE.trim()}\\n'
exec tar -x -f - -p -m --no-same-owner --delay-directory-restore`,
};

/** Files up to this size are fetched into memory, several at a time; larger ones are spooled to disk. */
const SMALL_FILE_BYTES = 1024 * 1024;
const SMALL_FILES_IN_FLIGHT = 16;
const LARGE_FILES_IN_FLIGHT = 2;
const IMPLICIT_DIRECTORY_MODE = 0o755;
/** stderr kept to attribute tar's complaints to paths. */
const TAR_ERROR_OUTPUT_LIMIT = 64 * 1024;
/** Budgets: the call timeout, plus a second per MiB moved; an inventory reads the whole volume. */
const BYTES_PER_EXTRA_SECOND = 1024 * 1024;
const INVENTORY_TIMEOUT_FACTOR = 10;

/** Sandboxes whose image lacks the GNU tools (busybox): the per-entry steps are used there. */
const withoutBulkTools = new WeakSet<ModalSandboxLike>();

type ArchiveEntry = AsyncIterable<Buffer> & { header: tar.Header };
type HeaderArgument = Partial<tar.Header> & Pick<tar.Header, 'name'>;
type Prepared = { file: TreeFile; content: Buffer } | { file: TreeFile; spooled: string };

export class ModalVolumeBulk implements BulkVolumeAccess {
  constructor(
    private readonly sandbox: ModalSandboxLike,
    private readonly root: string,
    private readonly call: ModalCall,
    private readonly callTimeoutSeconds: number,
    private readonly spoolDir: string,
  ) {}

  /** Whether the bulk steps are worth trying in this sandbox (not known to lack their tools). */
  static available(sandbox: ModalSandboxLike): boolean {
    return !withoutBulkTools.has(sandbox);
  }

  static markUnavailable(sandbox: ModalSandboxLike): void {
    withoutBulkTools.add(sandbox);
  }

  async inventory(): Promise<InventoryEntry[] | null> {
    if (!ModalVolumeBulk.available(this.sandbox)) return null;
    const step = await this.start('inventory', this.callTimeoutSeconds * INVENTORY_TIMEOUT_FACTOR);
    const output = step.output();
    const entries = await readInventory(output, '').catch((error: unknown) => {
      output.destroy();
      throw error;
    });
    const exitCode = await step.exit();
    if (exitCode === TOOLS_MISSING) return this.unsupported();
    if (exitCode !== 0) throw scriptError('inventory', '', exitCode, (await step.errorOutput()).text);
    return entries;
  }

  async readFiles(files: { path: string; size: number }[], receive: (file: BulkFile) => Promise<void>): Promise<{ unread: string[] } | null> {
    if (!ModalVolumeBulk.available(this.sandbox)) return null;
    if (files.length === 0) return { unread: [] };
    const step = await this.start('readFiles', this.budget(files), TAR_ERROR_OUTPUT_LIMIT);
    const archive = await step.ready();
    if (!archive) return this.notReady(step, 'readFiles');
    const sending = step.send(fileList(files));
    sending.catch(() => undefined);
    const delivered = await extractRequested(archive, new Set(files.map((file) => file.path)), receive).catch((error: unknown) => {
      archive.destroy();
      throw error;
    });
    await sending;
    const exitCode = await step.exit();
    const doubtful = exitCode === 0 ? new Set<string>() : doubtfulReads(delivered, await step.errorOutput());
    return { unread: files.map((file) => file.path).filter((path) => !delivered.has(path) || doubtful.has(path)) };
  }

  async writeTree(tree: TreeToWrite): Promise<{ failures: PathFailure[] } | null> {
    if (!ModalVolumeBulk.available(this.sandbox)) return null;
    const step = await this.start('writeTree', this.budget(tree.files), TAR_ERROR_OUTPUT_LIMIT);
    const stdout = await step.ready();
    if (!stdout) return this.notReady(step, 'writeTree');
    stdout.resume();
    const spool = await mkdtemp(join(this.spoolDir, 'modal-restore-'));
    try {
      const failures: PathFailure[] = [];
      const archive = tar.pack();
      const producing = packTree(tree, archive, spool, failures).catch((error: unknown) => {
        archive.destroy(error as Error);
        throw error;
      });
      const sending = step.send(archive as AsyncIterable<Uint8Array>).catch((error: unknown) => {
        archive.destroy(error as Error);
        throw error;
      });
      const [produced, sent] = await Promise.allSettled([producing, sending]);
      if (produced.status === 'rejected') throw produced.reason;
      if (sent.status === 'rejected') throw sent.reason;
      const exitCode = await step.exit();
      if (exitCode !== 0) failures.push(...tarFailures(exitCode, await step.errorOutput(), entryNames(tree)));
      return { failures };
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  }

  private async start(script: keyof typeof SCRIPTS, seconds: number, stderrLimit?: number): Promise<ShellStep> {
    const argv = ['sh', '-c', SCRIPTS[script], `volume-${script}`, this.root, ''];
    return ShellStep.start(this.sandbox, this.call, `${script} /`, argv, { seconds, stderrLimit });
  }

  private async notReady(step: ShellStep, script: string): Promise<null> {
    const exitCode = await step.exit();
    if (exitCode === TOOLS_MISSING) return this.unsupported();
    throw scriptError(script, '', exitCode, (await step.errorOutput()).text);
  }

  private unsupported(): null {
    ModalVolumeBulk.markUnavailable(this.sandbox);
    return null;
  }

  private budget(files: { size: number }[]): number {
    const bytes = files.reduce((total, file) => total + file.size, 0);
    return this.callTimeoutSeconds + Math.ceil(bytes / BYTES_PER_EXTRA_SECOND);
  }
}

/** `./path` NUL-terminated: the ./ keeps a name starting with a dash from reading as an option. */
async function* fileList(files: { path: string }[]): AsyncGenerator<Buffer> {
  for (const file of files) yield Buffer.from(`./${file.path}\0`);
}

/**
 * Hands every requested regular file of the archive to receive, in archive order, and answers the
 * paths delivered. An entry whose name could leave the volume fails the whole read; entries not
 * asked for, repeated, or of another type are skipped (their paths then count as not delivered).
 */
async function extractRequested(archive: Readable, requested: Set<string>, receive: (file: BulkFile) => Promise<void>): Promise<Set<string>> {
  const delivered = new Set<string>();
  const extract = tar.extract();
  // A broken archive (truncated, say) fails the extraction but leaves the current entry open.
  let current: { entry: ArchiveEntry & { destroy(error?: Error): void }; content?: PassThrough } | undefined;
  const feeding = pipeline(archive, extract).catch((error: unknown) => {
    current?.content?.destroy(error as Error);
    current?.entry.destroy(error as Error);
    throw error;
  });
  feeding.catch(() => undefined);
  for await (const entry of extract as AsyncIterable<ArchiveEntry & { destroy(error?: Error): void }>) {
    current = { entry };
    const path = archivedPath(entry.header.name);
    const isFile = entry.header.type === 'file' || entry.header.type === 'contiguous-file';
    if (!isFile || !requested.has(path) || delivered.has(path)) {
      await drain(entry);
      continue;
    }
    delivered.add(path);
    current.content = new PassThrough();
    await handOver(entry, current.content, (content) => receive({ path, size: entry.header.size ?? 0, content }));
  }
  await feeding;
  return delivered;
}

function archivedPath(name: string): string {
  return safeRelative(name.startsWith('./') ? name.slice(2) : name);
}

/**
 * Passes an archive entry to the consumer as a Node stream. Whatever the consumer leaves unread is
 * drained, since the archive can only move on past a finished entry.
 */
async function handOver(entry: ArchiveEntry, content: PassThrough, consume: (content: Readable) => Promise<void>): Promise<void> {
  const pumping = (async () => {
    for await (const chunk of entry) {
      if (content.destroyed || content.writableEnded) continue;
      if (!content.write(chunk)) await writable(content);
    }
    if (!content.destroyed) content.end();
  })();
  pumping.catch(() => undefined);
  try {
    await consume(content);
  } finally {
    if (!content.readableEnded && !content.destroyed) content.resume();
  }
  await pumping;
}

/** Resolves once the stream takes more data, or is gone. */
function writable(stream: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

async function drain(entry: ArchiveEntry): Promise<void> {
  for await (const _chunk of entry as AsyncIterable<Buffer>) {
    // discarded
  }
}

/**
 * Delivered files tar complained about (a file that changed or shrank while read is padded or
 * torn). GNU tar quotes unusual names in its messages, so those are doubted whenever tar failed,
 * and all are doubted if its complaints did not fit in what was kept.
 */
function doubtfulReads(delivered: Set<string>, errors: BoundedText): Set<string> {
  if (errors.truncated) return new Set(delivered);
  return new Set([...delivered].filter((path) => !/^[\x21-\x5b\x5d-\x7e ]+$/.test(path) || errors.text.includes(`./${path}: `)));
}

/** Directories (every ancestor included, parents first), then verified files, then symlinks. */
async function packTree(tree: TreeToWrite, archive: tar.Pack, spool: string, failures: PathFailure[]): Promise<void> {
  for (const directory of directoriesOf(tree)) await addEntry(archive, { name: directory.path, type: 'directory', mode: archivedMode(directory.mode) });
  let emitting = Promise.resolve();
  const emit = (prepared: Prepared): Promise<void> => {
    emitting = emitting.then(() => addFile(archive, prepared));
    return emitting;
  };
  const prepareAndEmit = async (file: TreeFile): Promise<void> => {
    const prepared = await prepare(file, spool).catch((error: unknown) => {
      failures.push({ path: file.path, error });
      return undefined;
    });
    if (prepared) await emit(prepared);
  };
  await Promise.all([
    forEachConcurrently(tree.files.filter((file) => file.size <= SMALL_FILE_BYTES), SMALL_FILES_IN_FLIGHT, prepareAndEmit),
    forEachConcurrently(tree.files.filter((file) => file.size > SMALL_FILE_BYTES), LARGE_FILES_IN_FLIGHT, prepareAndEmit),
  ]);
  for (const link of tree.symlinks) await addEntry(archive, { name: link.path, type: 'symlink', linkname: link.target, mode: 0o777 });
  archive.finalize();
}

/** The content, checked against the expected size and digest before any of it goes to the sandbox. */
async function prepare(file: TreeFile, spool: string): Promise<Prepared> {
  const verified = new DigestStream({ size: file.size, sha256: file.sha256 });
  const body = await file.open();
  if (file.size <= SMALL_FILE_BYTES) {
    const chunks: Buffer[] = [];
    const collect = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    });
    await pipeline(body, verified, collect);
    return { file, content: Buffer.concat(chunks) };
  }
  const spooled = join(spool, randomUUID());
  try {
    await pipeline(body, verified, createWriteStream(spooled, { mode: 0o600 }));
  } catch (error) {
    await rm(spooled, { force: true });
    throw error;
  }
  return { file, spooled };
}

async function addFile(archive: tar.Pack, prepared: Prepared): Promise<void> {
  const header: HeaderArgument = { name: prepared.file.path, type: 'file', mode: archivedMode(prepared.file.mode), size: prepared.file.size };
  if ('content' in prepared) return addEntry(archive, header, prepared.content);
  try {
    await new Promise<void>((resolve, reject) => {
      const sink = archive.entry(header, (error) => (error ? reject(error) : resolve()));
      pipeline(createReadStream(prepared.spooled), sink).catch(reject);
    });
  } finally {
    await rm(prepared.spooled, { force: true });
  }
}

function addEntry(archive: tar.Pack, header: HeaderArgument, content?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const callback = (error?: Error | null) => (error ? reject(error) : resolve());
    if (content) archive.entry(header, content, callback);
    else archive.entry(header, callback);
  });
}

/** tar-stream replaces a falsy mode with its default; a bit outside 0o7777 keeps mode 0 as 0. */
function archivedMode(mode: number): number {
  return mode === 0 ? 0o10000 : mode;
}

function directoriesOf(tree: TreeToWrite): { path: string; mode: number }[] {
  const modes = new Map(tree.directories.map((directory) => [directory.path, directory.mode]));
  for (const { path } of [...tree.directories, ...tree.files, ...tree.symlinks]) {
    for (let end = path.indexOf('/'); end !== -1; end = path.indexOf('/', end + 1)) {
      const ancestor = path.slice(0, end);
      if (!modes.has(ancestor)) modes.set(ancestor, IMPLICIT_DIRECTORY_MODE);
    }
  }
  return [...modes].map(([path, mode]) => ({ path, mode })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function entryNames(tree: TreeToWrite): Set<string> {
  return new Set([...directoriesOf(tree).map((entry) => entry.path), ...tree.files.map((file) => file.path), ...tree.symlinks.map((link) => link.path)]);
}

/** tar's complaints (`tar: NAME: problem`) as failures of the entries they name; the rest for the whole tree. */
function tarFailures(exitCode: number, errors: BoundedText, names: Set<string>): PathFailure[] {
  const failures: PathFailure[] = [];
  const unattributed: string[] = [];
  for (const line of errors.text.split('\n').filter((text) => text.trim() !== '')) {
    const name = namedIn(line, names);
    if (name !== undefined) failures.push({ path: name, error: new ProviderFailureError('filesystem', line.slice(`tar: ${name}: `.length)) });
    else if (!/^tar: Exiting with failure status/.test(line)) unattributed.push(line);
  }
  if (unattributed.length > 0 || failures.length === 0 || errors.truncated) {
    const detail = unattributed.join('; ') || (errors.truncated ? 'more errors than were kept' : 'no error output');
    failures.push({ path: '.', error: new ProviderFailureError('filesystem', `writing the tree failed (exit ${exitCode}): ${detail}`) });
  }
  return failures;
}

function namedIn(line: string, names: Set<string>): string | undefined {
  if (!line.startsWith('tar: ')) return undefined;
  let found: string | undefined;
  for (let end = line.indexOf(': ', 5); end !== -1; end = line.indexOf(': ', end + 1)) {
    const candidate = line.slice(5, end);
    if (names.has(candidate)) found = candidate;
  }
  return found;
}

async function forEachConcurrently<T>(items: T[], limit: number, action: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await action(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

