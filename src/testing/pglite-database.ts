import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { AppConfig } from '../config/app-config';
import { buildDataSourceOptions } from '../database/data-source-options';

/** A real, migrated PGlite database in a temporary directory, for medium tests of our own state. */
export async function openTestDatabase(): Promise<{ dataSource: DataSource; close(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mss-db-spec-'));
  const dataSource = new DataSource(buildDataSourceOptions(AppConfig.fromEnvironment({ DATA_DIR: dataDir })));
  await dataSource.initialize();
  await dataSource.runMigrations({ transaction: 'each' });
  return {
    dataSource,
    async close() {
      await dataSource.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An account, a sandbox and a run in it with the given status; returns the run's id. */
export async function insertRun(dataSource: DataSource, status = 'running'): Promise<string> {
  const [account] = await dataSource.query(`INSERT INTO account (name) VALUES ('spec') RETURNING id`);
  const [user] = await dataSource.query(`INSERT INTO "user" (email, password_hash, role, account_id) VALUES (gen_random_uuid() || '@example.test', 'x', 'member', $1) RETURNING id`, [account.id]);
  const [sandbox] = await dataSource.query(
    `INSERT INTO sandbox (account_id, created_by, provider, status, config, last_activity_at) VALUES ($1, $2, 'local', 'running', '{}', now()) RETURNING id`,
    [account.id, user.id],
  );
  const [run] = await dataSource.query(
    `INSERT INTO run (sandbox_id, account_id, created_by, prompt, options, status) VALUES ($1, $2, $3, 'spec', '{}', $4) RETURNING id`,
    [sandbox.id, account.id, user.id, status],
  );
  return run.id as string;
}
