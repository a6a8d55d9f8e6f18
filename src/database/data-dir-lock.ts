import { spawnSync } from 'node:child_process';
import { closeSync, constants, fstatSync, ftruncateSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { makePrivateDir } from '../common/private-files';

/** Under DATA_DIR: locked by the process that has the embedded database open, and naming it. */
export const LOCK_FILE = 'instance.lock';

/** What the holder writes in the lock file, for whoever finds it locked (or left behind). */
export interface LockHolder {
  pid: number;
  instance_id?: string;
  hostname?: string;
  since?: string;
}

/** Another process has DATA_DIR's embedded database open: this one must not touch it. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holder: LockHolder | undefined,
  ) {
    super(
      `DATA_DIR ${dataDir} is in use by another instance of the service (${describeHolder(holder)}): its embedded PGlite database can be ` +
        'opened by one process only. Stop that instance, or give this one another DATA_DIR; to run several instances, set DATABASE_URL ' +
        'to a PostgreSQL database they share.',
    );
    this.name = 'DataDirInUseError';
  }
}

/** The locks this process holds, by DATA_DIR: the embedded database releases its own once it is closed. */
const held = new Map<string, DataDirLock>();

/**
 * An exclusive lock on `DATA_DIR/instance.lock`, held from before the embedded database opens until
 * after it is closed, so that one process at a time uses it. A kernel lock (flock(2)): the kernel
 * drops it when the process ends, however it ends (kill -9 included), so a lock left by a dead
 * process is never in the way, and a recycled pid cannot make it look alive. Node has no flock
 * binding: `flock(1)` (util-linux) takes it on our descriptor, which it inherits, and exits; the
 * lock belongs to the open file, which stays open here. The file's content (the holder's pid and
 * instance id) only names the holder in the refusal; a clean release empties it, so content found
 * on taking the lock was left by a process that ended without releasing it.
 */
export class DataDirLock {
  private fd: number | undefined;

  private constructor(
    readonly dataDir: string,
    fd: number,
    /** The holder named in the file when the lock was taken: a process that ended without releasing it. */
    readonly leftBy: LockHolder | undefined,
  ) {
    this.fd = fd;
  }

  /** Takes DATA_DIR's lock (creating DATA_DIR if needed), or throws DataDirInUseError naming the holder. */
  static acquire(dataDir: string, instanceId: string): DataDirLock {
    const dir = resolve(dataDir);
    makePrivateDir(dir);
    const path = join(dir, LOCK_FILE);
    // A file removed or replaced between our open and our lock is not the one others lock: again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
      try {
        if (!flockExclusive(fd, path)) throw new DataDirInUseError(dir, readHolder(path));
        if (!isSameFile(fd, path)) {
          closeSync(fd);
          continue;
        }
        const lock = new DataDirLock(dir, fd, readHolder(path));
        writeHolder(fd, { pid: process.pid, instance_id: instanceId, hostname: hostname(), since: new Date().toISOString() });
        held.set(dir, lock);
        return lock;
      } catch (error) {
        closeSync(fd);
        throw error;
      }
    }
    throw new Error(`${path} keeps being replaced by another process: cannot lock DATA_DIR`);
  }

  /** Releases the lock this process holds on `dataDir`, if any (the embedded database, once closed). */
  static releaseHeld(dataDir: string): void {
    held.get(resolve(dataDir))?.release();
  }

  get isHeld(): boolean {
    return this.fd !== undefined;
  }

  /** Empties the file (a clean release) and closes it, which drops the lock. Idempotent. */
  release(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    if (held.get(this.dataDir) === this) held.delete(this.dataDir);
    try {
      ftruncateSync(fd, 0);
    } finally {
      closeSync(fd);
    }
  }
}

/** true: locked; false: another open file holds the lock. */
function flockExclusive(fd: number, path: string): boolean {
  const result = spawnSync('flock', ['--nonblock', '--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
  if (result.error) {
    const missing = (result.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(`cannot lock ${path}: ${missing ? 'flock(1) is not installed (package util-linux)' : result.error.message}`);
  }
  if (result.status === 0) return true;
  // flock(1) exits 1 when the lock is taken, and with sysexits codes (64+) on errors.
  if (result.status === 1) return false;
  throw new Error(`cannot lock ${path}: flock(1) exited with ${result.status ?? result.signal}: ${result.stderr.trim()}`);
}

function isSameFile(fd: number, path: string): boolean {
  try {
    const [open, named] = [fstatSync(fd), statSync(path)];
    return open.ino === named.ino && open.dev === named.dev;
  } catch {
    return false;
  }
}

function readHolder(path: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(readFileSync(path, 'utf8')) as LockHolder;
    return Number.isInteger(holder.pid) ? holder : undefined;
  } catch {
    return undefined;
  }
}

/** Best effort: the lock is what counts, and it is held even when a full disk refuses the note. */
function writeHolder(fd: number, holder: LockHolder): void {
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${JSON.stringify(holder)}\n`, 0);
  } catch (error) {
    if (!['ENOSPC', 'EDQUOT'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  }
}

function describeHolder(holder: LockHolder | undefined): string {
  if (!holder) return 'its pid is not recorded in the lock file yet';
  const host = holder.hostname && holder.hostname !== hostname() ? ` on host ${holder.hostname}` : '';
  return `pid ${holder.pid}${holder.instance_id ? `, instance ${holder.instance_id}` : ''}${host}${holder.since ? `, since ${holder.since}` : ''}`;
}
