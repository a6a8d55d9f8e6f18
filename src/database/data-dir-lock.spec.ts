import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirInUseError, DataDirLock, LOCK_FILE } from './data-dir-lock';

describe('DataDirLock', () => {
  let dataDir: string;
  const locks: DataDirLock[] = [];
  const children: ChildProcess[] = [];

  const acquire = (instanceId = 'spec-instance') => {
    const lock = DataDirLock.acquire(dataDir, instanceId);
    locks.push(lock);
    return lock;
  };
  const lockFile = () => join(dataDir, LOCK_FILE);

  /** Another process holding the lock as the service does (flock on an open file, its pid written in it), until killed. */
  async function holdInAnotherProcess(): Promise<ChildProcess> {
    const script = 'exec 3<>"$1" && flock --nonblock --exclusive 3 && printf \'{"pid":%s,"instance_id":"other"}\' $$ > "$1" && echo locked && exec sleep 60';
    mkdirSync(dataDir, { recursive: true });
    const child = spawn('/bin/sh', ['-c', script, 'sh', lockFile()], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const started = await Promise.race([once(child.stdout!, 'data').then(([chunk]) => String(chunk)), once(child, 'exit').then(([code]) => `exit ${code}`)]);
    expect(started).toBe('locked\n');
    return child;
  }

  async function kill9(child: ChildProcess): Promise<void> {
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  beforeEach(() => {
    dataDir = join(mkdtempSync(join(tmpdir(), 'mss-lock-spec-')), 'data');
  });
  afterEach(async () => {
    for (const lock of locks.splice(0)) lock.release();
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) await kill9(child);
    rmSync(join(dataDir, '..'), { recursive: true, force: true });
  });

  it('creates DATA_DIR, writes who holds it, and empties the file on release so the next holder finds it clean', () => {
    const lock = acquire('web-1');

    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(lockFile()).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(lockFile(), 'utf8'))).toEqual({ pid: process.pid, instance_id: 'web-1', hostname: expect.any(String), since: expect.any(String) });
    expect(lock.leftBy).toBeUndefined();

    lock.release();
    expect(lock.isHeld).toBe(false);
    expect(readFileSync(lockFile(), 'utf8')).toBe('');
    expect(acquire().leftBy).toBeUndefined();
  });

  it('refuses while another process holds it, naming DATA_DIR, its pid and DATABASE_URL, and leaves the file alone', async () => {
    const holder = await holdInAnotherProcess();
    const before = readFileSync(lockFile(), 'utf8');

    const refusal = (() => {
      try {
        acquire();
      } catch (error) {
        return error;
      }
    })();

    expect(refusal).toBeInstanceOf(DataDirInUseError);
    expect((refusal as DataDirInUseError).holder).toEqual({ pid: holder.pid, instance_id: 'other' });
    expect((refusal as Error).message).toContain(`DATA_DIR ${dataDir} is in use`);
    expect((refusal as Error).message).toContain(`pid ${holder.pid}, instance other`);
    expect((refusal as Error).message).toContain('DATABASE_URL');
    expect(readFileSync(lockFile(), 'utf8')).toBe(before);
  });

  it('recovers the lock a killed process left behind (kill -9), saying who left it', async () => {
    const holder = await holdInAnotherProcess();
    await kill9(holder);
    expect(existsSync(lockFile())).toBe(true);

    const lock = acquire('next');

    expect(lock.leftBy).toEqual({ pid: holder.pid, instance_id: 'other' });
    expect(JSON.parse(readFileSync(lockFile(), 'utf8'))).toMatchObject({ pid: process.pid, instance_id: 'next' });
  });

  it('does not take a live pid in a left-behind file for a holder: only the lock counts (recycled pids, containers)', () => {
    acquire().release();
    // Our own, live pid, as a container restarted with the same pid would find it.
    writeFileSync(lockFile(), JSON.stringify({ pid: process.pid, instance_id: 'before-restart' }));

    expect(acquire().leftBy).toEqual({ pid: process.pid, instance_id: 'before-restart' });
  });

  it('refuses a second holder within the same process, as two apps on one DATA_DIR would be', () => {
    acquire('first');

    expect(() => acquire('second')).toThrow(DataDirInUseError);
    expect(() => acquire('second')).toThrow(`pid ${process.pid}, instance first`);
  });

  it('is released by releaseHeld (the embedded database, once closed), and only for its DATA_DIR', () => {
    const lock = acquire();

    DataDirLock.releaseHeld(join(dataDir, '..', 'elsewhere'));
    expect(lock.isHeld).toBe(true);
    DataDirLock.releaseHeld(`${dataDir}/./`);
    expect(lock.isHeld).toBe(false);
    expect(() => acquire().release()).not.toThrow();
  });
});
