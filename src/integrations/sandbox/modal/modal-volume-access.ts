import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FileInfo } from 'modal';
import type { DomainError } from '../../../common/domain-error';
import type { VolumeAccess, VolumeEntry } from '../sandbox-provider';
import {
  PathOutsideVolumeError,
  ProviderConflictError,
  ProviderFailureError,
  ProviderInvalidError,
  VolumePathNotFoundError,
} from '../sandbox-provider.errors';
import type { ModalSandboxLike } from './modal-client';
import type { ModalCall } from './modal-errors';
import { bytesReadable, readNonEmpty, readTail } from './modal-streams';

/**
 * Shell helpers run inside the sandbox (POSIX sh, readlink -f: present in Debian and busybox
 * images). $1 is the volume root, $2 the path below it. Exit codes: 40 the path resolves outside
 * the volume, 41 not a regular file, 42 not found, 43 not a directory, 44 is a directory.
 */
const PRELUDE = `
root=$1 rel=$2
p=$root/$rel
[ -d "$root" ] || exit 42
realroot=$(readlink -f -- "$root") || exit 42
inside() { r=$(readlink -f -- "$1") || exit 40; case $r in "$realroot"|"$realroot"/*) return 0;; esac; exit 40; }
guard() { d=$1; while [ ! -e "$d" ]; do d=\${d%/*}; [ -n "$d" ] || exit 42; done; inside "$d"; }
`;
const SCRIPTS = {
  read: `${PRELUDE}[ -e "$p" ] || exit 42; inside "$p"; [ -f "$p" ] || exit 41; exec cat -- "$p"`,
  list: `${PRELUDE}[ -e "$p" ] || exit 42; inside "$p"; [ -d "$p" ] || exit 43`,
  parent: `${PRELUDE}guard "\${p%/*}"`,
  write: `${PRELUDE}tmp=$3 mode=$4
trap 'rm -f -- "$tmp"' EXIT
guard "\${p%/*}"
if [ -d "$p" ]; then exit 44; fi
mkdir -p -- "\${p%/*}" || exit 43
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
 * A Modal volume as seen from a running sandbox that mounts it at `root`. Listing, stat and
 * uploads go through sandbox.filesystem; reads stream through `cat` (bounded memory, and no
 * read-size limit as with filesystem.readBytes); renames, links and permission changes, which
 * sandbox.filesystem lacks, run as small shell steps. Before following a path, the shell steps
 * resolve it and refuse anything whose real location is outside the volume.
 */
export class ModalVolumeAccess implements VolumeAccess {
  constructor(
    private readonly sandbox: ModalSandboxLike,
    private readonly root: string,
    private readonly call: ModalCall,
    private readonly callTimeoutSeconds: number,
    private readonly spoolDir: string = tmpdir(),
  ) {}

  async list(dir: string): Promise<VolumeEntry[]> {
    const relative = volumePath(dir);
    await this.runScript('list', relative);
    return this.entriesOf(relative);
  }

  async stat(path: string): Promise<VolumeEntry | null> {
    const relative = volumePath(path);
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
    try {
      const bytes = await spoolTo(content, join(spool, 'content'));
      const seconds = this.callTimeoutSeconds + Math.ceil(bytes / UPLOAD_BYTES_PER_EXTRA_SECOND);
      await this.call('filesystem', `upload ${relative}`, () => this.sandbox.filesystem.copyFromLocal(join(spool, 'content'), upload), seconds);
      await this.runScript('write', relative, upload, mode === undefined ? '' : octal(mode));
      return { bytes };
    } catch (error) {
      await this.discard(upload);
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

function scriptError(script: Script, relative: string, exitCode: number, output: string): DomainError {
  switch (exitCode) {
    case 40:
      return new PathOutsideVolumeError(relative);
    case 41:
      return new ProviderInvalidError('filesystem', `not a regular file: ${relative}`);
    case 42:
      return new VolumePathNotFoundError(relative);
    case 43:
      return new ProviderConflictError('filesystem', `not a directory: ${relative}`);
    case 44:
      return new ProviderConflictError('filesystem', `is a directory: ${relative}`);
    default:
      return new ProviderFailureError('filesystem', `${script} ${relative} failed (exit ${exitCode}): ${output.trim()}`);
  }
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
