/**
 * Snapshot engine throughput against plain PutObject/GetObject of the same bytes on the same s3rver,
 * and the time to re-snapshot an unchanged workspace of many small files.
 * Build with `npm run build`, run with `node dist/bench/snapshot.bench.js [--quick]`.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LocalVolumeAccess } from '../src/integrations/sandbox/local/local-volume-access';
import { S3ObjectStore } from '../src/integrations/storage/s3-object-store';
import { SnapshotEngine } from '../src/modules/snapshots/snapshot-engine';
import type { SnapshotLocation } from '../src/modules/snapshots/snapshot.types';
import { S3TestServer } from '../test/support/s3-server';

const BUCKET = 'bench';
const MIB = 1024 ** 2;
/** The engine moves files above 1 MiB this many at a time; the raw baseline gets the same parallelism. */
const PARALLEL = 4;

interface Workload {
  mediumFiles: number;
  mediumFileBytes: number;
  largeFileBytes: number;
  smallFiles: number;
  smallFileBytes: number;
}

const FULL: Workload = { mediumFiles: 32, mediumFileBytes: 2 * MIB, largeFileBytes: 64 * MIB, smallFiles: 10_000, smallFileBytes: 1024 };
const QUICK: Workload = { mediumFiles: 8, mediumFileBytes: 2 * MIB, largeFileBytes: 16 * MIB, smallFiles: 1_000, smallFileBytes: 1024 };

interface Row {
  measure: string;
  seconds: number;
  detail: string;
}

async function timed<T>(action: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const started = process.hrtime.bigint();
  const result = await action();
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, result };
}

async function inParallel<T>(items: T[], action: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < items.length) await action(items[next++]);
  }));
}

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let written = 0; written < bytes; written += MIB) yield randomBytes(Math.min(MIB, bytes - written));
  }
  await pipeline(chunks(), createWriteStream(path));
}

async function createThroughputWorkspace(dir: string, workload: Workload): Promise<{ files: { path: string; size: number }[]; bytes: number }> {
  await mkdir(join(dir, 'src'), { recursive: true });
  const files = Array.from({ length: workload.mediumFiles }, (_, index) => ({ path: `src/module-${index}.bin`, size: workload.mediumFileBytes }));
  files.push({ path: 'dataset.bin', size: workload.largeFileBytes });
  for (const file of files) await writeRandomFile(join(dir, file.path), file.size);
  return { files, bytes: files.reduce((total, file) => total + file.size, 0) };
}

async function createManyFilesWorkspace(dir: string, workload: Workload): Promise<void> {
  const perDirectory = 100;
  for (let index = 0; index < workload.smallFiles; index += 1) {
    const directory = join(dir, `pkg-${Math.floor(index / perDirectory)}`);
    if (index % perDirectory === 0) await mkdir(directory, { recursive: true });
    await writeFile(join(directory, `file-${index}.txt`), randomBytes(workload.smallFileBytes / 2).toString('hex'));
  }
}

async function rawPut(client: S3Client, dir: string, files: { path: string; size: number }[]): Promise<void> {
  await inParallel(files, (file) =>
    client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `raw/${file.path}`, Body: createReadStream(join(dir, file.path)), ContentLength: file.size })),
  );
}

async function rawGet(client: S3Client, dir: string, files: { path: string; size: number }[]): Promise<void> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await inParallel(files, async (file) => {
    const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `raw/${file.path}` }));
    await pipeline(response.Body as Readable, createWriteStream(join(dir, file.path)));
  });
}

function throughput(bytes: number, seconds: number): string {
  return `${(bytes / MIB / seconds).toFixed(1)} MiB/s`;
}

function table(rows: Row[]): string {
  const lines = ['| measure | seconds | detail |', '| --- | ---: | --- |'];
  for (const row of rows) lines.push(`| ${row.measure} | ${row.seconds.toFixed(2)} | ${row.detail} |`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  Logger.overrideLogger(['warn', 'error']);
  const workload = process.argv.includes('--quick') ? QUICK : FULL;
  const base = await mkdtemp(join(tmpdir(), 'snapshot-bench-'));
  const server = await S3TestServer.start([BUCKET]);
  const store = new S3ObjectStore(server.settings);
  const client = new S3Client({ ...server.settings, credentials: { accessKeyId: S3TestServer.accessKeyId, secretAccessKey: S3TestServer.secretAccessKey } });
  const engine = new SnapshotEngine(store);
  const location = (accountId: string): SnapshotLocation => ({ bucket: BUCKET, keyPrefix: 'bench/', accountId });
  try {
    const workspace = join(base, 'workspace');
    const { files, bytes } = await createThroughputWorkspace(workspace, workload);
    const put = await timed(() => rawPut(client, workspace, files));
    const snapshot = await timed(() => engine.snapshot(new LocalVolumeAccess(workspace), location('throughput')));
    const get = await timed(() => rawGet(client, join(base, 'raw-get'), files));
    await mkdir(join(base, 'restored'));
    const restore = await timed(() => engine.restore(new LocalVolumeAccess(join(base, 'restored')), location('throughput')));

    const manyFiles = join(base, 'many-files');
    await createManyFilesWorkspace(manyFiles, workload);
    const first = await timed(() => engine.snapshot(new LocalVolumeAccess(manyFiles), location('many-files')));
    const again = await timed(() => engine.snapshot(new LocalVolumeAccess(manyFiles), location('many-files')));

    const mib = `${(bytes / MIB).toFixed(0)} MiB in ${files.length} files`;
    console.log(`\n### Snapshot engine on s3rver (${mib}; ${workload.smallFiles} small files; ${PARALLEL} in parallel)\n`);
    console.log(
      table([
        { measure: 'raw PutObject', seconds: put.seconds, detail: `${throughput(bytes, put.seconds)} (${mib})` },
        { measure: 'snapshot', seconds: snapshot.seconds, detail: `${throughput(bytes, snapshot.seconds)}; ratio to raw put ${(put.seconds / snapshot.seconds).toFixed(2)}` },
        { measure: 'raw GetObject', seconds: get.seconds, detail: throughput(bytes, get.seconds) },
        { measure: 'restore', seconds: restore.seconds, detail: `${throughput(bytes, restore.seconds)}; ratio to raw get ${(get.seconds / restore.seconds).toFixed(2)}` },
        { measure: `first snapshot, ${workload.smallFiles} files`, seconds: first.seconds, detail: `${first.result.bytes_uploaded} bytes uploaded` },
        {
          measure: `re-snapshot unchanged, ${workload.smallFiles} files`,
          seconds: again.seconds,
          detail: `${again.result.bytes_uploaded} bytes uploaded, ${again.result.files_copied} copied in the store`,
        },
      ]),
    );
  } finally {
    client.destroy();
    store.onModuleDestroy();
    await server.dispose();
    await rm(base, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
