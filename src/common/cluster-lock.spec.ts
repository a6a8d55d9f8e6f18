import { Logger } from '@nestjs/common';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { AppConfig } from '../config/app-config';
import { buildDataSourceOptions } from '../database/data-source-options';
import { openTestDatabase } from '../testing/pglite-database';
import { ClusterLock, clusterLockKey, ClusterLockTimeoutError } from './cluster-lock';
import { InstanceIdentity } from './instance-identity';

/** The machine's PostgreSQL, as the e2e suite uses it (test/support/test-app.ts). */
const POSTGRES_ADMIN_URL = process.env.POSTGRES_ADMIN_URL ?? 'postgres://root@127.0.0.1:5432/test';

interface Gate {
  opened: Promise<void>;
  open(): void;
}

function gate(): Gate {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/**
 * Runs `checks` while `lock` runs work of `name` that waits for them; the work is let go even when
 * a check fails (a pass never let go would keep its pooled connection, and closing the pool would wait forever).
 */
async function whileRunning(lock: ClusterLock, name: string, checks: () => Promise<void>, work: () => Promise<unknown> = async () => undefined): Promise<boolean> {
  const held = gate();
  const running = lock.runExclusive(name, async () => {
    await held.opened;
    await work();
  });
  try {
    await sleep(100);
    await checks();
  } finally {
    held.open();
  }
  return running;
}

async function backgroundRun(dataSource: DataSource, name: string): Promise<{ passes: number; instance: string; finished: boolean } | undefined> {
  const [row] = await dataSource.query('SELECT passes, instance, last_finished_at FROM background_run WHERE name = $1', [name]);
  return row && { passes: Number(row.passes), instance: row.instance, finished: row.last_finished_at !== null };
}

describe('ClusterLock', () => {
  beforeEach(() => {
    for (const level of ['log', 'warn'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  it('derives a stable signed 64-bit key from the name', () => {
    expect(clusterLockKey('sandbox-sweep')).toBe(clusterLockKey('sandbox-sweep'));
    expect(clusterLockKey('sandbox-sweep')).not.toBe(clusterLockKey('sandbox-reconcile'));
    const key = BigInt(clusterLockKey('sandbox-sweep'));
    expect(key >= -(2n ** 63n) && key < 2n ** 63n).toBe(true);
  });

  it('names the instance by its INSTANCE_ID', () => {
    expect(new ClusterLock(undefined, new InstanceIdentity(AppConfig.fromEnvironment({ DATA_DIR: '/tmp/cluster-lock-spec', INSTANCE_ID: 'web-1' }))).instance).toBe('web-1');
  });

  it('without a database, runs the work in this process, one pass of a name at a time', async () => {
    const lock = new ClusterLock();
    expect(await whileRunning(lock, 'work', async () => expect(await lock.runExclusive('work', async () => undefined)).toBe(false))).toBe(true);
    expect(await lock.runWhenFree('work', async () => 42, 1000)).toBe(42);
  });

  describe('on PGlite (one instance: the database is in-process)', () => {
    let database: { dataSource: DataSource; close(): Promise<void> };
    let lock: ClusterLock;

    beforeAll(async () => {
      database = await openTestDatabase();
    });
    afterAll(() => database.close());
    beforeEach(async () => {
      await database.dataSource.query('DELETE FROM background_run');
      lock = new ClusterLock(database.dataSource);
    });

    it('runs the work (whose own queries go through), records and logs each pass with the instance that ran it', async () => {
      const log = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
      expect(await lock.runExclusive('sweep', () => database.dataSource.query('SELECT 1'))).toBe(true);
      expect(await lock.runExclusive('sweep', () => database.dataSource.query('SELECT 1'))).toBe(true);
      expect(await backgroundRun(database.dataSource, 'sweep')).toEqual({ passes: 2, instance: lock.instance, finished: true });
      expect(log).toHaveBeenLastCalledWith(expect.objectContaining({ work: 'sweep', instance: lock.instance, pass: 2 }), 'background work ran');
    });

    it('skips work of a name that is already running here, not work of another name', async () => {
      const ran = await whileRunning(lock, 'sweep', async () => {
        expect(await lock.runExclusive('sweep', async () => undefined)).toBe(false);
        expect(await lock.runExclusive('other', async () => undefined)).toBe(true);
      });
      expect(ran).toBe(true);
      expect(await lock.runExclusive('sweep', async () => undefined)).toBe(true);
    });

    it('with oncePerMs, runs one pass per period', async () => {
      expect(await lock.runExclusive('periodic', async () => undefined, { oncePerMs: 400 })).toBe(true);
      expect(await lock.runExclusive('periodic', async () => undefined, { oncePerMs: 400 })).toBe(false);
      await sleep(400);
      expect(await lock.runExclusive('periodic', async () => undefined, { oncePerMs: 400 })).toBe(true);
      expect((await backgroundRun(database.dataSource, 'periodic'))?.passes).toBe(2);
    });

    it('rejects with the failure of the work, records the pass as unfinished, and runs the next one', async () => {
      await expect(lock.runExclusive('failing', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
      expect(await backgroundRun(database.dataSource, 'failing')).toMatchObject({ passes: 1, finished: false });
      expect(await lock.runExclusive('failing', async () => undefined)).toBe(true);
    });

    it('runWhenFree waits for the pass running here, then runs and returns the result', async () => {
      const order: string[] = [];
      let second!: Promise<number>;
      await whileRunning(
        lock,
        'reconcile',
        async () => {
          second = lock.runWhenFree('reconcile', async () => order.push('second'), 1000);
        },
        async () => order.push('first'),
      );
      expect(await second).toBe(2);
      expect(order).toEqual(['first', 'second']);
    });
  });

  describe('on PostgreSQL (two instances sharing one database)', () => {
    let databaseUrl: string;
    let dataDir: string;
    let first: DataSource;
    let second: DataSource;
    let a: ClusterLock;
    let b: ClusterLock;

    async function admin<T>(use: (client: Client) => Promise<T>): Promise<T> {
      const client = new Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      try {
        return await use(client);
      } finally {
        await client.end();
      }
    }

    async function open(): Promise<DataSource> {
      const dataSource = new DataSource(buildDataSourceOptions(AppConfig.fromEnvironment({ DATA_DIR: dataDir, DATABASE_URL: databaseUrl })));
      await dataSource.initialize();
      return dataSource;
    }

    const advisoryLocks = async (): Promise<number> =>
      Number((await first.query(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`))[0].n);

    beforeAll(async () => {
      const name = `mss_lock_spec_${process.pid}_${Date.now()}`;
      await admin((client) => client.query(`CREATE DATABASE ${name}`));
      databaseUrl = `${POSTGRES_ADMIN_URL.replace(/\/[^/]*$/, '')}/${name}`;
      dataDir = mkdtempSync(join(tmpdir(), 'mss-lock-spec-'));
      first = await open();
      await first.runMigrations({ transaction: 'each' });
      second = await open();
    });
    afterAll(async () => {
      await first?.destroy();
      await second?.destroy();
      if (databaseUrl) await admin((client) => client.query(`DROP DATABASE IF EXISTS ${new URL(databaseUrl).pathname.slice(1)} WITH (FORCE)`));
      rmSync(dataDir, { recursive: true, force: true });
    });
    beforeEach(async () => {
      await first.query('DELETE FROM background_run');
      a = new ClusterLock(first);
      b = new ClusterLock(second);
    });

    it('runs the work in one instance while the other skips it, and leaves no lock behind', async () => {
      const skipped = jest.fn();
      const ran = await whileRunning(
        a,
        'sweep',
        async () => {
          expect(await b.runExclusive('sweep', async () => skipped())).toBe(false);
          expect(await b.runExclusive('another', async () => undefined)).toBe(true);
        },
        () => first.query('SELECT 1'),
      );
      expect(ran).toBe(true);
      expect(skipped).not.toHaveBeenCalled();
      expect(await b.runExclusive('sweep', async () => undefined)).toBe(true);
      expect(await backgroundRun(first, 'sweep')).toEqual({ passes: 2, instance: b.instance, finished: true });
      expect(await advisoryLocks()).toBe(0);
    });

    it('releases the lock when the work fails', async () => {
      await expect(a.runExclusive('sweep', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
      expect(await advisoryLocks()).toBe(0);
      expect(await b.runExclusive('sweep', async () => undefined)).toBe(true);
    });

    it('survives losing the connection that holds the lock mid-pass: says so, never reuses the connection, and the lock is free', async () => {
      const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      // The server ends the lock's connection mid-pass (a restart, an administrator).
      const ran = await a.runExclusive('sweep', async () => {
        await admin((client) => client.query(`SELECT pg_terminate_backend(pid, 5000) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = $1)`, [new URL(databaseUrl).pathname.slice(1)]));
        await sleep(100);
      });
      expect(ran).toBe(true);
      expect(warn).toHaveBeenCalledWith(expect.objectContaining({ work: 'sweep', instance: a.instance }), expect.stringContaining('lock lost'));
      await Promise.all(Array.from({ length: 10 }, () => first.query('SELECT 1')));
      expect(await b.runExclusive('sweep', async () => undefined)).toBe(true);
    });

    it('with oncePerMs, runs one pass per period between the instances', async () => {
      const ran: string[] = [];
      const tick = (lock: ClusterLock, name: string) => lock.runExclusive('periodic', async () => void ran.push(name), { oncePerMs: 500 });
      expect(await tick(a, 'a')).toBe(true);
      expect(await tick(b, 'b')).toBe(false);
      expect(await tick(a, 'a')).toBe(false);
      await sleep(500);
      expect(await tick(b, 'b')).toBe(true);
      expect(await tick(a, 'a')).toBe(false);
      expect(ran).toEqual(['a', 'b']);
      expect(await backgroundRun(first, 'periodic')).toMatchObject({ passes: 2, instance: b.instance });
    });

    it('runWhenFree waits for the other instance to finish, or gives up after its timeout', async () => {
      const order: string[] = [];
      let waiting!: Promise<number>;
      await whileRunning(
        a,
        'reconcile',
        async () => {
          await expect(b.runWhenFree('reconcile', async () => order.push('too early'), 300)).rejects.toBeInstanceOf(ClusterLockTimeoutError);
          waiting = b.runWhenFree('reconcile', async () => order.push('b'), 10_000);
          await sleep(300);
          expect(order).toEqual([]);
        },
        async () => order.push('a'),
      );
      await waiting;
      expect(order).toEqual(['a', 'b']);
      expect(await advisoryLocks()).toBe(0);
      // The wait's lock_timeout does not stay on the pooled connections.
      const timeouts = await Promise.all(Array.from({ length: 10 }, () => second.query('SHOW lock_timeout')));
      expect(new Set(timeouts.map(([row]) => row.lock_timeout))).toEqual(new Set(['0']));
    });

    it('is free again as soon as an instance holding it dies (its connection ends)', async () => {
      const holder = spawn(
        process.execPath,
        [
          '-e',
          `const { Client } = require('pg');
           const client = new Client({ connectionString: process.argv[1] });
           client.connect().then(() => client.query('SELECT pg_advisory_lock($1)', [process.argv[2]])).then(() => console.log('locked'));
           setInterval(() => undefined, 1000);`,
          databaseUrl,
          clusterLockKey('sweep'),
        ],
        { cwd: resolve(__dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] },
      );
      try {
        await new Promise<void>((resolve, reject) => {
          holder.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('locked') && resolve());
          holder.once('exit', (code) => reject(new Error(`the holder exited (${code})`)));
        });
        expect(await b.runExclusive('sweep', async () => undefined)).toBe(false);
      } finally {
        holder.kill('SIGKILL');
        await once(holder, 'exit');
      }
      let ran = false;
      for (const deadline = Date.now() + 5000; !ran && Date.now() < deadline; await sleep(50)) ran = await b.runExclusive('sweep', async () => undefined);
      expect(ran).toBe(true);
    });
  });
});
