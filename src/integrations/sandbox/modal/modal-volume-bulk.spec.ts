import { Logger } from '@nestjs/common';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import type { BulkFile } from '../sandbox-provider';
import { ProviderInvalidError } from '../sandbox-provider.errors';
import { localSandbox } from '../../../testing/local-modal-sandbox';
import type { ModalProcessLike } from './modal-client';
import { withDeadline, type ModalCall } from './modal-errors';
import { ModalVolumeAccess } from './modal-volume-access';
import { byteStream, fakeSandbox } from './testing/fake-modal';

const logger = new Logger('test');
const call: ModalCall = (step, what, work, seconds = 5) => withDeadline(step, what, seconds, logger, work);

async function tarOf(entries: { name: string; type?: 'file' | 'fifo' | 'symlink'; content?: string }[]): Promise<Buffer> {
  const archive = tar.pack();
  for (const entry of entries) {
    if (entry.type && entry.type !== 'file') archive.entry({ name: entry.name, type: entry.type, linkname: entry.type === 'symlink' ? 'x' : undefined });
    else archive.entry({ name: entry.name }, entry.content ?? '');
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Rewrites the size field of the first header (octal at 124) and its checksum (at 148). */
function withDeclaredSize(archive: Buffer, size: number): Buffer {
  const patched = Buffer.from(archive);
  patched.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  patched.fill(' ', 148, 156);
  let sum = 0;
  for (let index = 0; index < 512; index += 1) sum += patched[index];
  patched.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return patched;
}

/** A process that prints the ready line and then this archive, swallowing its stdin. */
function tarProcess(archive: Buffer, exitCode = 0): ModalProcessLike {
  const chunks: Uint8Array[] = [Buffer.from('ready\n')];
  for (let offset = 0; offset < archive.length; offset += 4096) chunks.push(archive.subarray(offset, offset + 4096));
  return {
    stdin: new WritableStream<Uint8Array>(),
    stdout: byteStream(chunks),
    stderr: byteStream(),
    wait: async () => exitCode,
  };
}

async function readAll(content: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of content) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

describe('ModalVolumeBulk, reading files from a hostile sandbox', () => {
  async function readFrom(archive: Buffer, paths: string[], exitCode = 0) {
    const sandbox = fakeSandbox('sb-1');
    sandbox.exec.mockResolvedValueOnce(tarProcess(archive, exitCode));
    const volume = new ModalVolumeAccess(sandbox, '/workspace', call, 5);
    const received: { path: string; size: number; text?: string; error?: string }[] = [];
    const receive = async (file: BulkFile) => {
      const text = await readAll(file.content).catch((error: Error) => ({ error: error.message }));
      received.push(typeof text === 'string' ? { path: file.path, size: file.size, text } : { path: file.path, size: file.size, ...text });
    };
    const outcome = await volume.bulk.readFiles(paths.map((path) => ({ path, size: 1 })), receive).catch((error: unknown) => error);
    return { outcome, received, argv: sandbox.exec.mock.calls[0][0] };
  }

  it('delivers the requested files, and answers the ones it did not deliver', async () => {
    const { outcome, received, argv } = await readFrom(await tarOf([{ name: './a.txt', content: 'alpha' }, { name: './d/b.txt', content: 'bravo' }]), ['a.txt', 'd/b.txt', 'gone.txt']);

    expect(outcome).toEqual({ unread: ['gone.txt'] });
    expect(received).toEqual([
      { path: 'a.txt', size: 5, text: 'alpha' },
      { path: 'd/b.txt', size: 5, text: 'bravo' },
    ]);
    expect(argv.slice(3)).toEqual(['volume-readFiles', '/workspace', '']);
  });

  it.each(['./../x', '../x', '/etc/passwd', './a/../../x'])('refuses an entry named %j', async (name) => {
    const { outcome, received } = await readFrom(await tarOf([{ name, content: 'planted' }]), ['x']);

    expect(outcome).toBeInstanceOf(ProviderInvalidError);
    expect(received).toEqual([]);
  });

  it('skips entries not asked for, repeated, or of another type (they count as not delivered)', async () => {
    const archive = await tarOf([
      { name: './fifo', type: 'fifo' },
      { name: './link', type: 'symlink' },
      { name: './extra.txt', content: 'not asked for' },
      { name: './a.txt', content: 'first' },
      { name: './a.txt', content: 'second' },
    ]);
    const { outcome, received } = await readFrom(archive, ['fifo', 'link', 'a.txt']);

    expect(outcome).toEqual({ unread: ['fifo', 'link'] });
    expect(received).toEqual([{ path: 'a.txt', size: 5, text: 'first' }]);
  });

  it('streams an entry whose declared size is huge without holding it, and fails the read when the data ends', async () => {
    const archive = withDeclaredSize(await tarOf([{ name: './a.txt', content: 'x'.repeat(2048) }]), 8 * 1024 ** 3 - 1);
    const before = process.memoryUsage().arrayBuffers;

    const { outcome, received } = await readFrom(archive, ['a.txt']);

    expect(received).toEqual([{ path: 'a.txt', size: 8 * 1024 ** 3 - 1, error: expect.any(String) }]);
    expect(outcome).toBeInstanceOf(Error);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 ** 2);
  });

  it('doubts the files tar complained about when it failed', async () => {
    const sandbox = fakeSandbox('sb-1');
    const archive = await tarOf([{ name: './a.txt', content: 'alpha' }, { name: './b.txt', content: 'br\0\0\0' }]);
    sandbox.exec.mockResolvedValueOnce({ ...tarProcess(archive, 1), stderr: byteStream([Buffer.from('tar: ./b.txt: File shrank by 3 bytes; padding with zeros\n')]) });
    const volume = new ModalVolumeAccess(sandbox, '/workspace', call, 5);

    const outcome = await volume.bulk.readFiles([{ path: 'a.txt', size: 5 }, { path: 'b.txt', size: 5 }], async (file) => void (await readAll(file.content)));

    expect(outcome).toEqual({ unread: ['b.txt'] });
  });
});

describe('ModalVolumeBulk against a real shell, tar and disk', () => {
  let base: string;
  let root: string;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'modal-bulk-'));
    root = join(base, 'workspace');
    await mkdir(join(root, 'src'), { recursive: true });
  });
  afterEach(() => rm(base, { recursive: true, force: true }));

  it('inventories the volume in one exec, with the digest of every regular file and odd names intact', async () => {
    await writeFile(join(root, 'src/a.txt'), 'alpha');
    await writeFile(join(root, '-dash\nnewline.txt'), '');
    const sandbox = localSandbox();
    const volume = new ModalVolumeAccess(sandbox, root, call, 5, base);

    const entries = await volume.bulk.inventory();

    expect(entries?.map((entry) => [entry.path, entry.type, entry.size, entry.sha256]).sort()).toEqual([
      ['-dash\nnewline.txt', 'file', 0, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
      ['src', 'directory', expect.any(Number), undefined],
      ['src/a.txt', 'file', 5, '8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8'],
    ]);
    expect(sandbox.execs).toHaveLength(1);

    const received: string[] = [];
    const read = await volume.bulk.readFiles([{ path: 'src/a.txt', size: 5 }, { path: '-dash\nnewline.txt', size: 0 }], async (file) => {
      received.push(`${file.path}=${await readAll(file.content)}`);
    });
    expect(read).toEqual({ unread: [] });
    expect(received.sort()).toEqual(['-dash\nnewline.txt=', 'src/a.txt=alpha']);
    expect(sandbox.execs).toHaveLength(2);
  });

  it('answers null, without consuming anything, where the tools are missing', async () => {
    const sandbox = localSandbox({ onExec: (argv, run) => run() && { stdin: new WritableStream(), stdout: byteStream(), stderr: byteStream(), wait: async () => 127 } });
    const volume = new ModalVolumeAccess(sandbox, root, call, 5, base);
    const open = jest.fn();

    await expect(volume.bulk.writeTree({ directories: [], files: [{ path: 'a', mode: 0o644, size: 0, sha256: '', open }], symlinks: [] })).resolves.toBeNull();
    await expect(volume.bulk.inventory()).resolves.toBeNull();
    expect(open).not.toHaveBeenCalled();
    expect(sandbox.execs).toHaveLength(1);
  });
});
