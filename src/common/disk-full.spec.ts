import { QueryFailedError } from 'typeorm';
import { DiskFullError, findDiskFullCause } from './disk-full';

/** What pg and PGlite reject a query with: a DatabaseError carrying the SQLSTATE. */
function databaseError(code: string, message: string): Error {
  return Object.assign(new Error(message), { name: 'error', severity: 'ERROR', code });
}

describe('findDiskFullCause', () => {
  it('recognises SQLSTATE 53100 (disk_full) as TypeORM wraps it', () => {
    const driverError = databaseError('53100', 'could not extend file "base/5/16406_fsm": No space left on device');

    expect(findDiskFullCause(new QueryFailedError('INSERT …', ['secret'], driverError))).toEqual({ code: '53100', message: driverError.message });
  });

  it('recognises PostgreSQL disk_full whatever the message says', () => {
    expect(findDiskFullCause(databaseError('53100', 'could not write to file "pg_wal/xlogtemp.42"'))).toMatchObject({ code: '53100' });
  });

  it.each(['ENOSPC', 'EDQUOT'])('recognises a file system error %s, also as the cause of another error', (code) => {
    const fsError = Object.assign(new Error(`${code}: write failed, write`), { code, errno: -28, syscall: 'write' });

    expect(findDiskFullCause(fsError)).toMatchObject({ code });
    expect(findDiskFullCause(new Error('snapshot failed', { cause: fsError }))).toMatchObject({ code });
  });

  it('recognises the messages PGlite can surface without a code', () => {
    expect(findDiskFullCause(new Error('No space left on device'))).toBeDefined();
    expect(findDiskFullCause(new Error('could not extend file "base/5/2619": wrote only 4096 of 8192 bytes at block 12'))).toBeDefined();
  });

  it.each([
    ['out of memory', databaseError('53200', 'out of memory')],
    ['too many connections', databaseError('53300', 'sorry, too many clients already')],
    ['a unique violation', databaseError('23505', 'duplicate key value violates unique constraint')],
    ['a plain error', new Error('boom')],
  ])('does not take %s for a full disk', (_name, error) => {
    expect(findDiskFullCause(error)).toBeUndefined();
  });

  it('ignores values that are not errors and stops on cause cycles', () => {
    const cyclic: { cause?: unknown } = {};
    cyclic.cause = cyclic;

    expect(findDiskFullCause(undefined)).toBeUndefined();
    expect(findDiskFullCause('No space left on device')).toBeUndefined();
    expect(findDiskFullCause(cyclic)).toBeUndefined();
  });
});

describe('DiskFullError', () => {
  it('is a 503-kind domain error saying the disk is full and nothing was saved', () => {
    const error = new DiskFullError();

    expect(error.kind).toBe('unavailable');
    expect(error.message).toMatch(/no space left.*not saved/i);
    expect(error.details).toEqual({ reason: 'disk_full' });
  });
});
