import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FileInfo } from 'modal';
import type { BulkVolumeAccess, VolumeEntry, VolumeAccess } from '../sandbox-provider';
import { PathOutsideVolumeError, ProviderInvalidError } from '../sandbox-provider.errors';
import type { ModalSandboxLike } from './modal-client';
import type { ModalCall } from './modal-errors';
import { bytesReadable, readNonEmpty, readTail } from './modal-streams';
import { ModalVolumeBulk } from './modal-volume-bulk';
import { entryOf, FIND_RECORD, nextRecord, nulFields, readInventory } from './modal-volume-records';
import { PRELUDE, READY_LINE, REQUIRE_GNU_FIND, scriptError, ShellStep, TOOLS_MISSING } from './modal-volume-steps';

/** The stat step's answer for a path with nothing there. */
const ABSENT = 47;

const SCRIPTS = {
  read: `${PRELUDE}[ -e "$p" ] || exit 42; inside "$p"; [ -f "$p" ] || exit 41; exec cat -- "$p"`,
  list: `${PRELUDE}[ -e "$p" ] || exit 42; inside "$p"; [ -d "$p" ] || exit 43`,
  listEntries: `${PRELUDE}[ -e "$p" ] || exit 42; inside "$p"; [ -d "$p" ] || exit 43
${REQUIRE_GNU_FIND}
cd -- "$p" || exit 43
exec find . -mindepth 1 -maxdepth 1 -printf '${FIND_RECORD}'`,
  parent: `${PRELUDE}guard "\${p%/*}"`,
  statEntry: `${PRELUDE}${REQUIRE_GNU_FIND}
if [ -n "$rel" ]; then guard "\${p%/*}"; fi
[ -e "$p" ] || [ -L "$p" ] || exit ${ABSENT}
exec find "$p" -maxdepth 0 -printf '${FIND_RECORD}'`,
  // The content arrives on stdin once the checks passed; a short upload (the sender failed) is never committed.
  write: `${PRELUDE}tmp=$3 mode=$4 size=$5
trap 'rm -f -- "$tmp"' EXIT
guard "\${p%/*}"
if [ -d "$p" ]; then exit 44; fi
mkdir -p -- "\${p%/*}" || exit 43
printf '${READY_LINE.trim()}\\n'
cat > "$tmp" || exit 45
n=$(wc -c < "$tmp") && [ $n -eq "$size" ] || exit 45
if [ -z "$mode" ]; then if [ -f "$p" ]; then mode=$(stat -c %a -- "$p"); else mode=644; fi; fi
chmod "$mode" "$tmp" && mv -f -- "$tmp" "$p"`,
  mkdir: `${PRELUDE}mode=$3
guard "$p"
mkdir -p -- "$p" || exit 43
if [ -n "$mode" ]; then chmod "$mode" "$p"; fi`,
  symlink: `${PRELUDE}target=$3
guard "\${p%/*}"
if [ -d "$p" ] && [ ! -L "$p" ]; then exit 44; fi
mkdir -p -- "\${p%/*}" || exit 43
ln -sfn -- "$target" "$p"`,
  remove: `${PRELUDE}guard "\${p%/*}"
if [ ! -e "$p" ] && [ ! -L "$p" ]; then exit 42; fi
rm -rf -- "$p"`,
};
type Script = keyof typeof SCRIPTS;

const ERROR_OUTPUT_LIMIT = 2000;
/** Uploads get the call deadline plus a second per MiB, so large restores are not cut short. */
const UPLOAD_BYTES_PER_EXTRA_SECOND = 1024 * 1024;

/**
 * A Modal volume as seen from a running sandbox that mounts it at `root`. Every operation is one
 * exec of a small shell step (each exec costs a round trip to Modal): list and stat describe
 * entries with GNU find, reads stream through `cat`, writes stream into the step's stdin; whole
 * volume operations (bulk) move one tar. Before following a path, the steps resolve it and refuse
 * anything whose real location is outside the volume. In images without the GNU tools (busybox),
 * list and stat fall back to sandbox.filesystem after a check step, and bulk answers null.
 */
export class ModalVolumeAccess implements VolumeAccess {
  readonly bulk: BulkVolumeAccess;

  constructor(
    private readonly sandbox: ModalSandboxLike,
    private readonly root: string,
    private readonly call: ModalCall,
    private readonly callTimeoutSeconds: number,
    private readonly spoolDir: string = tmpdir(),
  ) {
    this.bulk = new ModalVolumeBulk(sandbox, root, call, callTimeoutSeconds, spoolDir);
  }

  async list(dir: string): Promise<VolumeEntry[]> {
    const relative = volumePath(dir);
    const described = ModalVolumeBulk.available(this.sandbox) ? await this.describeEntries(relative) : null;
    if (described) return described.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    await this.runScript('list', relative);
    return this.entriesOf(relative);
  }

  async stat(path: string): Promise<VolumeEntry | null> {
    const relative = volumePath(path);
    const described = ModalVolumeBulk.available(this.sandbox) ? await this.describeEntry(relative) : undefined;
    if (described !== undefined) return described;
    if (relative !== '') await this.runScript('parent', relative);
    const info = await this.call('filesystem', `stat ${relative}`, async () => {
      try {
        return await this.sandbox.filesystem.stat(this.absolute(relative));
      } catch (error) {
        if (isFilesystemError(error, 'NotFound')) return null;
        throw error;
      }
    });
    return info && toEntry(relative, info);
  }

  async openRead(path: string): Promise<Readable> {
    const relative = filePath(path);
    const cat = await this.call('filesystem', `read ${relative}`, () =>
      this.sandbox.exec(this.scriptArgv('read', relative), { mode: 'binary' }),
    );
    const reader = cat.stdout.getReader();
    const first = await this.call('filesystem', `read ${relative}`, () => readNonEmpty(reader));
    const checkExit = async () => {
      const exitCode = await this.call('filesystem', `read ${relative}`, () => cat.wait());
      if (exitCode !== 0) throw scriptError('read', relative, exitCode, await readTail(cat.stderr, ERROR_OUTPUT_LIMIT));
    };
    if (!first) {
      await checkExit();
      return Readable.from([]);
    }
    return bytesReadable(reader, { first, beforeEnd: checkExit }).readable;
  }

  async write(path: string, content: Readable, mode?: number): Promise<{ bytes: number }> {
    const relative = filePath(path);
    const spool = await mkdtemp(join(this.spoolDir, 'modal-upload-'));
    const upload = `${this.root}/.upload-${randomUUID()}.partial`;
    let sending = false;
    try {
      // Spooled first: the upload is sent only once the whole content arrived, and its size is known.
      const bytes = await spoolTo(content, join(spool, 'content'));
      const seconds = this.callTimeoutSeconds + Math.ceil(bytes / UPLOAD_BYTES_PER_EXTRA_SECOND);
      const argv = this.scriptArgv('write', relative, upload, mode === undefined ? '' : octal(mode), String(bytes));
      const step = await ShellStep.start(this.sandbox, this.call, `write ${relative}`, argv, { seconds });
      const output = await step.ready();
      if (output) {
        output.resume();
        sending = true;
        await step.send(createReadStream(join(spool, 'content')));
      }
      const exitCode = await step.exit();
      if (exitCode !== 0) throw scriptError('write', relative, exitCode, (await step.errorOutput()).text);
      return { bytes };
    } catch (error) {
      // Refused before the upload started: the step created nothing to clean up.
      if (sending) await this.discard(upload);
      throw error;
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  }

  async mkdir(path: string, mode?: number): Promise<void> {
    await this.runScript('mkdir', volumePath(path), mode === undefined ? '' : octal(mode));
  }

  async symlink(path: string, target: string): Promise<void> {
    const relative = volumePath(path);
    if (relative === '' || target.length === 0 || target.includes('\0')) throw new ProviderInvalidError('filesystem', `invalid symlink: ${path}`);
    await this.runScript('symlink', relative, target);
  }

  async remove(path: string): Promise<void> {
    const relative = volumePath(path);
    if (relative === '') throw new ProviderInvalidError('filesystem', 'the volume root cannot be removed');
    await this.runScript('remove', relative);
  }

  async *walk(dir = ''): AsyncIterable<VolumeEntry> {
    const relative = volumePath(dir);
    await this.runScript('list', relative);
    yield* this.walkFrom(relative);
  }

  private async *walkFrom(relative: string): AsyncGenerator<VolumeEntry> {
    for (const entry of await this.entriesOf(relative)) {
      yield entry;
      if (entry.type === 'directory') yield* this.walkFrom(entry.path);
    }
  }

  /** The entries of a directory in one step, or null when the sandbox lacks GNU find. */
  private async describeEntries(relative: string): Promise<VolumeEntry[] | null> {
    const step = await ShellStep.start(this.sandbox, this.call, `list ${relative || '/'}`, this.scriptArgv('listEntries', relative), { seconds: this.callTimeoutSeconds });
    const output = step.output();
    const entries = await readInventory(output, relative).catch((error: unknown) => {
      output.destroy();
      throw error;
    });
    const exitCode = await step.exit();
    if (exitCode === TOOLS_MISSING) return this.withoutGnuTools(null);
    if (exitCode !== 0) throw scriptError('list', relative, exitCode, (await step.errorOutput()).text);
    return entries;
  }

  /** One entry in one step (null: nothing there), or undefined when the sandbox lacks GNU find. */
  private async describeEntry(relative: string): Promise<VolumeEntry | null | undefined> {
    const step = await ShellStep.start(this.sandbox, this.call, `stat ${relative || '/'}`, this.scriptArgv('statEntry', relative), { seconds: this.callTimeoutSeconds });
    const output = step.output();
    const record = await nextRecord(nulFields(output)).catch((error: unknown) => {
      output.destroy();
      throw error;
    });
    const exitCode = await step.exit();
    if (exitCode === TOOLS_MISSING) return this.withoutGnuTools(undefined);
    if (exitCode === ABSENT) return null;
    if (exitCode !== 0) throw scriptError('stat', relative, exitCode, (await step.errorOutput()).text);
    if (!record || record.length === 1) throw new ProviderInvalidError('filesystem', `stat ${relative || '/'}: no description from the sandbox`);
    const { sha256: _none, ...entry } = entryOf(record, '', relative);
    return entry;
  }

  private withoutGnuTools<T>(answer: T): T {
    ModalVolumeBulk.markUnavailable(this.sandbox);
    return answer;
  }

  /** Entries of a directory (already checked); one deleted meanwhile simply has none. */
  private async entriesOf(relative: string): Promise<VolumeEntry[]> {
    const infos = await this.call('filesystem', `list ${relative || '/'}`, async () => {
      try {
        return await this.sandbox.filesystem.listFiles(this.absolute(relative));
      } catch (error) {
        if (isFilesystemError(error, 'NotFound')) return [];
        throw error;
      }
    });
    return infos.map((info) => toEntry(relative ? `${relative}/${info.name}` : info.name, info));
  }

  private async runScript(script: Script, relative: string, ...extra: string[]): Promise<void> {
    const result = await this.call('filesystem', `${script} ${relative || '/'}`, async () => {
      const step = await this.sandbox.exec(this.scriptArgv(script, relative, ...extra), { mode: 'binary' });
      const exitCode = await step.wait();
      return { exitCode, output: exitCode === 0 ? '' : await readTail(step.stderr, ERROR_OUTPUT_LIMIT) };
    });
    if (result.exitCode !== 0) throw scriptError(script, relative, result.exitCode, result.output);
  }

  private scriptArgv(script: Script, relative: string, ...extra: string[]): string[] {
    return ['sh', '-c', SCRIPTS[script], `volume-${script}`, this.root, relative, ...extra];
  }

  private async discard(upload: string): Promise<void> {
    await this.call('filesystem', 'upload cleanup', async () => {
      const removal = await this.sandbox.exec(['rm', '-f', '--', upload], { mode: 'binary' });
      await removal.wait();
    }).catch(() => undefined);
  }

  private absolute(relative: string): string {
    return relative ? `${this.root}/${relative}` : this.root;
  }
}

/** The path below the volume root, '/'-joined; refuses anything that could name a place outside. */
export function volumePath(path: string): string {
  if (path.includes('\0') || path.startsWith('/')) throw new PathOutsideVolumeError(path.replace(/\0/g, '\\0'));
  const segments = path.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new PathOutsideVolumeError(path);
  return segments.join('/');
}

function filePath(path: string): string {
  const relative = volumePath(path);
  if (relative === '') throw new ProviderInvalidError('filesystem', 'the volume root is a directory');
  return relative;
}

function toEntry(path: string, info: FileInfo): VolumeEntry {
  const type = info.type === 'file' || info.type === 'directory' || info.type === 'symlink' ? info.type : 'other';
  return {
    name: path.slice(path.lastIndexOf('/') + 1),
    path,
    type,
    size: info.size,
    mode: info.mode & 0o7777,
    modifiedAt: new Date(info.modifiedTime * 1000),
    ...(type === 'symlink' && info.symlinkTarget !== null ? { target: info.symlinkTarget } : {}),
  };
}

function isFilesystemError(error: unknown, kind: 'NotFound'): boolean {
  return (error as Error | null)?.name === `SandboxFilesystem${kind}Error`;
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8);
}

/** Copies the upload to a local file so memory stays bounded whatever its size; returns its length. */
async function spoolTo(content: Readable, file: string): Promise<number> {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(content, counter, createWriteStream(file, { mode: 0o600 }));
  return bytes;
}
