import { PGlite } from '@electric-sql/pglite';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { makePrivateDir, restrictToOwner } from '../common/private-files';
import { DataDirLock } from './data-dir-lock';

type QueryCallback = (error: Error | null, result?: unknown) => void;
type Release = (error?: unknown) => void;

/**
 * A pg-compatible pool over one in-process PGlite database. PGlite has a single session, so a
 * checked-out "connection" holds a lock until TypeORM releases it: without that, queries from
 * concurrent requests would run inside another request's transaction.
 */
export class PGlitePool extends EventEmitter {
  private tail: Promise<void> = Promise.resolve();
  private dbPromise: Promise<PGlite> | undefined;

  private readonly dataDir: string;

  /** The database lives in `DATA_DIR/pglite`; the service locks DATA_DIR before it opens (see DataDirLock). */
  constructor(private readonly serviceDataDir: string) {
    super();
    this.dataDir = join(serviceDataDir, 'pglite');
  }

  private database(): Promise<PGlite> {
    if (!this.dbPromise) {
      makePrivateDir(this.dataDir);
      this.dbPromise = PGlite.create({ dataDir: this.dataDir }).then((db) => {
        // initdb writes a new database's files 0666 whatever the umask; later files honour it.
        restrictToOwner(this.dataDir);
        return db;
      });
    }
    return this.dbPromise;
  }

  connect(callback: (error: Error | null, client: unknown, release: Release) => void): void {
    let unlock!: () => void;
    const previous = this.tail;
    this.tail = new Promise<void>((resolve) => (unlock = resolve));
    previous
      .then(() => this.database())
      .then(
        () => {
          let released = false;
          const release: Release = () => {
            if (!released) {
              released = true;
              unlock();
            }
          };
          callback(null, this.client(), release);
        },
        (error: Error) => {
          unlock();
          callback(error, undefined, () => undefined);
        },
      );
  }

  private client() {
    return Object.assign(new EventEmitter(), {
      query: (sql: string, params?: unknown[] | QueryCallback, callback?: QueryCallback) => {
        const cb = typeof params === 'function' ? params : callback;
        const values = typeof params === 'function' ? undefined : params;
        const run = this.database().then((db) =>
          values && values.length > 0
            ? db.query(sql, values)
            : db.exec(sql).then((results) => results[results.length - 1] ?? { rows: [], fields: [] }),
        );
        return run.then(
          (result) => {
            cb?.(null, result);
            return result;
          },
          (error: Error) => {
            cb?.(error);
            throw error;
          },
        );
      },
      release: () => undefined,
    });
  }

  end(callback?: (error: Error | null) => void): Promise<void> {
    const closing = this.tail
      .then(() => this.dbPromise)
      .then((db) => db?.close())
      .then(() => {
        this.dbPromise = undefined;
        // Closed: another process may open it now.
        DataDirLock.releaseHeld(this.serviceDataDir);
      });
    closing.then(
      () => callback?.(null),
      (error: Error) => callback?.(error),
    );
    return closing;
  }
}

/** The object TypeORM's postgres driver accepts as `driver`: it only needs a `Pool` constructor. `dataDir`: DATA_DIR. */
export function pgliteDriver(dataDir: string) {
  return {
    Pool: class extends PGlitePool {
      constructor() {
        super(dataDir);
      }
    },
  };
}
