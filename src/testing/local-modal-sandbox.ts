import { SandboxFilesystemNotFoundError, type FileInfo } from 'modal';
import { spawn } from 'node:child_process';
import { copyFile, lstat, mkdir, readdir, readlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { Logger } from '@nestjs/common';
import type { ModalProcessLike, ModalSandboxLike } from '../integrations/sandbox/modal/modal-client';
import { type ModalCall, withDeadline } from '../integrations/sandbox/modal/modal-errors';
import { ModalVolumeAccess } from '../integrations/sandbox/modal/modal-volume-access';

/**
 * A Modal volume access whose sandbox is this machine: exec runs the volume's shell steps with the
 * local sh, filesystem calls answer from the local disk (links reported, never followed). For specs
 * of code that reads volumes, so they run against the Modal engine's access as well as the local one.
 */
export function modalVolumeOnLocalDisk(root: string, spoolDir: string, sandbox: ModalSandboxLike = localSandbox()): ModalVolumeAccess {
  const logger = new Logger('modal-volume-on-local-disk');
  const call: ModalCall = (step, what, work, seconds = 5) => withDeadline(step, what, seconds, logger, work);
  return new ModalVolumeAccess(sandbox, root, call, 5, spoolDir);
}

/**
 * A stand-in Modal sandbox that runs exec locally with this machine's sh and answers filesystem
 * calls from the local disk, so the shell steps of the volume access are exercised for real.
 * `execs` counts the exec calls (each is a round trip on Modal); `onExec` may replace a process.
 */
export function localSandbox(options: { onExec?: (argv: string[], run: () => ModalProcessLike) => ModalProcessLike } = {}): ModalSandboxLike & { execs: string[][] } {
  const execs: string[][] = [];
  return {
    sandboxId: 'sb-local',
    execs,
    detach: () => undefined,
    terminate: async () => undefined,
    exec: async (argv) => {
      execs.push(argv);
      return options.onExec ? options.onExec(argv, () => runLocally(argv)) : runLocally(argv);
    },
    filesystem: {
      listFiles: async (path) => {
        const names = (await readdir(path).catch(notFound(path))).sort();
        return Promise.all(names.map((name) => fileInfo(join(path, name))));
      },
      stat: (path) => fileInfo(path),
      copyFromLocal: async (local, remote) => {
        await mkdir(dirname(remote), { recursive: true });
        await copyFile(local, remote);
      },
    },
  };
}

/** Like Modal, stdin stays open until the caller closes it; input after the process ended is dropped. */
function runLocally(argv: string[]): ModalProcessLike {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const exit = new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? 128 + (signal ? 9 : 0))));
  child.stdin.on('error', () => undefined);
  return {
    stdin: Writable.toWeb(child.stdin) as WritableStream<Uint8Array>,
    stdout: Readable.toWeb(child.stdout) as ReadableStream<Uint8Array>,
    stderr: Readable.toWeb(child.stderr) as ReadableStream<Uint8Array>,
    wait: () => exit,
  };
}

async function fileInfo(path: string): Promise<FileInfo> {
  const stats = await lstat(path).catch(notFound(path));
  const type = stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'directory' : 'file';
  return {
    name: basename(path),
    path,
    type,
    size: stats.size,
    mode: stats.mode,
    permissions: '',
    owner: '',
    group: '',
    modifiedTime: Math.floor(stats.mtimeMs / 1000),
    symlinkTarget: type === 'symlink' ? await readlink(path) : null,
  };
}

function notFound(path: string) {
  return (error: NodeJS.ErrnoException): never => {
    throw error.code === 'ENOENT' ? new SandboxFilesystemNotFoundError(`No such file or directory: ${path}`) : error;
  };
}
