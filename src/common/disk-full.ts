import { UnavailableError } from './domain-error';

/** A write failed because the service's disk (DATA_DIR, or the database's) is full: nothing was saved. */
export class DiskFullError extends UnavailableError {
  constructor() {
    super("No space left on the service's disk: the change was not saved. Retry once space has been freed", { reason: 'disk_full' });
  }
}

/** PostgreSQL's disk_full: PGlite and PostgreSQL both raise it when a file cannot be written or extended. */
const DISK_FULL_SQLSTATE = '53100';
const DISK_FULL_ERRNO_CODES = new Set(['ENOSPC', 'EDQUOT']);
/** What PostgreSQL (`could not extend file …`) and the C library say when the error carries no code we know. */
const DISK_FULL_MESSAGE = /no space left on device|could not extend file|disk quota exceeded/i;
/** How deep wrapped errors are searched (TypeORM's driverError, an Error's cause). */
const MAX_DEPTH = 4;

/** What an error says about the full disk: its code (SQLSTATE or errno name) and message. */
export interface DiskFullCause {
  code?: string;
  message?: string;
}

/**
 * The error, or one it wraps, that says the disk is full: SQLSTATE 53100, ENOSPC / EDQUOT from the
 * file system, or their messages; undefined for anything else (other resource shortages included).
 */
export function findDiskFullCause(error: unknown, depth = 0): DiskFullCause | undefined {
  if (typeof error !== 'object' || error === null || depth > MAX_DEPTH) return undefined;
  const { code, message, driverError, cause } = error as { code?: unknown; message?: unknown; driverError?: unknown; cause?: unknown };
  const knownCode = code === DISK_FULL_SQLSTATE || (typeof code === 'string' && DISK_FULL_ERRNO_CODES.has(code));
  if (knownCode || (typeof message === 'string' && DISK_FULL_MESSAGE.test(message))) {
    return { code: typeof code === 'string' ? code : undefined, message: typeof message === 'string' ? message : undefined };
  }
  return findDiskFullCause(driverError, depth + 1) ?? findDiskFullCause(cause, depth + 1);
}
