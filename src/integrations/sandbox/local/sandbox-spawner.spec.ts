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

async function eventually(check: () => boolean, attempts = 200): Promise<void> {
  for (let attempt = 0; attempt < attempts && !check(); attempt++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(check()).toBe(true);
}

/** The session id, from /proc/<pid>/stat (the fields after the command's closing parenthesis). */
function sessionOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3];
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

  it('kills what the supervisor ran when it dies, and starts a new supervisor for the next spawn', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'sleep 60'], { stdioCount: 3, detached: true });
    const supervisorPid = parentOf(child.pid);
    expect(supervisorPid).toBe(await spawner.supervisorPid());
    const ended = closed(child);

    process.kill(supervisorPid, 'SIGKILL');

    expect(await ended).toEqual([null, 'SIGKILL']);
    await eventually(() => !isAlive(child.pid));
    const next = await spawner.spawn('/bin/sh', ['-c', 'read -r _; echo again'], { stdioCount: 3 });
    expect(parentOf(next.pid)).not.toBe(supervisorPid);
    const stdout = collect(next.stdio[1]);
    next.stdio[0].end('\n');
    expect(await closed(next)).toEqual([0, null]);
    expect(stdout()).toBe('again\n');
  });

  it('runs its children from a supervisor that is not a child of this process and outlives its connection', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'exec sleep 60'], { stdioCount: 3 });
    const supervisorPid = parentOf(child.pid);
    expect(parentOf(supervisorPid)).not.toBe(process.pid);
    expect(sessionOf(supervisorPid)).not.toBe(sessionOf(process.pid));

    await spawner.close();

    expect(isAlive(supervisorPid)).toBe(true);
    const again = new SandboxSpawner(join(dir, 'spawner'), new InheritedFdShield([]));
    try {
      expect(await again.supervisorPid()).toBe(supervisorPid);
    } finally {
      await again.close();
    }
  });

  it('on close, kills every process it did not ask to keep and removes its stdio socket', async () => {
    const child = await spawner.spawn('/bin/sh', ['-c', 'exec sleep 60'], { stdioCount: 3 });
    const socketDir = join(dir, 'spawner');
    expect(statSync(socketDir).mode & 0o777).toBe(0o700);
    const stdioSockets = () => readdirSync(socketDir).filter((name) => /^\d+-[0-9a-f]+\.sock$/.test(name));
    expect(stdioSockets()).toHaveLength(1);
    expect(statSync(join(socketDir, stdioSockets()[0])).mode & 0o777).toBe(0o600);

    const ended = closed(child);

    await spawner.close();

    expect(await ended).toEqual([null, 'SIGKILL']);
    await eventually(() => !isAlive(child.pid));
    expect(stdioSockets()).toEqual([]);
    expect(existsSync(join(socketDir, 'supervisor.sock'))).toBe(true);
  });

  it('keeps a process beyond the connection, kills it at its deadline and records how it ended', async () => {
    const exitFile = join(dir, 'kept.exit');
    const child = await spawner.spawn('/bin/sh', ['-c', 'sleep 60 & wait'], { stdioCount: 3, detached: true });
    child.keep({ key: 'test', deadline: Date.now() + 1500, exitFile });

    await spawner.close();

    expect(isAlive(child.pid)).toBe(true);
    await eventually(() => existsSync(exitFile), 400);
    expect(JSON.parse(readFileSync(exitFile, 'utf8'))).toMatchObject({ code: null, signal: 'SIGKILL', reason: 'deadline' });
    await eventually(() => !isAlive(child.pid));
  });

  it('records the exit code of a kept process that ends by itself', async () => {
    const exitFile = join(dir, 'kept.exit');
    const child = await spawner.spawn('/bin/sh', ['-c', 'read -r _; exit 7'], { stdioCount: 3 });
    child.keep({ key: 'test', deadline: Date.now() + 60_000, exitFile });
    child.stdio[0].end('\n');

    expect(await closed(child)).toEqual([7, null]);
    await eventually(() => existsSync(exitFile));
    expect(JSON.parse(readFileSync(exitFile, 'utf8'))).toMatchObject({ code: 7, signal: null, reason: 'exited' });
  });
});
