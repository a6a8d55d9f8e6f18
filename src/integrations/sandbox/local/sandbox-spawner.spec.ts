import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Logger } from '@nestjs/common';
import { ProviderFailureError } from '../sandbox-provider.errors';
import { InheritedFdShield } from './inherited-fds';
import { SandboxSpawner, type SpawnedProcess } from './sandbox-spawner';

function collect(stream: Readable): () => string {
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return () => text;
}

function closed(child: SpawnedProcess): Promise<[number | null, NodeJS.Signals | null]> {
  return new Promise((resolve) => child.once('close', (code, signal) => resolve([code, signal])));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function eventually(check: () => boolean): Promise<void> {
  for (let attempt = 0; attempt < 200 && !check(); attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(check()).toBe(true);
}

function parentOf(pid: number): number {
  return Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

describe('SandboxSpawner', () => {
  let dir: string;
  let spawner: SandboxSpawner;

  beforeAll(() => Logger.overrideLogger(false));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'spawner-spec-'));
    spawner = new SandboxSpawner(join(dir, 'spawner'), new InheritedFdShield([]));
  });

  afterEach(async () => {
    await spawner.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs a process with stdin, stdout and stderr connected to this process and reports its exit code', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'read -r line; echo "got $line"; echo oops >&2; exit 3'], { stdioCount: 3 });
    const stdout = collect(child.stdio[1]);
    const stderr = collect(child.stdio[2]);
    child.stdio[0].end('hello\n');

    expect(await closed(child)).toEqual([3, null]);
    expect(stdout()).toBe('got hello\n');
    expect(stderr()).toBe('oops\n');
  });

  it('closes every one of many processes that exit at once without output (their outputs may end before they are handed over)', async () => {
    const exits = Array.from({ length: 40 }, async () => {
      const child = await spawner.spawn('/bin/true', [], { stdioCount: 3 });
      child.stdio[0].end();
      return closed(child);
    });

    expect(await Promise.all(exits)).toEqual(exits.map(() => [0, null]));
  });

  it('gives the process an empty environment and keeps no copy of its stdio, so closing stdin ends its input', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'cat >/dev/null; env'], { stdioCount: 3 });
    const stdout = collect(child.stdio[1]);
    child.stdio[0].end();

    expect(await closed(child)).toEqual([0, null]);
    expect(stdout().split('\n').filter((line) => line !== '' && !line.startsWith('PWD='))).toEqual([]);
  });

  it('streams output while the process runs', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'echo first; read -r _; echo second'], { stdioCount: 3 });
    const stdout = collect(child.stdio[1]);

    await eventually(() => stdout() === 'first\n');
    child.stdio[0].end('\n');
    expect(await closed(child)).toEqual([0, null]);
    expect(stdout()).toBe('first\nsecond\n');
  });

  it('kills the whole process group of a detached process', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'sleep 60 & echo $!; wait'], { stdioCount: 3, detached: true });
    const stdout = collect(child.stdio[1]);
    await eventually(() => stdout().endsWith('\n'));
    const background = Number(stdout());

    child.kill('SIGKILL');

    expect(await closed(child)).toEqual([null, 'SIGKILL']);
    await eventually(() => !isAlive(background));
  });

  it('rejects a spawn of a program that does not exist', async () => {
    await expect(spawner.spawn('/no/such/program', [], { stdioCount: 3 })).rejects.toBeInstanceOf(ProviderFailureError);
  });

  it('kills what the helper ran when the helper dies, and starts a new helper for the next spawn', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'sleep 60'], { stdioCount: 3, detached: true });
    const helperPid = parentOf(child.pid);
    const ended = closed(child);

    process.kill(helperPid, 'SIGKILL');

    expect(await ended).toEqual([null, 'SIGKILL']);
    await eventually(() => !isAlive(child.pid));
    const next = await spawner.spawn('/bin/sh', ['-c', 'read -r _; echo again'], { stdioCount: 3 });
    expect(parentOf(next.pid)).not.toBe(helperPid);
    const stdout = collect(next.stdio[1]);
    next.stdio[0].end('\n');
    expect(await closed(next)).toEqual([0, null]);
    expect(stdout()).toBe('again\n');
  });

  it('on close, kills every process still running and removes its socket', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'exec sleep 60'], { stdioCount: 3 });
    const socketDir = join(dir, 'spawner');
    expect(statSync(socketDir).mode & 0o777).toBe(0o700);
    expect(readdirSync(socketDir)).toHaveLength(1);
    expect(statSync(join(socketDir, readdirSync(socketDir)[0])).mode & 0o777).toBe(0o600);

    const ended = closed(child);

    await spawner.close();

    expect(await ended).toEqual([null, 'SIGKILL']);
    await eventually(() => !isAlive(child.pid));
    expect(readdirSync(socketDir)).toEqual([]);
    expect(existsSync(socketDir)).toBe(true);
  });
});
