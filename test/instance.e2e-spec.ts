import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from './support/http';
import { freePort, serviceOutput, startService, waitForHealth } from './support/service-process';
import { createDatabase, dropDatabase } from './support/test-app';

interface Service {
  child: ChildProcess;
  url: string;
  /** What it wrote on stdout: its JSON log. */
  stdout: string[];
}

/** Instance identity, readiness and DATA_DIR's lock, on the real service process. */
describe('service instances', () => {
  let dataDir: string;
  const started: Service[] = [];

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'mss-instance-'));
  });
  afterAll(async () => {
    for (const { child } of started) await stop(child, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string> = {}): Promise<Service> {
    const port = await freePort();
    const child = startService({ PORT: String(port), DATA_DIR: dataDir, ADMIN_EMAIL: 'owner@example.test', ADMIN_PASSWORD: 'instance-password', ...env });
    const stdout: string[] = [];
    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk.toString()));
    const service = { child, url: `http://127.0.0.1:${port}`, stdout };
    started.push(service);
    await waitForHealth(service.url, child);
    return service;
  }

  async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    const exited = once(child, 'exit');
    child.kill(signal);
    return ((await exited) as [number | null])[0];
  }

  const lockHolder = () => readFileSync(join(dataDir, 'instance.lock'), 'utf8');
  const logLines = (service: Service) =>
    service.stdout
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  it('names itself in /api/health, /api/health/ready and every log line, and is ready once started', async () => {
    const service = await start();

    const health = await call(service.url, 'GET', '/api/health');
    const instanceId = health.body.info.instance.instance_id;
    expect(instanceId).toMatch(new RegExp(`^${hostname().replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 48)}-[0-9a-f]{6}$`));
    expect(health.body.info.instance).toEqual({ status: 'up', instance_id: instanceId, ready: true });
    expect(health.body.info).toMatchObject({ database: { status: 'up' }, sandbox_engine: { status: 'up' }, disk: { status: 'up' } });

    const ready = await call(service.url, 'GET', '/api/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready', instance_id: instanceId });

    const lines = logLines(service);
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.filter((line) => line.instance_id !== instanceId)).toEqual([]);
    expect(lines.map((line) => line.msg)).toEqual(expect.arrayContaining(['start-up work finished: this instance is ready', expect.stringMatching(/^Listening on /)]));
    await stop(service.child, 'SIGTERM');
  });

  it('refuses a second instance on the same PGlite DATA_DIR (exit 1, naming DATA_DIR, the holder and DATABASE_URL) and the first keeps serving', async () => {
    const first = await start({ INSTANCE_ID: 'first' });
    const holder = lockHolder();
    expect(JSON.parse(holder)).toMatchObject({ pid: first.child.pid, instance_id: 'first' });

    const second = startService({ PORT: String(await freePort()), DATA_DIR: dataDir, INSTANCE_ID: 'second' });
    const [code] = await once(second, 'exit');

    expect(code).toBe(1);
    const output = serviceOutput(second);
    expect(output).toContain(`DATA_DIR ${dataDir} is in use by another instance of the service (pid ${first.child.pid}, instance first`);
    expect(output).toContain('DATABASE_URL');
    // It stopped before the application (and its database) started, and left the lock as it was.
    expect(output).not.toContain('Starting Nest application');
    expect(lockHolder()).toBe(holder);
    expect((await call(first.url, 'GET', '/api/health')).status).toBe(200);
    expect((await call(first.url, 'POST', '/api/auth/login', { body: { email: 'owner@example.test', password: 'instance-password' } })).status).toBe(200);

    expect(await stop(first.child, 'SIGTERM')).toBe(0);
    expect(lockHolder()).toBe('');
    const next = await start({ INSTANCE_ID: 'next' });
    expect((await call(next.url, 'GET', '/api/health/ready')).body).toEqual({ status: 'ready', instance_id: 'next' });
    await stop(next.child, 'SIGTERM');
  });

  it('recovers the lock a killed instance (kill -9) left behind, saying so', async () => {
    const killed = await start({ INSTANCE_ID: 'killed' });
    await stop(killed.child, 'SIGKILL');
    expect(JSON.parse(lockHolder())).toMatchObject({ pid: killed.child.pid, instance_id: 'killed' });

    const next = await start({ INSTANCE_ID: 'after-kill' });

    expect((await call(next.url, 'GET', '/api/health/ready')).status).toBe(200);
    expect(logLines(next)).toContainEqual(
      expect.objectContaining({ context: 'DataDir', instance_id: 'after-kill', previous_holder: expect.objectContaining({ pid: killed.child.pid, instance_id: 'killed' }) }),
    );
    expect(await stop(next.child, 'SIGTERM')).toBe(0);
  });

  it('takes no lock with DATABASE_URL: instances sharing a PostgreSQL database run side by side', async () => {
    const shared = mkdtempSync(join(tmpdir(), 'mss-instance-pg-'));
    const databaseUrl = await createDatabase();
    try {
      const env = { DATA_DIR: shared, DATABASE_URL: databaseUrl };
      const one = await start({ ...env, INSTANCE_ID: 'pg-one' });
      const two = await start({ ...env, INSTANCE_ID: 'pg-two' });

      expect((await call(one.url, 'GET', '/api/health/ready')).body.instance_id).toBe('pg-one');
      expect((await call(two.url, 'GET', '/api/health/ready')).body.instance_id).toBe('pg-two');
      expect(existsSync(join(shared, 'instance.lock'))).toBe(false);
      await Promise.all([stop(one.child, 'SIGTERM'), stop(two.child, 'SIGTERM')]);
    } finally {
      await dropDatabase(databaseUrl);
      rmSync(shared, { recursive: true, force: true });
    }
  });
});
