import { Injectable, Logger, Optional } from '@nestjs/common';
import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { generatedInstanceId } from '../config/app-config';
import { PGlitePool } from '../database/pglite-driver';
import { InstanceIdentity } from './instance-identity';

/** PostgreSQL's lock_not_available: the wait for the lock outlasted lock_timeout. */
const LOCK_NOT_AVAILABLE = '55P03';

/** The advisory lock key of a piece of work: 64 bits of sha256 of its name, the same in every instance and version. */
export function clusterLockKey(name: string): string {
  return createHash('sha256').update(`modal-sandbox-system:${name}`).digest().readBigInt64BE(0).toString();
}

export class ClusterLockTimeoutError extends Error {
  constructor(name: string, timeoutMs: number) {
    super(`Another instance of the service held the lock of "${name}" for more than ${timeoutMs} ms`);
    this.name = 'ClusterLockTimeoutError';
  }
}

/** Where a pass is recorded and, on PostgreSQL, the connection that holds the lock for it. */
interface Session {
  query(sql: string, parameters: unknown[]): Promise<Record<string, unknown>[]>;
}

/**
 * Background work that must run in one instance of the service at a time when several share one
 * PostgreSQL database (the sandbox sweep, the boot-time reconciliation).
 *
 * On PostgreSQL a pass holds a session-level advisory lock, taken and released on one pooled
 * connection kept for the whole pass: an instance that dies mid-pass loses its connection, and the
 * server releases the lock with it. A connection whose unlock is not confirmed is discarded rather
 * than returned to the pool, so a lock can never outlive its pass on a pooled connection. (A
 * transaction-level lock would hold a transaction open for the whole pass, which a server's
 * idle_in_transaction_session_timeout would end mid-pass, releasing the lock while the work goes on.)
 * On PGlite the database lives in this process, so no other instance can use it: the work simply
 * runs here (holding PGlite's only connection for a pass would stall the pass's own queries).
 * In every case work of one name runs once at a time in this process, and each pass is recorded in
 * `background_run` and logged with the instance that ran it.
 */
@Injectable()
export class ClusterLock {
  /** Names this instance in logs and in background_run: its INSTANCE_ID. */
  readonly instance: string;
  private readonly logger = new Logger(ClusterLock.name);
  /** Work running in this process, by name. */
  private readonly running = new Map<string, Promise<unknown>>();

  /** Without a database (specs building services by hand) the work runs in this process only, unrecorded. */
  constructor(@Optional() private readonly dataSource?: DataSource, @Optional() identity?: InstanceIdentity) {
    this.instance = identity?.id ?? generatedInstanceId();
  }

  /**
   * Runs `work` unless work of that name is running already, here or in another instance; with
   * `oncePerMs`, also unless a pass started (in any instance) less than that period ago, less a
   * tenth for timers that drift, so that instances each ticking once per period run one pass per
   * period between them. Resolves false when the work was skipped; a failure of the work rejects.
   */
  async runExclusive(name: string, work: () => Promise<unknown>, options: { oncePerMs?: number } = {}): Promise<boolean> {
    if (this.running.has(name)) return false;
    const minIntervalMs = Math.floor((options.oncePerMs ?? 0) * 0.9);
    return this.track(name, async () => {
      const pool = this.sharedPool();
      if (!pool) return this.pass(name, this.localSession(), work, minIntervalMs);
      return this.holding(pool, name, async (client) => {
        const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [clusterLockKey(name)]);
        return rows[0].locked && this.pass(name, sessionOf(client), work, minIntervalMs);
      });
    });
  }

  /** Runs `work` once the lock of `name` is free (waiting at most `timeoutMs`, else ClusterLockTimeoutError). */
  async runWhenFree<T>(name: string, work: () => Promise<T>, timeoutMs: number): Promise<T> {
    for (let current = this.running.get(name); current; current = this.running.get(name)) await current.catch(() => undefined);
    let result!: T;
    const keep = async () => {
      result = await work();
    };
    await this.track(name, async () => {
      const pool = this.sharedPool();
      if (!pool) return this.pass(name, this.localSession(), keep, 0);
      return this.holding(pool, name, async (client) => {
        await client.query(`SELECT set_config('lock_timeout', $1, false)`, [`${Math.max(1, Math.ceil(timeoutMs))}ms`]);
        try {
          await client.query('SELECT pg_advisory_lock($1)', [clusterLockKey(name)]);
        } catch (error) {
          if ((error as { code?: string }).code === LOCK_NOT_AVAILABLE) throw new ClusterLockTimeoutError(name, timeoutMs);
          throw error;
        } finally {
          await client.query('RESET lock_timeout');
        }
        return this.pass(name, sessionOf(client), keep, 0);
      });
    });
    return result;
  }

  private async track<T>(name: string, task: () => Promise<T>): Promise<T> {
    const running = task();
    this.running.set(name, running);
    try {
      return await running;
    } finally {
      this.running.delete(name);
    }
  }

  /**
   * Runs `use` (which takes the lock and runs the pass) on a connection of its own, then gives the
   * connection back to the pool only once its session holds no advisory lock.
   */
  private async holding(pool: Pool, name: string, use: (client: PoolClient) => Promise<boolean>): Promise<boolean> {
    const client = await pool.connect();
    // A connection that breaks while checked out reports it here (unheard, the process would crash).
    const broken = (error: Error) => this.logger.warn({ work: name, instance: this.instance, error: error.message }, 'connection holding a background work lock lost: the lock is released');
    client.on('error', broken);
    try {
      return await use(client);
    } finally {
      // Whatever `use` took, or failed to take; a connection that cannot confirm it is closed instead, which releases it.
      const clean = await client.query('SELECT pg_advisory_unlock_all()').then(
        () => true,
        () => false,
      );
      if (clean) {
        client.off('error', broken);
        client.release();
      } else {
        // Closed by the pool; still heard, so that a late error of its socket cannot crash the process.
        client.release(new Error(`the lock of "${name}" may still be held: connection discarded`));
      }
    }
  }

  /** One pass of the work, under its lock: claims the period, runs, records the end, logs. */
  private async pass(name: string, session: Session | undefined, work: () => Promise<unknown>, minIntervalMs: number): Promise<boolean> {
    let pass: number | null = null;
    if (session) {
      const claimed = await session.query(
        `INSERT INTO background_run (name, passes, instance, last_started_at) VALUES ($1, 1, $2, now())
         ON CONFLICT (name) DO UPDATE SET passes = background_run.passes + 1, instance = EXCLUDED.instance, last_started_at = now(), last_finished_at = NULL
           WHERE background_run.last_started_at <= now() - $3 * interval '1 millisecond'
         RETURNING passes`,
        [name, this.instance, minIntervalMs],
      );
      if (claimed.length === 0) return false;
      pass = Number(claimed[0].passes);
    }
    const startedAt = Date.now();
    await work();
    // On any connection: the one holding the lock may have broken meanwhile. The record is for people; the pass happened anyway.
    await this.localSession()
      ?.query('UPDATE background_run SET last_finished_at = now() WHERE name = $1 AND passes = $2', [name, pass])
      .catch((error: Error) => this.logger.warn({ work: name, instance: this.instance, pass, error: error.message }, 'could not record the end of a background work pass'));
    this.logger.log({ work: name, instance: this.instance, pass, duration_ms: Date.now() - startedAt }, 'background work ran');
    return true;
  }

  /** The pg pool when the database is a PostgreSQL server other instances may share; undefined on PGlite. */
  private sharedPool(): Pool | undefined {
    const pool = (this.dataSource?.driver as unknown as { master?: unknown } | undefined)?.master;
    return pool && !(pool instanceof PGlitePool) ? (pool as Pool) : undefined;
  }

  private localSession(): Session | undefined {
    const dataSource = this.dataSource;
    return dataSource && { query: (sql, parameters) => dataSource.query(sql, parameters) };
  }
}

function sessionOf(client: PoolClient): Session {
  return { query: async (sql, parameters) => (await client.query(sql, parameters)).rows };
}
