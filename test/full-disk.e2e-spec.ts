import { spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call, type HttpResult } from './support/http';
import { freePort, serviceOutput, startService, waitForHealth } from './support/service-process';

const ADMIN = { email: 'owner@example.test', password: 'full-disk-password' };
/** "Must answer at all": far above any answer time, far below a hang. */
const ANSWER_WITHIN_MS = 10_000;
const EXIT_WITHIN_MS = 12_000;

/**
 * The service in its own process with DATA_DIR (PGlite) and its log (stdout redirected to a file)
 * on one small tmpfs, filled from outside: it keeps answering, says why writes fail, stops on
 * SIGTERM, and resumes without a restart and without losing data once space is freed.
 */
describe('a full data disk', () => {
  let mountPoint: string;
  let fillerPath: string;
  let logPath: string;
  let child: ChildProcess | undefined;
  let url: string;
  let token: string;
  const saved: string[] = [];

  beforeAll(async () => {
    mountPoint = mkdtempSync(join(tmpdir(), 'mss-full-disk-'));
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=96m,mode=0700', 'tmpfs', mountPoint], { encoding: 'utf8' });
    if (mount.status !== 0) throw new Error(`mounting a tmpfs needs root: ${mount.stderr}`);
    fillerPath = join(mountPoint, 'filler');
    logPath = join(mountPoint, 'service.log');
    mkdirSync(join(mountPoint, 'data'));
    ({ child, url } = await start());
    token = (await call(url, 'POST', '/api/auth/login', { body: ADMIN, timeoutMs: ANSWER_WITHIN_MS })).body.data.access_token;
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    spawnSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  /** Starts the service on the tmpfs, its stdout appended to the log file there. */
  async function start(): Promise<{ child: ChildProcess; url: string }> {
    const port = await freePort();
    const log = openSync(logPath, 'a');
    const started = startService(
      { PORT: String(port), DATA_DIR: join(mountPoint, 'data'), ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, DATA_DIR_MIN_FREE_MB: '4' },
      { stdout: log },
    );
    closeSync(log);
    const startedUrl = `http://127.0.0.1:${port}`;
    await waitForHealth(startedUrl, started);
    return { child: started, url: startedUrl };
  }

  const request = (method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}) =>
    call(url, method, path, { token, timeoutMs: ANSWER_WITHIN_MS, ...options });

  let counter = 0;
  const createUser = async (headers?: Record<string, string>): Promise<HttpResult> => {
    const email = `user-${++counter}@example.test`;
    const result = await request('POST', '/api/users', { body: { email, password: 'user-password', role: 'member' }, headers });
    if (result.status === 201) saved.push(email);
    return result;
  };

  /** Writes zeros until the file system refuses more, as a runaway process would. */
  function fillTheDisk(): void {
    const fd = openSync(fillerPath, 'a');
    try {
      for (const size of [1024 * 1024, 4096]) {
        const zeros = Buffer.alloc(size);
        try {
          for (;;) writeSync(fd, zeros);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  const listedEmails = async () => (await request('GET', '/api/users')).body.data.map((user: { email: string }) => user.email);

  it('answers writes with 201 while there is space, then 503 naming the full disk; reads and health keep answering', async () => {
    for (let i = 0; i < 3; i++) expect((await createUser()).status).toBe(201);

    fillTheDisk();

    // PostgreSQL has some room in pages it already holds: writes succeed until one needs a new page.
    let refused: HttpResult | undefined;
    for (let attempt = 0; attempt < 300 && !refused; attempt++) {
      const result = await createUser({ 'x-request-id': `while-full-${attempt}` });
      expect([201, 503]).toContain(result.status);
      if (result.status === 503) refused = result;
    }
    expect(refused?.body).toEqual({ statusCode: 503, error: 'Service Unavailable', message: expect.stringMatching(/no space left/i), details: { reason: 'disk_full' } });

    expect((await request('GET', '/api/auth/me')).status).toBe(200);
    expect(await listedEmails()).toEqual(expect.arrayContaining(saved));

    const health = await request('GET', '/api/health');
    expect(health.status).toBe(503);
    expect(health.body.details).toMatchObject({ disk: { status: 'down', message: expect.stringContaining('disk is full') }, database: { status: 'up' } });

    expect(serviceOutput(child!)).toMatch(/warning: log destination stdout \(a file\) cannot be written \(ENOSPC/);
  });

  it('resumes once space is freed, without a restart: writes succeed, earlier data and the kept log lines are there', async () => {
    rmSync(fillerPath);

    expect((await createUser()).status).toBe(201);
    expect(await listedEmails()).toEqual(expect.arrayContaining(saved));
    expect((await request('GET', '/api/health')).status).toBe(200);
    // The log lines of the requests answered while the disk was full were kept and are written now.
    await eventually(() => expect(readFileSync(logPath, 'utf8')).toContain('"request_id":"while-full-0"'));
  });

  it('stops on SIGTERM with a full disk, and the data is intact at the next start', async () => {
    fillTheDisk();
    expect((await request('GET', '/api/users')).status).toBe(200);

    expect(await exitCodeAfterSigterm(child!)).toBe(0);

    rmSync(fillerPath);
    ({ child, url } = await start());
    token = (await call(url, 'POST', '/api/auth/login', { body: ADMIN, timeoutMs: ANSWER_WITHIN_MS })).body.data.access_token;
    expect(await listedEmails()).toEqual(expect.arrayContaining(saved));
    expect((await createUser()).status).toBe(201);
  });
});

/** The other way a log destination stops taking lines: stdout piped to a reader that stopped reading. */
describe('a log reader that stopped reading', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mss-stuck-log-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('neither blocks requests nor shutdown: lines beyond the buffer are dropped and counted', async () => {
    const fifo = join(dir, 'log.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK); // open, never read
    const writer = openSync(fifo, constants.O_WRONLY); // blocking, as a shell's `| reader` hands it
    const port = await freePort();
    const service = startService(
      { PORT: String(port), DATA_DIR: join(dir, 'data'), ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, LOG_BUFFER_LIMIT_BYTES: '65536', LOG_LEVEL: 'debug' },
      { stdout: writer },
    );
    closeSync(writer);
    const serviceUrl = `http://127.0.0.1:${port}`;
    try {
      await waitForHealth(serviceUrl, service);
      // Each request logs a line or more: far more than the pipe (64 KiB) and the buffer hold.
      for (let i = 0; i < 400; i++) expect((await call(serviceUrl, 'GET', '/api/health', { timeoutMs: ANSWER_WITHIN_MS })).status).toBe(200);
      await eventually(() => expect(serviceOutput(service)).toMatch(/log destination stdout \(a pipe\).*[1-9]\d* log lines dropped/), 15_000);

      expect(await exitCodeAfterSigterm(service)).toBe(0);
    } finally {
      if (service.exitCode === null && service.signalCode === null) service.kill('SIGKILL');
      closeSync(reader);
    }
  });
});

/** The exit code, or a failure when the process is still there after EXIT_WITHIN_MS. */
async function exitCodeAfterSigterm(process: ChildProcess): Promise<number | null> {
  const exited = once(process, 'exit');
  process.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), EXIT_WITHIN_MS)));
  const outcome = await Promise.race([exited, timedOut]);
  clearTimeout(timer);
  if (!outcome) throw new Error(`the service did not exit on SIGTERM:\n${serviceOutput(process)}`);
  return outcome[0] as number | null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Retries an assertion for a few seconds (the log destination retries every second). */
async function eventually(assertion: () => void, withinMs = 5_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      assertion();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}
