/**
 * Snapshots and restores on the Modal engine, against the fake Modal control plane
 * (../shared/fake-modal: real SDK, real processes in bubblewrap, volumes as host folders): execs per
 * operation, counted in the fake's call log, for a small and a large workspace, and throughput
 * against raw PutObject/GetObject of the same bytes on the same s3rver in the same run.
 * Build with `npx tsc -p tsconfig.json`, run as root with `node dist/bench/modal-snapshot.bench.js [--quick]`.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Logger } from '@nestjs/common';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ModalClient } from 'modal';
import type { VolumeAccess } from '../src/integrations/sandbox/sandbox-provider';
import type { ModalSandboxLike } from '../src/integrations/sandbox/modal/modal-client';
import { type ModalCall, withDeadline } from '../src/integrations/sandbox/modal/modal-errors';
import { ModalVolumeAccess } from '../src/integrations/sandbox/modal/modal-volume-access';
import { S3ObjectStore } from '../src/integrations/storage/s3-object-store';
import { SnapshotEngine } from '../src/modules/snapshots/snapshot-engine';
import type { SnapshotLocation } from '../src/modules/snapshots/snapshot.types';
import { S3TestServer } from '../test/support/s3-server';

const BUCKET = 'bench';
const KIB = 1024;
const MIB = 1024 ** 2;
const FAKE_SERVER = resolve(__dirname, '../../../shared/fake-modal/server.mjs');
const NODE_MODULES = resolve(__dirname, '../../node_modules');
/** Raw requests in flight for the baseline: as many as the engine moves small files at once. */
const RAW_PARALLEL = 16;

interface Workload {
  name: string;
  smallFiles: number;
  smallFileBytes: number;
  largeFiles: number;
  largeFileBytes: number;
}

/** 1,000 files, 100 MiB: mostly small files, and a few large ones that take the streamed path. */
const LARGE: Workload = { name: '1,000 files, 100 MiB', smallFiles: 990, smallFileBytes: 64 * KIB, largeFiles: 10, largeFileBytes: Math.round(3.81 * MIB) };
const SMALL: Workload = { name: '100 files, 10 MiB', smallFiles: 99, smallFileBytes: 64 * KIB, largeFiles: 1, largeFileBytes: Math.round(3.81 * MIB) };
const QUICK_LARGE: Workload = { ...LARGE, name: '300 files, 30 MiB', smallFiles: 297, largeFiles: 3 };

interface FakeModal {
  child: ChildProcess;
  port: number;
  adminPort: number;
}

interface Files {
  files: { path: string; size: number }[];
  bytes: number;
}

async function startFakeModal(state: string): Promise<FakeModal> {
  const env = { ...process.env, MODAL_SDK_NODE_MODULES: NODE_MODULES, FAKE_MODAL_STATE: state };
  const child = spawn(process.execPath, [FAKE_SERVER], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  await new Promise<void>((done, fail) => {
    child.once('exit', (code) => fail(new Error(`fake Modal exited with ${code}`)));
    child.stdout!.on('data', (chunk) => {
      text += chunk;
      if (/FAKE_MODAL_ADMIN_PORT=\d+/.test(text)) done();
    });
  });
  return { child, port: Number(/FAKE_MODAL_PORT=(\d+)/.exec(text)![1]), adminPort: Number(/FAKE_MODAL_ADMIN_PORT=(\d+)/.exec(text)![1]) };
}

/** RPCs the fake served since `since`, by method. */
async function callsSince(fake: FakeModal, since: number): Promise<{ seq: number; execs: number; stdinWrites: number }> {
  const calls = (await (await fetch(`http://127.0.0.1:${fake.adminPort}/calls?since=${since}`)).json()) as { seq: number; method: string }[];
  const count = (pattern: RegExp) => calls.filter((call) => pattern.test(call.method)).length;
  return { seq: Math.max(since, ...calls.map((call) => call.seq)), execs: count(/TaskExecStart$/), stdinWrites: count(/TaskExecStdinWrite(Stream)?$/) };
}

async function seqOf(fake: FakeModal): Promise<number> {
  return ((await (await fetch(`http://127.0.0.1:${fake.adminPort}/seq`)).json()) as { seq: number }).seq;
}

async function writeWorkspace(dir: string, workload: Workload): Promise<Files> {
  const files: { path: string; size: number }[] = [];
  for (let index = 0; index < workload.smallFiles; index += 1) files.push({ path: `pkg-${Math.floor(index / 100)}/file-${index}.bin`, size: workload.smallFileBytes });
  for (let index = 0; index < workload.largeFiles; index += 1) files.push({ path: `data/large-${index}.bin`, size: workload.largeFileBytes });
  for (const file of files) {
    await mkdir(dirname(join(dir, file.path)), { recursive: true });
    await writeFile(join(dir, file.path), randomBytes(file.size));
  }
  return { files, bytes: files.reduce((total, file) => total + file.size, 0) };
}

async function inParallel<T>(items: T[], action: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: RAW_PARALLEL }, async () => {
    while (next < items.length) await action(items[next++]);
  }));
}

async function timed<T>(action: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const started = process.hrtime.bigint();
  const result = await action();
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, result };
}

function throughput(bytes: number, seconds: number): string {
  return `${(bytes / MIB / seconds).toFixed(1)} MiB/s`;
}

/** The same volume without its bulk steps: one exec per entry, as every snapshot and restore ran before. */
function perEntry(volume: VolumeAccess): VolumeAccess {
  return Object.assign(Object.create(volume) as VolumeAccess, { bulk: undefined });
}

interface Row {
  measure: string;
  execs: number;
  stdinWrites: number;
  seconds: number;
  detail: string;
}

function table(rows: Row[]): string {
  const lines = ['| operation | execs | stdin writes | seconds | detail |', '| --- | ---: | ---: | ---: | --- |'];
  for (const row of rows) lines.push(`| ${row.measure} | ${row.execs} | ${row.stdinWrites} | ${row.seconds.toFixed(2)} | ${row.detail} |`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  Logger.overrideLogger(['warn', 'error']);
  const quick = process.argv.includes('--quick');
  const base = await mkdtemp(join(tmpdir(), 'modal-snapshot-bench-'));
  const state = join(base, 'fake-modal');
  const fake = await startFakeModal(state);
  // The SDK reads its server address from the process environment.
  process.env.MODAL_SERVER_URL = `http://127.0.0.1:${fake.port}`;
  const modal = new ModalClient({ tokenId: 'ak-test', tokenSecret: 'as-test' });
  const server = await S3TestServer.start([BUCKET]);
  const store = new S3ObjectStore(server.settings);
  const client = new S3Client({ ...server.settings, credentials: { accessKeyId: S3TestServer.accessKeyId, secretAccessKey: S3TestServer.secretAccessKey } });
  const engine = new SnapshotEngine(store);
  const logger = new Logger('modal-snapshot-bench');
  const call: ModalCall = (step, what, work, seconds = 60) => withDeadline(step, what, seconds, logger, work);
  let sandbox: ModalSandboxLike | undefined;
  try {
    const app = await modal.apps.fromName('bench-modal-snapshot', { createIfMissing: true });
    const mounts: Record<string, Awaited<ReturnType<typeof modal.volumes.fromName>>> = {};
    for (const name of ['small', 'large', 'small-restored', 'small-restored-per-entry', 'large-restored', 'large-restored-per-entry']) {
      mounts[`/mnt/${name}`] = await modal.volumes.fromName(`bench-${name}`, { createIfMissing: true });
    }
    sandbox = await modal.sandboxes.create(app, modal.images.fromRegistry('debian:bookworm-slim'), { volumes: mounts, timeoutMs: 3600_000 });
    const volume = (name: string) => new ModalVolumeAccess(sandbox!, `/mnt/${name}`, call, 60, base);
    const location = (accountId: string): SnapshotLocation => ({ bucket: BUCKET, keyPrefix: 'bench/', accountId });
    const measure = async (label: string, action: () => Promise<string>): Promise<Row> => {
      const since = await seqOf(fake);
      const { seconds, result } = await timed(action);
      const { execs, stdinWrites } = await callsSince(fake, since);
      return { measure: label, execs, stdinWrites, seconds, detail: result };
    };

    const rows: Row[] = [];
    const sizes: [string, Workload][] = [['small', SMALL], ['large', quick ? QUICK_LARGE : LARGE]];
    for (const [name, workload] of sizes) {
      const workspace = await writeWorkspace(join(state, 'volumes', `bench-${name}`), workload);
      const mib = (workspace.bytes / MIB).toFixed(1);
      rows.push(
        await measure(`raw PutObject, ${workload.name}`, async () => {
          const dir = join(state, 'volumes', `bench-${name}`);
          await inParallel(workspace.files, (file) =>
            client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `raw/${name}/${file.path}`, Body: createReadStream(join(dir, file.path)), ContentLength: file.size })),
          );
          return `${mib} MiB, ${RAW_PARALLEL} in parallel`;
        }),
      );
      const putSeconds = rows[rows.length - 1].seconds;
      const snapshot = await measure(`snapshot, ${workload.name}`, async () => {
        const stats = await engine.snapshot(volume(name), location(name));
        return `${stats.files} files, ${(stats.bytes_uploaded / MIB).toFixed(1)} MiB uploaded`;
      });
      snapshot.detail += `; ${throughput(workspace.bytes, snapshot.seconds)}, ${(putSeconds / snapshot.seconds).toFixed(2)} of raw put`;
      rows.push(snapshot);
      rows.push(
        await measure(`re-snapshot, 1 file changed, ${workload.name}`, async () => {
          await writeFile(join(state, 'volumes', `bench-${name}`, workspace.files[0].path), randomBytes(workload.smallFileBytes));
          const stats = await engine.snapshot(volume(name), location(name));
          return `${stats.files_copied} copied in the store, ${(stats.bytes_uploaded / KIB).toFixed(0)} KiB uploaded`;
        }),
      );
      rows.push(
        await measure(`raw GetObject, ${workload.name}`, async () => {
          const dir = join(base, `raw-get-${name}`);
          await inParallel(workspace.files, async (file) => {
            const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `raw/${name}/${file.path}` }));
            await mkdir(dirname(join(dir, file.path)), { recursive: true });
            await pipeline(response.Body as Readable, createWriteStream(join(dir, file.path)));
          });
          return `${mib} MiB, ${RAW_PARALLEL} in parallel`;
        }),
      );
      const getSeconds = rows[rows.length - 1].seconds;
      const restore = await measure(`restore, ${workload.name}`, async () => {
        const stats = await engine.restore(volume(`${name}-restored`), location(name));
        return `${stats!.files} files, ${stats!.directories} directories`;
      });
      restore.detail += `; ${throughput(workspace.bytes, restore.seconds)}, ${(getSeconds / restore.seconds).toFixed(2)} of raw get`;
      rows.push(restore);
      if (name === 'small' || !quick) {
        const perEntrySnapshot = await measure(`snapshot one exec per entry (before), ${workload.name}`, async () => {
          const stats = await engine.snapshot(perEntry(volume(name)), location(`${name}-per-entry`));
          return `${stats.files} files`;
        });
        perEntrySnapshot.detail += `; ${throughput(workspace.bytes, perEntrySnapshot.seconds)}`;
        rows.push(perEntrySnapshot);
        const perEntryRestore = await measure(`restore one exec per entry (before), ${workload.name}`, async () => {
          const stats = await engine.restore(perEntry(volume(`${name}-restored-per-entry`)), location(name));
          return `${stats!.files} files`;
        });
        perEntryRestore.detail += `; ${throughput(workspace.bytes, perEntryRestore.seconds)}`;
        rows.push(perEntryRestore);
      }
    }
    console.log(`\n### Snapshots on the Modal engine (fake Modal control plane, s3rver)\n`);
    console.log(table(rows));
  } finally {
    await sandbox?.terminate().catch(() => undefined);
    modal.close();
    client.destroy();
    store.onModuleDestroy();
    await server.dispose();
    fake.child.kill();
    delete process.env.MODAL_SERVER_URL;
    await rm(base, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
