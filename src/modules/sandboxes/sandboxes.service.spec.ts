import { Logger } from '@nestjs/common';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { DataSource, Repository } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { LocalVolumeAccess } from '../../integrations/sandbox/local/local-volume-access';
import { EnforcedLimits, ExecExit, SandboxProcess, SandboxProvider } from '../../integrations/sandbox/sandbox-provider';
import { ProviderUnavailableError } from '../../integrations/sandbox/sandbox-provider.errors';
import { LocalObjectStore } from '../../integrations/storage/local-object-store';
import { ObjectStore } from '../../integrations/storage/object-store';
import { StorageUnavailableError } from '../../integrations/storage/object-store.errors';
import { openTestDatabase } from '../../testing/pglite-database';
import { strictMock } from '../../testing/strict-mock';
import { ClusterLock } from '../../common/cluster-lock';
import { SnapshotEngine } from '../snapshots/snapshot-engine';
import { SnapshotsService } from '../snapshots/snapshots.service';
import { Sandbox, SandboxConfig } from './sandbox.entity';
import { FinalSyncFailedError, SandboxNotFoundError, SandboxNotRunningError } from './sandboxes.errors';
import { SandboxActivity } from './sandbox-activity';
import { PROGRESS_WRITE_INTERVAL_MS, SandboxesService } from './sandboxes.service';
import { SecretsStore } from './secrets.store';

const LIMITS: EnforcedLimits = { lifetime_seconds: 600, max_processes: 512, memory_bytes: 4 << 30, cpu_cores: null, disk_bytes: null, exec_output_bytes: 1024 };
const SECRET_VALUES: Record<string, Record<string, string>> = { github: { GH_TOKEN: 'ghp_very_secret' } };
const CONFIG: SandboxConfig = {
  image_base: null,
  dockerfile_commands: [],
  volume_name: 'default',
  volume_mount_path: '/mnt/workspace',
  workdir: '/mnt/workspace',
  env: {},
  secrets: [],
  network: 'internet',
  timeout_seconds: 600,
  idle_timeout_seconds: null,
  s3_bucket_name: null,
  s3_key_prefix: null,
  init_from_s3: false,
  snapshot_version: null,
};

describe('SandboxesService (PGlite)', () => {
  let database: { dataSource: DataSource; close(): Promise<void> };
  let rows: Repository<Sandbox>;
  let base: string;
  let account: string;
  let otherAccount: string;
  let user: string;
  let provider: jest.Mocked<SandboxProvider>;
  let snapshots: SnapshotsService;
  let service: SandboxesService;
  let activity: SandboxActivity;

  const config = AppConfig.fromEnvironment({
    DATA_DIR: '/tmp/sandboxes-service-spec',
    SANDBOX_DEFAULT_TIMEOUT_SECONDS: '600',
    SANDBOX_MAX_TIMEOUT_SECONDS: '7200',
    S3_DEFAULT_BUCKET: 'workspaces',
    STORAGE_ALLOWED_BUCKETS: 'workspaces,team-bucket',
    EXEC_OUTPUT_LIMIT_BYTES: '1024',
    EXEC_DEFAULT_TIMEOUT_SECONDS: '30',
  });

  beforeAll(async () => {
    database = await openTestDatabase();
    rows = database.dataSource.getRepository(Sandbox);
  });
  afterAll(() => database.close());

  beforeEach(async () => {
    for (const level of ['log', 'warn', 'error'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    await database.dataSource.query('DELETE FROM sandbox');
    await database.dataSource.query('DELETE FROM background_run');
    [account, user] = await newAccount();
    [otherAccount] = await newAccount();
    base = await mkdtemp(join(tmpdir(), 'sandboxes-service-spec-'));
    provider = strictMock<SandboxProvider>('provider', ['ensureApp', 'ensureVolume', 'create', 'exec', 'status', 'terminate', 'reattach', 'volume', 'runningSandboxIds', 'assertNetworkSupported', 'assertSecretsExist'], { kind: 'local' });
    provider.assertNetworkSupported.mockReturnValue(undefined);
    provider.assertSecretsExist.mockResolvedValue(undefined);
    // Sandboxes stored by the tests were made by "another instance": this one attaches to them on first use.
    provider.reattach.mockResolvedValue({ status: 'running' });
    // Each volume is a directory of its own, as the local engine keeps them.
    provider.volume.mockImplementation((accountId, volumeName) => new LocalVolumeAccess(join(base, 'volumes', accountId, volumeName)));
    build(new LocalObjectStore(join(base, 'store')));
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await rm(base, { recursive: true, force: true });
  });

  function build(store: ObjectStore): void {
    const secrets = strictMock<SecretsStore>('secrets', ['resolve']);
    secrets.resolve.mockImplementation((names) => names.map((name) => ({ name, values: SECRET_VALUES[name] })));
    snapshots = new SnapshotsService(new SnapshotEngine(store), config);
    activity = new SandboxActivity(rows);
    service = new SandboxesService(rows, provider, secrets, snapshots, config, activity, new ClusterLock(database.dataSource));
  }

  async function newAccount(): Promise<[string, string]> {
    const [row] = await database.dataSource.query(`INSERT INTO account (name) VALUES ('spec') RETURNING id`);
    const [member] = await database.dataSource.query(`INSERT INTO "user" (email, password_hash, role, account_id) VALUES (gen_random_uuid() || '@example.test', 'x', 'member', $1) RETURNING id`, [row.id]);
    return [row.id, member.id];
  }

  /** A sandbox row as the database holds it (running with engine id prov-1 unless told otherwise). */
  function storedSandbox(overrides: Partial<Sandbox> = {}, configOverrides: Partial<SandboxConfig> = {}): Promise<Sandbox> {
    return rows.save(
      rows.create({
        accountId: account,
        createdBy: user,
        provider: 'local',
        providerSandboxId: 'prov-1',
        status: 'running',
        limits: LIMITS,
        terminatedAt: null,
        lastActivityAt: new Date(),
        exitReason: null,
        error: null,
        ...overrides,
        config: { ...CONFIG, ...configOverrides },
      }),
    );
  }

  const stored = (id: string) => rows.findOneByOrFail({ id });

  async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async function writeVolume(accountId: string, volumeName: string, files: Record<string, string>): Promise<void> {
    const dir = join(base, 'volumes', accountId, volumeName);
    await mkdir(dir, { recursive: true });
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  }

  const volumeFiles = (accountId: string, volumeName: string) => readdir(join(base, 'volumes', accountId, volumeName)).catch(() => []);

  function engineStartsSandboxes(): void {
    provider.ensureApp.mockResolvedValue(undefined);
    provider.ensureVolume.mockImplementation(async (accountId, volumeName) => void (await mkdir(join(base, 'volumes', accountId, volumeName), { recursive: true })));
    provider.create.mockResolvedValue({ providerSandboxId: 'prov-new', limits: LIMITS });
    provider.status.mockResolvedValue({ status: 'running' });
  }

  describe('create', () => {
    it('starts a sandbox with the documented defaults and stores it running', async () => {
      engineStartsSandboxes();

      const sandbox = await service.create(account, user, {});

      expect(await stored(sandbox.id)).toMatchObject({ status: 'running', providerSandboxId: 'prov-new', limits: LIMITS, config: { ...CONFIG, s3_key_prefix: null } });
      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ sandboxId: sandbox.id, volumeName: 'default', timeoutSeconds: 600, bucketMount: undefined }));
    });

    it('keeps the latest progress the engine reports on the row while creating, and clears it once running', async () => {
      engineStartsSandboxes();
      const seen: unknown[] = [];
      provider.create.mockImplementation(async (spec) => {
        spec.onProgress!({ phase: 'pulling_image', detail: '127.0.0.1:5000/a:1' });
        await waitFor(async () => (await rows.findOneByOrFail({ id: spec.sandboxId })).progress?.phase === 'pulling_image');
        seen.push((await rows.findOneByOrFail({ id: spec.sandboxId })).progress);
        spec.onProgress!({ phase: 'building', step: 2, steps: 3, detail: 'RUN make' });
        await waitFor(async () => (await rows.findOneByOrFail({ id: spec.sandboxId })).progress?.phase === 'building');
        seen.push((await rows.findOneByOrFail({ id: spec.sandboxId })).progress);
        return { providerSandboxId: 'prov-new', limits: LIMITS };
      });

      const sandbox = await service.create(account, user, {});

      expect(seen).toEqual([
        { phase: 'pulling_image', step: null, steps: null, detail: '127.0.0.1:5000/a:1' },
        { phase: 'building', step: 2, steps: 3, detail: 'RUN make' },
      ]);
      expect(await stored(sandbox.id)).toMatchObject({ status: 'running', progress: null });
      expect(Logger.prototype.log).toHaveBeenCalledWith({ sandbox_id: sandbox.id, phase: 'building', step: 2, steps: 3, detail: 'RUN make' }, 'sandbox create progress');
    });

    it('writes progress at most once per interval, the latest report winning, and never after the create ended', async () => {
      engineStartsSandboxes();
      const update = jest.spyOn(rows, 'update');
      provider.create.mockImplementation(async (spec) => {
        for (let step = 1; step <= 50; step++) spec.onProgress!({ phase: 'building', step, steps: 50 });
        await new Promise((resolve) => setTimeout(resolve, PROGRESS_WRITE_INTERVAL_MS * 2.5));
        spec.onProgress!({ phase: 'starting' }); // pending when the create ends: never written
        return { providerSandboxId: 'prov-new', limits: LIMITS };
      });

      const sandbox = await service.create(account, user, {});
      await new Promise((resolve) => setTimeout(resolve, PROGRESS_WRITE_INTERVAL_MS * 2));

      const progressWrites = update.mock.calls.map(([, values]) => (values as Partial<Sandbox>).progress).filter((progress) => progress !== undefined && progress !== null);
      expect(progressWrites).toEqual([expect.objectContaining({ step: 50 })]);
      expect(await stored(sandbox.id)).toMatchObject({ status: 'running', progress: null });
    });

    it('creates the sandbox even when a progress write fails, and clears progress when the create fails', async () => {
      engineStartsSandboxes();
      const update = rows.update.bind(rows);
      jest.spyOn(rows, 'update').mockImplementation((criteria, values) => ((values as Partial<Sandbox>).progress ? Promise.reject(new Error('database hiccup')) : update(criteria, values)));
      provider.create.mockImplementation(async (spec) => {
        spec.onProgress!({ phase: 'starting' });
        await new Promise((resolve) => setTimeout(resolve, 50));
        return { providerSandboxId: 'prov-new', limits: LIMITS };
      });

      const sandbox = await service.create(account, user, {});

      expect(await stored(sandbox.id)).toMatchObject({ status: 'running', progress: null });
      expect(Logger.prototype.warn).toHaveBeenCalledWith({ sandbox_id: sandbox.id, error: 'database hiccup' }, 'could not record the create progress');
      jest.restoreAllMocks();
      for (const level of ['log', 'warn', 'error'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);

      provider.create.mockImplementation(async (spec) => {
        spec.onProgress!({ phase: 'building', step: 1, steps: 1 });
        await waitFor(async () => (await rows.findOneByOrFail({ id: spec.sandboxId })).progress !== null);
        throw new ProviderUnavailableError('sandbox', 'engine down');
      });
      await expect(service.create(account, user, {})).rejects.toThrow(ProviderUnavailableError);
      expect(await rows.findOneByOrFail({ accountId: account, status: 'error' })).toMatchObject({ progress: null });
    });

    it('hands secret values to the engine but stores only their names', async () => {
      engineStartsSandboxes();

      const sandbox = await service.create(account, user, { secrets: ['github'] });

      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ secrets: [{ name: 'github', values: SECRET_VALUES.github }] }));
      expect(JSON.stringify(await stored(sandbox.id))).not.toContain('ghp_very_secret');
    });

    it('records the failure with its reason and rethrows it when the engine cannot start the sandbox', async () => {
      engineStartsSandboxes();
      provider.create.mockRejectedValue(new ProviderUnavailableError('sandbox', 'engine down'));

      await expect(service.create(account, user, {})).rejects.toThrow(ProviderUnavailableError);

      const [row] = await rows.findBy({ accountId: account });
      expect(row).toMatchObject({ status: 'error', exitReason: 'creation_failed', error: expect.stringContaining('engine down'), terminatedAt: expect.any(Date) });
    });

    it('never stores running a sandbox whose restore failed, and stops it', async () => {
      engineStartsSandboxes();
      provider.terminate.mockResolvedValue(undefined);

      await expect(service.create(account, user, { init_from_s3: true, snapshot_version: 123 })).rejects.toThrow('123');

      const [row] = await rows.findBy({ accountId: account });
      expect(row).toMatchObject({ status: 'error', exitReason: 'creation_failed', providerSandboxId: 'prov-new' });
      expect(provider.terminate).toHaveBeenCalledWith('prov-new');
    });

    it.each([
      ['projects', 'projects/'],
      ['projects/', 'projects/'],
    ])('mounts a named bucket at the account folder below the prefix %j, where the snapshots go', async (prefix, folder) => {
      engineStartsSandboxes();

      await service.create(account, user, { s3_bucket_name: 'team-bucket', s3_key_prefix: prefix });

      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ bucketMount: { bucket: 'team-bucket', keyPrefix: `${folder}${account}/`, readOnly: false } }));
    });

    it('mounts the volume’s own location when a bucket is named without a prefix', async () => {
      engineStartsSandboxes();

      await service.create(account, user, { s3_bucket_name: 'team-bucket', volume_name: 'web' });

      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ bucketMount: { bucket: 'team-bucket', keyPrefix: `volumes/web/${account}/`, readOnly: false } }));
    });
  });

  describe('snapshot locations', () => {
    beforeEach(() => {
      engineStartsSandboxes();
      provider.terminate.mockResolvedValue(undefined);
    });

    it('restores the latest snapshot of the same volume from the default bucket, and nothing into a new volume', async () => {
      await writeVolume(account, 'project-a', { 'secret-plan.md': 'a' });
      const first = await service.create(account, user, { volume_name: 'project-a' });
      await service.terminate(first, { sync: true, force: false });
      await rm(join(base, 'volumes', account, 'project-a'), { recursive: true });

      await service.create(account, user, { volume_name: 'project-b', init_from_s3: true });
      await service.create(account, user, { volume_name: 'project-a', init_from_s3: true });

      expect(await volumeFiles(account, 'project-b')).toEqual([]);
      expect(await readFile(join(base, 'volumes', account, 'project-a', 'secret-plan.md'), 'utf8')).toBe('a');
    });

    it('shares versions between volumes that name the same prefix', async () => {
      await writeVolume(account, 'one', { 'shared.txt': 'hello' });
      const first = await service.create(account, user, { volume_name: 'one', s3_key_prefix: 'team' });
      await service.snapshotWorkspace(first);

      await service.create(account, user, { volume_name: 'two', s3_key_prefix: 'team/', init_from_s3: true });

      expect(await volumeFiles(account, 'two')).toEqual(['shared.txt']);
    });

    it('keeps rows written before per-volume locations at the account location they always used', async () => {
      const old = await storedSandbox({}, { s3_key_prefix: '' });
      await writeVolume(account, 'default', { 'old.txt': 'x' });

      const stats = await service.snapshotWorkspace(old);

      expect(await snapshots.listVersions({ accountId: account, volumeName: 'anything', bucket: null, keyPrefix: '' })).toEqual([expect.objectContaining({ version: stats.version })]);
    });
  });

  describe('refresh and ownership', () => {
    it('records a sandbox the engine says has ended as ended, with the engine reason', async () => {
      const sandbox = await storedSandbox();
      provider.status.mockResolvedValue({ status: 'terminated', exitReason: 'timeout' });

      await service.refresh(sandbox);

      expect(await stored(sandbox.id)).toMatchObject({ status: 'terminated', exitReason: 'timeout', terminatedAt: expect.any(Date) });
    });

    it('keeps a sandbox usable when one status check fails transiently, and never asks about an ended one', async () => {
      const running = await storedSandbox();
      const ended = await storedSandbox({ status: 'terminated', exitReason: 'terminated_by_user' });
      provider.status.mockRejectedValueOnce(new ProviderUnavailableError('sandbox', 'blip'));

      expect((await service.refresh(running)).status).toBe('running');
      expect((await service.refresh(ended)).status).toBe('terminated');
      expect(provider.status).toHaveBeenCalledTimes(1);
      expect((await stored(running.id)).status).toBe('running');
    });

    it("answers another account's sandbox as not found", async () => {
      const sandbox = await storedSandbox();

      await expect(service.findOwned(otherAccount, sandbox.id)).rejects.toThrow(SandboxNotFoundError);
      await expect(service.findOwned(account, sandbox.id)).resolves.toMatchObject({ id: sandbox.id });
    });
  });

  describe('list', () => {
    it("pages through the account's sandboxes newest first, filtered by status", async () => {
      const older = await storedSandbox({ status: 'terminated', createdAt: new Date('2030-01-01T00:00:00Z') });
      const newer = await storedSandbox({ status: 'terminated', createdAt: new Date('2030-01-02T00:00:00Z') });
      await storedSandbox({ status: 'error', createdAt: new Date('2030-01-03T00:00:00Z') });
      await storedSandbox({ accountId: otherAccount, status: 'terminated' });

      const first = await service.list(account, { status: 'terminated', limit: 1 });
      const second = await service.list(account, { status: 'terminated', limit: 1, cursor: first.nextCursor! });

      expect(first.items.map((sandbox) => sandbox.id)).toEqual([newer.id]);
      expect(second).toEqual({ items: [expect.objectContaining({ id: older.id })], nextCursor: null });
    });
  });

  describe('terminate', () => {
    beforeEach(() => {
      provider.status.mockResolvedValue({ status: 'running' });
      provider.terminate.mockResolvedValue(undefined);
    });

    it('snapshots to the default bucket first when no bucket was named, then terminates', async () => {
      const sandbox = await storedSandbox();
      await writeVolume(account, 'default', { 'work.txt': 'done' });

      const { snapshot } = await service.terminate(sandbox, { sync: true, force: false });

      expect(snapshot).toMatchObject({ files: 1 });
      expect(await snapshots.listVersions({ accountId: account, volumeName: 'default', bucket: null, keyPrefix: null })).toHaveLength(1);
      expect(provider.terminate).toHaveBeenCalledWith('prov-1');
      expect(await stored(sandbox.id)).toMatchObject({ status: 'terminated', exitReason: 'terminated_by_user' });
    });

    it('leaves the sandbox running when the final snapshot fails, and ends it anyway with force', async () => {
      const store = strictMock<ObjectStore>('store', ['list', 'listAll', 'put', 'get', 'copy', 'delete']);
      store.listAll.mockImplementation(() => {
        throw new StorageUnavailableError('list', 'workspaces', 'store down');
      });
      build(store);
      const sandbox = await storedSandbox();

      await expect(service.terminate(sandbox, { sync: true, force: false })).rejects.toThrow(FinalSyncFailedError);
      expect((await stored(sandbox.id)).status).toBe('running');
      expect(provider.terminate).not.toHaveBeenCalled();

      await service.terminate(sandbox, { sync: true, force: true });
      expect((await stored(sandbox.id)).status).toBe('terminated');
    });

    it('takes no snapshot with sync=false, and is idempotent', async () => {
      const sandbox = await storedSandbox();

      await service.terminate(sandbox, { sync: false, force: false });
      const again = await service.terminate(await stored(sandbox.id), { sync: true, force: false });

      expect(again.snapshot).toBeNull();
      expect(provider.terminate).toHaveBeenCalledTimes(1);
      expect(await snapshots.listVersions({ accountId: account, volumeName: 'default', bucket: null, keyPrefix: null })).toEqual([]);
    });

    it('keeps the record of whoever ended the sandbox first', async () => {
      const sandbox = await storedSandbox();
      await rows.update({ id: sandbox.id }, { status: 'terminated', exitReason: 'idle_timeout' });

      const { sandbox: result } = await service.terminate(sandbox, { sync: false, force: false });

      expect(result).toMatchObject({ status: 'terminated', exitReason: 'idle_timeout' });
      expect(await stored(sandbox.id)).toMatchObject({ status: 'terminated', exitReason: 'idle_timeout' });
    });
  });

  describe('after a service restart', () => {
    it('in a cluster, leaves a sandbox another instance may be creating right now, and that account’s engine sandboxes without a row yet', async () => {
      const clustered = new SandboxesService(rows, provider, strictMock<SecretsStore>('secrets', []), snapshots, AppConfig.fromEnvironment({ DATA_DIR: '/tmp/sandboxes-service-spec', DATABASE_URL: 'postgres://cluster.invalid/db' }), activity, new ClusterLock(database.dataSource));
      const beingCreated = await storedSandbox({ status: 'creating', providerSandboxId: null });
      const leftBehind = await storedSandbox({ accountId: otherAccount, status: 'creating', providerSandboxId: null });
      await rows.update({ id: leftBehind.id }, { createdAt: new Date(Date.now() - 11 * 60_000) });
      provider.runningSandboxIds.mockImplementation(async (accountId) => (accountId === account ? ['prov-being-created'] : ['prov-orphan']));
      provider.terminate.mockResolvedValue(undefined);

      await clustered.onApplicationBootstrap();

      expect(await stored(beingCreated.id)).toMatchObject({ status: 'creating' });
      expect(await stored(leftBehind.id)).toMatchObject({ status: 'error', exitReason: 'creation_interrupted' });
      expect(provider.terminate).not.toHaveBeenCalledWith('prov-being-created');
      expect(provider.terminate).toHaveBeenCalledWith('prov-orphan');
    });

    it('re-attaches sandboxes the engine still runs, records how the others ended, and never ends or stops one it could not ask about', async () => {
      const alive = await storedSandbox({ providerSandboxId: 'prov-alive' });
      const gone = await storedSandbox({ providerSandboxId: 'prov-gone' });
      const unreachable = await storedSandbox({ providerSandboxId: 'prov-unreachable' });
      const neverStarted = await storedSandbox({ status: 'creating', providerSandboxId: null });
      const ended = await storedSandbox({ status: 'terminated', providerSandboxId: 'prov-ended', exitReason: 'terminated_by_user' });
      provider.reattach.mockImplementation(async (providerSandboxId) => {
        if (providerSandboxId === 'prov-unreachable') throw new ProviderUnavailableError('sandbox', 'engine down');
        return providerSandboxId === 'prov-alive' ? { status: 'running' } : { status: 'terminated', exitReason: 'timeout', exitCode: 124 };
      });
      provider.runningSandboxIds.mockResolvedValue(['prov-alive', 'prov-unreachable']);

      await service.onApplicationBootstrap();

      expect(provider.terminate).not.toHaveBeenCalled();
      expect(provider.reattach).toHaveBeenCalledWith('prov-alive', expect.objectContaining({ sandboxId: alive.id, volumeName: 'default', workdir: '/mnt/workspace' }));
      expect(provider.reattach).toHaveBeenCalledTimes(3);
      expect((await stored(alive.id)).status).toBe('running');
      expect(await stored(gone.id)).toMatchObject({ status: 'terminated', exitReason: 'timeout', terminatedAt: expect.any(Date) });
      expect(await stored(unreachable.id)).toMatchObject({ status: 'running', exitReason: null });
      expect(await stored(neverStarted.id)).toMatchObject({ status: 'error', exitReason: 'creation_interrupted' });
      expect(await stored(ended.id)).toMatchObject({ exitReason: 'terminated_by_user' });
    });

    it('stops engine sandboxes that no row accounts for, and only those', async () => {
      await storedSandbox({ providerSandboxId: 'prov-alive' });
      await storedSandbox({ accountId: otherAccount, status: 'terminated' });
      provider.reattach.mockResolvedValue({ status: 'running' });
      provider.runningSandboxIds.mockImplementation(async (accountId) => (accountId === account ? ['prov-alive', 'prov-orphan'] : ['prov-other-orphan']));
      provider.terminate.mockResolvedValue(undefined);

      await service.onApplicationBootstrap();

      expect(provider.terminate.mock.calls.map(([id]) => id).sort()).toEqual(['prov-orphan', 'prov-other-orphan']);
    });

    it('leaves everything alone when the engine cannot list its sandboxes', async () => {
      await storedSandbox({ status: 'terminated' });
      provider.runningSandboxIds.mockRejectedValue(new ProviderUnavailableError('sandbox', 'engine down'));

      await service.onApplicationBootstrap();

      expect(provider.terminate).not.toHaveBeenCalled();
    });
  });

  describe('exec', () => {
    function finishedProcess(stdout: string, stderr: string, exit: ExecExit): SandboxProcess {
      const out = new PassThrough();
      const err = new PassThrough();
      out.end(stdout);
      err.end(stderr);
      return { stdout: out, stderr: err, wait: async () => exit, kill: jest.fn(() => Promise.reject(new Error('unexpected kill'))) };
    }

    beforeEach(() => provider.status.mockResolvedValue({ status: 'running' }));

    it('caps output at EXEC_OUTPUT_LIMIT_BYTES and says it was truncated', async () => {
      const sandbox = await storedSandbox();
      provider.exec.mockResolvedValue(finishedProcess('x'.repeat(3000), 'warning\n', { exitCode: 3, timedOut: false }));

      const result = await service.exec(sandbox, { command: ['sh', '-c', 'yes x'], env: { A: 'b' }, workdir: '/tmp' });

      expect(provider.exec).toHaveBeenCalledWith('prov-1', { argv: ['sh', '-c', 'yes x'], env: { A: 'b' }, workdir: '/tmp', timeoutSeconds: 30 });
      expect(result).toMatchObject({ exit_code: 3, stdout: 'x'.repeat(1024), stderr: 'warning\n', truncated: true, timed_out: false });
    });

    it('returns complete output and the timeout flag, and records the activity', async () => {
      const sandbox = await storedSandbox({ lastActivityAt: new Date('2020-01-01T00:00:00Z') });
      provider.exec.mockResolvedValue(finishedProcess('hello\n', '', { exitCode: 124, timedOut: true }));

      const result = await service.exec(sandbox, { command: ['sleep', '99'], timeout_seconds: 5 });

      expect(provider.exec).toHaveBeenCalledWith('prov-1', expect.objectContaining({ timeoutSeconds: 5 }));
      expect(result).toMatchObject({ exit_code: 124, stdout: 'hello\n', stderr: '', truncated: false, timed_out: true });
      expect((await stored(sandbox.id)).lastActivityAt.getTime()).toBeGreaterThan(Date.parse('2020-01-01T00:00:00Z'));
    });

    it('refuses to run a command in a sandbox that is not running', async () => {
      const sandbox = await storedSandbox({ status: 'terminated', exitReason: 'terminated_by_user' });

      await expect(service.exec(sandbox, { command: ['true'] })).rejects.toThrow(SandboxNotRunningError);
    });
  });

  describe('sweep', () => {
    it('ends, with a final snapshot, sandboxes idle past their own idle timeout or near their lifetime, and only those', async () => {
      const now = new Date();
      const secondsAgo = (seconds: number) => new Date(now.getTime() - seconds * 1000);
      const idleTooLong = await storedSandbox({ providerSandboxId: 'prov-idle', lastActivityAt: secondsAgo(120) }, { idle_timeout_seconds: 60, volume_name: 'idle' });
      const patient = await storedSandbox({ providerSandboxId: 'prov-patient', lastActivityAt: secondsAgo(120) }, { idle_timeout_seconds: 600 });
      const noIdleTimeout = await storedSandbox({ providerSandboxId: 'prov-forever', lastActivityAt: secondsAgo(86_400) });
      const ageing = await storedSandbox({ providerSandboxId: 'prov-old', createdAt: secondsAgo(590) }, { timeout_seconds: 600 });
      const shortLived = await storedSandbox({ providerSandboxId: 'prov-short', createdAt: secondsAgo(9) }, { timeout_seconds: 10 });
      const ended = await storedSandbox({ status: 'terminated', providerSandboxId: 'prov-ended', lastActivityAt: secondsAgo(86_400) }, { idle_timeout_seconds: 60 });
      await writeVolume(account, 'idle', { 'notes.txt': 'keep me' });
      provider.terminate.mockResolvedValue(undefined);

      await service.sweep(now);

      expect(provider.terminate.mock.calls.map(([id]) => id).sort()).toEqual(['prov-idle', 'prov-old']);
      expect(await stored(idleTooLong.id)).toMatchObject({ status: 'terminated', exitReason: 'idle_timeout' });
      expect(await stored(ageing.id)).toMatchObject({ status: 'terminated', exitReason: 'timeout' });
      for (const { id } of [patient, noIdleTimeout, shortLived]) expect((await stored(id)).status).toBe('running');
      expect((await stored(ended.id)).exitReason).toBeNull();
      expect(await snapshots.listVersions({ accountId: account, volumeName: 'idle', bucket: null, keyPrefix: null })).toEqual([expect.objectContaining({ files: 1 })]);
    });

    it('lets the work inside end first (runs end interrupted, saying why) before it stops a sandbox at its lifetime', async () => {
      const ageing = await storedSandbox({ providerSandboxId: 'prov-ageing', createdAt: new Date(Date.now() - 590_000) }, { timeout_seconds: 600 });
      const order: string[] = [];
      activity.onEnding(async (sandboxId, reason) => void order.push(`ending ${sandboxId === ageing.id ? 'ageing' : sandboxId} ${reason}`));
      provider.terminate.mockImplementation(async () => void order.push('terminate'));

      await service.sweep();

      expect(order).toEqual(['ending ageing timeout', 'terminate']);
    });

    it('records the idle stop as the reason even when a status check sees the engine stop first', async () => {
      const idle = await storedSandbox({ providerSandboxId: 'prov-racing', lastActivityAt: new Date(Date.now() - 3_600_000) }, { idle_timeout_seconds: 60 });
      provider.status.mockResolvedValue({ status: 'terminated', exitReason: 'terminated' });
      provider.terminate.mockImplementation(async () => void (await service.refresh(await stored(idle.id))));

      await service.sweep();

      expect(await stored(idle.id)).toMatchObject({ status: 'terminated', exitReason: 'idle_timeout' });
    });

    it('decides again on the row as it is now: work that ended meanwhile, on any instance, keeps its sandbox', async () => {
      const longAgo = new Date(Date.now() - 3_600_000);
      const first = await storedSandbox({ providerSandboxId: 'prov-first', lastActivityAt: longAgo }, { idle_timeout_seconds: 60 });
      const second = await storedSandbox({ providerSandboxId: 'prov-second', lastActivityAt: longAgo }, { idle_timeout_seconds: 60 });
      // While the pass ends one of them, work in the other one ends (on another instance: not busy here).
      provider.terminate.mockImplementation(async (id) => void (await rows.update({ providerSandboxId: id === 'prov-first' ? 'prov-second' : 'prov-first' }, { lastActivityAt: new Date() })));

      await service.sweep();

      expect(provider.terminate).toHaveBeenCalledTimes(1);
      expect([(await stored(first.id)).status, (await stored(second.id)).status].sort()).toEqual(['running', 'terminated']);
    });

    it('runs one pass per SANDBOX_SWEEP_INTERVAL_SECONDS through sweepOnce, recorded with the instance that ran it', async () => {
      const idle = await storedSandbox({ providerSandboxId: 'prov-idle', lastActivityAt: new Date(Date.now() - 3_600_000) }, { idle_timeout_seconds: 60 });
      provider.terminate.mockResolvedValue(undefined);

      expect(await service.sweepOnce()).toBe(true);
      expect(await service.sweepOnce()).toBe(false);

      expect(await stored(idle.id)).toMatchObject({ status: 'terminated', exitReason: 'idle_timeout' });
      const [record] = await database.dataSource.query(`SELECT passes, instance, last_finished_at FROM background_run WHERE name = 'sandbox-sweep'`);
      expect({ ...record, passes: Number(record.passes) }).toMatchObject({ passes: 1, instance: expect.any(String), last_finished_at: expect.any(Date) });
    });

    it('never idle-stops a sandbox with work in progress, and counts idleness from the end of the last work', async () => {
      const longAgo = new Date(Date.now() - 3_600_000);
      const working = await storedSandbox({ providerSandboxId: 'prov-working', lastActivityAt: longAgo }, { idle_timeout_seconds: 60 });
      provider.terminate.mockResolvedValue(undefined);
      const endRun = activity.begin(working.id);
      const endStream = activity.begin(working.id);

      await service.sweep();
      await endRun();
      await service.sweep();
      expect((await stored(working.id)).status).toBe('running');

      await endStream();
      const lastActivity = (await stored(working.id)).lastActivityAt.getTime();
      expect(lastActivity).toBeGreaterThan(longAgo.getTime());
      await service.sweep(new Date(lastActivity + 59_000));
      expect((await stored(working.id)).status).toBe('running');
      await service.sweep(new Date(lastActivity + 61_000));
      expect(await stored(working.id)).toMatchObject({ status: 'terminated', exitReason: 'idle_timeout' });
      expect(provider.terminate).toHaveBeenCalledWith('prov-working');
    });
  });
});
