import { chmodSync, lstatSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { api } from './support/http';
import { createMember, startTestApp, TestApp, TestAppOptions } from './support/test-app';

/** The sandbox engine sets the owners and modes of these for what sandboxes need. */
const ENGINE_SUBTREES = new Set(['volumes', 'sandboxes', 'rootfs', 'image-cache']);
const GROUP_OTHER_BITS = 0o077;

describe('DATA_DIR permissions (PGlite)', () => {
  const started: TestApp[] = [];
  const scratchDirs: string[] = [];
  let running: TestApp | undefined;

  async function start(options: TestAppOptions = {}): Promise<TestApp> {
    running = await startTestApp(options);
    started.push(running);
    return running;
  }

  async function restart(app: TestApp): Promise<TestApp> {
    await app.close();
    running = undefined;
    loosenLikeAnEarlierVersion(app.dataDir);
    expect(entriesOpenToOthers(app.dataDir)).not.toEqual([]);
    return start({ reuse: { dataDir: app.dataDir } });
  }

  /**
   * nestjs-pino keeps one root logger per process, so a later app's lines land in the capture of the
   * first app started in this file: look through all of them for the lines about `dataDir`.
   */
  function dataDirLogLines(dataDir: string): Record<string, unknown>[] {
    return started
      .flatMap((app) => app.logs)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.context === 'DataDir' && JSON.stringify(entry).includes(dataDir));
  }

  function scratchDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'mss-e2e-perm-'));
    scratchDirs.push(dir);
    return dir;
  }

  afterEach(async () => {
    await running?.close({ purge: true });
    running = undefined;
  });
  afterAll(() => {
    for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the database, the JWT secret and everything else the service writes private to its owner', async () => {
    const app = await start();
    await writeData(app);

    expect(modeOf(app.dataDir)).toBe(0o700);
    expect(entriesOpenToOthers(app.dataDir)).toEqual([]);
    expect(dataDirLogLines(app.dataDir)).toEqual([]);
  });

  it('creates a DATA_DIR that does not exist yet owner-only', async () => {
    const parent = scratchDir();
    chmodSync(parent, 0o755);
    const dataDir = join(parent, 'data');

    const app = await start({ reuse: { dataDir } });
    await writeData(app);

    expect(modeOf(dataDir)).toBe(0o700);
    expect(entriesOpenToOthers(dataDir)).toEqual([]);
  });

  it('restricts a DATA_DIR and database files left open by an earlier version, saying so in the log', async () => {
    const earlier = await start();
    await writeData(earlier);

    const app = await restart(earlier);
    await writeData(app);

    expect(modeOf(app.dataDir)).toBe(0o700);
    expect(entriesOpenToOthers(app.dataDir)).toEqual([]);
    expect(dataDirLogLines(app.dataDir)).toEqual([
      expect.objectContaining({ level: 40, path: app.dataDir, previous_mode: '0755', mode: '0700', msg: expect.stringContaining('DATA_DIR') }),
      expect.objectContaining({ level: 40, entries_changed: expect.any(Number), msg: expect.stringContaining('restricted them to their owner') }),
    ]);
  });
});

/** Rows in several tables (users, accounts, API tokens) on top of the logins. */
async function writeData(testApp: TestApp): Promise<void> {
  const member = await createMember(testApp);
  const token = await api(testApp.url, member.token).post('/api/auth/tokens', { name: 'permissions-test' });
  expect(token.status).toBe(201);
}

/** What releases before this one left behind: PGlite's own 0666 files and 0755 directories, a 0644 secret, a 0755 DATA_DIR. */
function loosenLikeAnEarlierVersion(dataDir: string): void {
  chmodSync(dataDir, 0o755);
  chmodSync(join(dataDir, 'jwt-secret'), 0o644);
  for (const path of walk(join(dataDir, 'pglite'))) chmodSync(path, lstatSync(path).isDirectory() ? 0o755 : 0o666);
}

/** Every entry under DATA_DIR, outside the engine's subtrees, that group or other can read, write or enter. */
function entriesOpenToOthers(dataDir: string): string[] {
  const topLevel = readdirSync(dataDir).filter((entry) => !ENGINE_SUBTREES.has(entry));
  return topLevel
    .flatMap((entry) => walk(join(dataDir, entry)))
    .filter((path) => (lstatSync(path).mode & GROUP_OTHER_BITS) !== 0)
    .map((path) => `${relative(dataDir, path)} ${(lstatSync(path).mode & 0o7777).toString(8)}`);
}

/** `path` and everything below it; symbolic links are skipped, never followed (their own mode means nothing). */
function walk(path: string): string[] {
  const stats = lstatSync(path);
  if (stats.isSymbolicLink()) return [];
  if (!stats.isDirectory()) return [path];
  return [path, ...readdirSync(path).flatMap((child) => walk(join(path, child)))];
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o7777;
}
