import { mkdtempSync, rmSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { getRepositoryToken } from '@nestjs/typeorm';
import { Client } from 'pg';
import { In, type Repository } from 'typeorm';
import { Sandbox } from '../../src/modules/sandboxes/sandbox.entity';
import { ACTIVE_SANDBOX_STATUSES } from '../../src/modules/sandboxes/sandbox.state-machine';
import { SandboxesService } from '../../src/modules/sandboxes/sandboxes.service';
import { createApp } from '../../src/app.setup';
import { AppConfig } from '../../src/config/app-config';

export type DatabaseKind = 'pglite' | 'postgres';

export interface TestAppOptions {
  env?: Record<string, string>;
  database?: DatabaseKind;
  /** Reuse the data directory / database of an earlier instance (restart tests). */
  reuse?: { dataDir: string; databaseUrl?: string };
}

export interface TestApp {
  app: NestExpressApplication;
  url: string;
  adminEmail: string;
  adminPassword: string;
  adminToken: string;
  dataDir: string;
  databaseUrl?: string;
  /** Every JSON log line the app wrote. */
  logs: string[];
  /**
   * Stops the app as SIGTERM does: its sandboxes and runs go on for the next start. With
   * `{ purge: true }` its sandboxes are terminated first, then its data removed.
   */
  close(options?: { purge?: boolean }): Promise<void>;
}

const ADMIN_EMAIL = 'admin@example.test';
const ADMIN_PASSWORD = 'admin-password-for-tests';
/** The PostgreSQL server the e2e suite creates its throwaway databases on. */
export const POSTGRES_ADMIN_URL = 'postgres://root@127.0.0.1:5432/test';

/** Boots the real application (real database, real providers) on a random local port. */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const dataDir = options.reuse?.dataDir ?? mkdtempSync(join(tmpdir(), 'mss-e2e-'));
  const databaseUrl = options.reuse ? options.reuse.databaseUrl : options.database === 'postgres' ? await createDatabase() : undefined;
  const logs: string[] = [];
  const logDestination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      callback();
    },
  });
  const env: Record<string, string> = {
    DATA_DIR: dataDir,
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    LOGIN_RATE_LIMIT: '1000',
    LOG_LEVEL: 'debug',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...options.env,
  };
  const app = await createApp({ config: AppConfig.fromEnvironment(env), logDestination });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  const adminToken = await login(url, ADMIN_EMAIL, ADMIN_PASSWORD);
  return {
    app,
    url,
    adminEmail: ADMIN_EMAIL,
    adminPassword: ADMIN_PASSWORD,
    adminToken,
    dataDir,
    databaseUrl,
    logs,
    async close({ purge = false } = {}) {
      if (purge) await terminateSandboxes(app);
      await app.close();
      if (!purge) return;
      rmSync(dataDir, { recursive: true, force: true });
      if (databaseUrl) await dropDatabase(databaseUrl);
    },
  };
}

/** Ends every sandbox the app still runs, as DELETE without a final snapshot would. */
async function terminateSandboxes(app: NestExpressApplication): Promise<void> {
  const rows = app.get<Repository<Sandbox>>(getRepositoryToken(Sandbox));
  const sandboxes = app.get(SandboxesService);
  for (const sandbox of await rows.findBy({ status: In([...ACTIVE_SANDBOX_STATUSES]) })) {
    await sandboxes.terminate(sandbox, { sync: false, force: true }).catch(() => undefined);
  }
}

export async function login(url: string, email: string, password: string): Promise<string> {
  const response = await fetch(`${url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { data: { access_token: string } }).data.access_token;
}

/** Creates a member in a new account and returns a JWT for them. */
export async function createMember(testApp: TestApp, email = `member-${randomBytes(4).toString('hex')}@example.test`): Promise<{ email: string; token: string; accountId: string }> {
  const password = 'member-password-1';
  const response = await fetch(`${testApp.url}/api/users`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${testApp.adminToken}` },
    body: JSON.stringify({ email, password }),
  });
  if (response.status !== 201) throw new Error(`creating member failed: ${response.status} ${await response.text()}`);
  const { data } = (await response.json()) as { data: { account_id: string } };
  return { email, token: await login(testApp.url, email, password), accountId: data.account_id };
}

export async function createDatabase(): Promise<string> {
  const name = `mss_e2e_${randomBytes(6).toString('hex')}`;
  const client = new Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  return `postgres://root@127.0.0.1:5432/${name}`;
}

export async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const client = new Client({ connectionString: POSTGRES_ADMIN_URL });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
