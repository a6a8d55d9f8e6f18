import { PGlite } from '@electric-sql/pglite';
import { EventEmitter } from 'node:events';
import { makePrivateDir, restrictToOwner } from '../common/private-files';

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

  constructor(private readonly dataDir: string) {
    super();
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
      });
    closing.then(
      () => callback?.(null),
      (error: Error) => callback?.(error),
    );
    return closing;
  }
}

/** The object TypeORM's postgres driver accepts as `driver`: it only needs a `Pool` constructor. */
export function pgliteDriver(dataDir: string) {
  return {
    Pool: class extends PGlitePool {
      constructor() {
        super(dataDir);
      }
    },
  };
}
