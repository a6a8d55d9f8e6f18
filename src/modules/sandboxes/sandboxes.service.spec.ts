import { Logger } from '@nestjs/common';
import { PassThrough } from 'node:stream';
import { Repository } from 'typeorm';
import { InvalidInputError } from '../../common/domain-error';
import { AppConfig } from '../../config/app-config';
import { EnforcedLimits, ExecExit, SandboxProcess, SandboxProvider, VolumeAccess } from '../../integrations/sandbox/sandbox-provider';
import { ProviderUnavailableError, UnsupportedNetworkPolicyError } from '../../integrations/sandbox/sandbox-provider.errors';
import { SnapshotEngine, SnapshotStats } from '../snapshots/snapshot-engine';
import { SnapshotFailedError } from '../snapshots/snapshot.errors';
import { Sandbox, SandboxConfig } from './sandbox.entity';
import { FinalSyncFailedError, SandboxNotFoundError, SandboxNotRunningError } from './sandboxes.errors';
import { SandboxesService } from './sandboxes.service';
import { SecretsStore } from './secrets.store';
import { strictMock } from '../../testing/strict-mock';


const ACCOUNT = 'acc-1';
const OTHER_ACCOUNT = 'acc-2';
const USER = 'u-1';
const LIMITS: EnforcedLimits = { lifetime_seconds: 600, max_processes: 512, memory_bytes: 4 << 30, cpu_cores: null, disk_bytes: null, exec_output_bytes: 1024 };
const STATS: SnapshotStats = { version: 3, files: 2, bytes_total: 10, bytes_uploaded: 10, files_copied: 0, duration_ms: 5, errors: [], skipped: [] };
const SECRET_VALUES: Record<string, Record<string, string>> = { github: { GH_TOKEN: 'ghp_very_secret' } };

describe('SandboxesService', () => {
  let rows: Map<string, Sandbox>;
  /** Copies of every saved row, in order: what a reader of the database would have seen. */
  let saves: Sandbox[];
  let repository: jest.Mocked<Repository<Sandbox>>;
  let provider: jest.Mocked<SandboxProvider>;
  let secrets: jest.Mocked<SecretsStore>;
  let snapshots: jest.Mocked<SnapshotEngine>;
  let volume: VolumeAccess;
  let service: SandboxesService;

  beforeEach(() => {
    for (const level of ['log', 'warn', 'error'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    rows = new Map();
    saves = [];
    repository = strictMock<Repository<Sandbox>>('sandboxRepository', ['create', 'save', 'findOneBy', 'findBy', 'update', 'createQueryBuilder']);
    repository.create.mockImplementation(((fields: Partial<Sandbox>) => Object.assign(new Sandbox(), fields)) as never);
    repository.save.mockImplementation((async (sandbox: Sandbox) => {
      sandbox.id ??= `00000000-0000-4000-8000-${String(rows.size + 1).padStart(12, '0')}`;
      sandbox.createdAt ??= new Date();
      rows.set(sandbox.id, sandbox);
      saves.push({ ...sandbox });
      return sandbox;
    }) as never);
    repository.findOneBy.mockImplementation((async (where: { id: string; accountId: string }) => {
      const row = rows.get(where.id);
      return row?.accountId === where.accountId ? row : null;
    }) as never);
    provider = strictMock<SandboxProvider>('provider', ['isConfigured', 'ensureApp', 'ensureVolume', 'create', 'exec', 'status', 'terminate', 'reattach', 'volume', 'runningSandboxIds', 'assertNetworkSupported'], { kind: 'local' });
    provider.assertNetworkSupported.mockReturnValue(undefined);
    secrets = strictMock<SecretsStore>('secrets', ['resolve']);
    secrets.resolve.mockImplementation((names) => names.map((name) => ({ name, values: SECRET_VALUES[name] })));
    snapshots = strictMock<SnapshotEngine>('snapshots', ['snapshot', 'restore']);
    volume = strictMock<VolumeAccess>('volume', ['list', 'stat', 'openRead', 'write', 'mkdir', 'symlink', 'remove', 'walk']);
    const config = AppConfig.fromEnvironment({
      DATA_DIR: '/tmp/sandboxes-service-spec',
      SANDBOX_DEFAULT_TIMEOUT_SECONDS: '600',
      SANDBOX_MAX_TIMEOUT_SECONDS: '7200',
      S3_DEFAULT_BUCKET: 'workspaces',
      STORAGE_ALLOWED_BUCKETS: 'workspaces,team-bucket',
      EXEC_OUTPUT_LIMIT_BYTES: '1024',
      EXEC_DEFAULT_TIMEOUT_SECONDS: '30',
    });
    service = new SandboxesService(repository, provider, secrets, snapshots, config);
  });
  afterEach(() => jest.restoreAllMocks());

  /** A sandbox row as the database holds it (running with engine id prov-1 unless told otherwise). */
  function storedSandbox(overrides: Partial<Sandbox> = {}, config: Partial<SandboxConfig> = {}): Sandbox {
    const id = `00000000-0000-4000-9000-${String(rows.size + 1).padStart(12, '0')}`;
    const sandbox = Object.assign(new Sandbox(), {
      id,
      accountId: ACCOUNT,
      createdBy: USER,
      provider: 'local',
      providerSandboxId: 'prov-1',
      status: 'running',
      limits: LIMITS,
      createdAt: new Date('2030-01-01T00:00:00Z'),
      terminatedAt: null,
      lastActivityAt: new Date('2030-01-01T00:00:00Z'),
      exitReason: null,
      error: null,
      ...overrides,
      config: {
        image_base: null,
        dockerfile_commands: [],
        volume_name: 'default',
        volume_mount_path: '/mnt/workspace',
        workdir: '/mnt/workspace',
        env: {},
        secrets: [],
        network: 'open',
        timeout_seconds: 600,
        idle_timeout_seconds: null,
        s3_bucket_name: null,
        s3_key_prefix: '',
        init_from_s3: false,
        snapshot_version: null,
        ...config,
      },
    } satisfies Sandbox);
    rows.set(id, sandbox);
    return sandbox;
  }

  function engineStartsSandboxes(): void {
    provider.ensureApp.mockResolvedValue(undefined);
    provider.ensureVolume.mockResolvedValue(undefined);
    provider.create.mockResolvedValue({ providerSandboxId: 'prov-new', limits: LIMITS });
  }

  describe('create', () => {
    it('starts a sandbox with the documented defaults and reports it running', async () => {
      engineStartsSandboxes();

      const sandbox = await service.create(ACCOUNT, USER, {});

      expect(provider.ensureApp).toHaveBeenCalledWith(ACCOUNT);
      expect(provider.ensureVolume).toHaveBeenCalledWith(ACCOUNT, 'default');
      expect(provider.create).toHaveBeenCalledWith({
        sandboxId: sandbox.id,
        accountId: ACCOUNT,
        imageBase: undefined,
        dockerfileCommands: [],
        volumeName: 'default',
        volumeMountPath: '/mnt/workspace',
        workdir: '/mnt/workspace',
        env: {},
        secrets: [],
        network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] },
        timeoutSeconds: 600,
        idleTimeoutSeconds: undefined,
        bucketMount: undefined,
      });
      expect(sandbox).toMatchObject({ status: 'running', providerSandboxId: 'prov-new', limits: LIMITS, accountId: ACCOUNT, createdBy: USER });
      expect(sandbox.config).toMatchObject({ volume_name: 'default', volume_mount_path: '/mnt/workspace', workdir: '/mnt/workspace', network: 'internet', cidr_allowlist: [], allowed_domains: [], timeout_seconds: 600 });
      expect(saves.map((row) => row.status)).toEqual(['creating', 'running']);
    });

    it('works in the volume mount path unless a workdir is given', async () => {
      engineStartsSandboxes();

      const inMount = await service.create(ACCOUNT, USER, { volume_mount_path: '/data' });
      const explicit = await service.create(ACCOUNT, USER, { volume_mount_path: '/data', workdir: '/' });

      expect(inMount.config.workdir).toBe('/data');
      expect(explicit.config.workdir).toBe('/');
    });

    it.each([
      ['a timeout over the cap', { timeout_seconds: 7201 }, /^timeout_seconds must not exceed 7200/],
      ['an idle timeout over the cap', { idle_timeout_seconds: 7201 }, /^idle_timeout_seconds must not exceed 7200/],
      ['a bucket not allowed', { s3_bucket_name: 'someone-elses' }, /^s3_bucket_name /],
      ['a key prefix leaving its folder', { s3_key_prefix: 'projects/../../other/' }, /^s3_key_prefix /],
      ['a key prefix starting with /', { s3_key_prefix: '/abs/' }, /^s3_key_prefix /],
      ['snapshot_version without init_from_s3', { snapshot_version: 3 }, /^snapshot_version /],
      ['an unsupported Dockerfile instruction', { dockerfile_commands: ['RUN true', 'FROM ubuntu'] }, /^dockerfile_commands\[1\]: unsupported instruction FROM/],
    ])('refuses %s, naming the field, before recording anything', async (_case, dto, message) => {
      const refusal = service.create(ACCOUNT, USER, dto);

      await expect(refusal).rejects.toThrow(InvalidInputError);
      await expect(refusal).rejects.toThrow(message);
      expect(repository.save).not.toHaveBeenCalled();
    });

    it('hands secret values to the engine but stores only their names', async () => {
      engineStartsSandboxes();

      const sandbox = await service.create(ACCOUNT, USER, { secrets: ['github'] });

      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ secrets: [{ name: 'github', values: { GH_TOKEN: 'ghp_very_secret' } }] }));
      expect(sandbox.config.secrets).toEqual(['github']);
      expect(JSON.stringify(saves)).not.toContain('ghp_very_secret');
    });

    it('records the failure with its reason and rethrows it when the engine cannot start the sandbox', async () => {
      const failure = new ProviderUnavailableError('sandbox', 'engine unreachable');
      provider.ensureApp.mockResolvedValue(undefined);
      provider.ensureVolume.mockResolvedValue(undefined);
      provider.create.mockRejectedValue(failure);

      await expect(service.create(ACCOUNT, USER, {})).rejects.toBe(failure);

      const recorded = saves[saves.length - 1];
      expect(recorded).toMatchObject({ status: 'error', exitReason: 'creation_failed', error: expect.stringContaining('engine unreachable') });
      expect(recorded.terminatedAt).toBeInstanceOf(Date);
    });

    it('restores the requested snapshot through the new sandbox before reporting it running', async () => {
      const steps: string[] = [];
      provider.ensureApp.mockImplementation(async () => void steps.push('app'));
      provider.ensureVolume.mockImplementation(async () => void steps.push('volume'));
      provider.volume.mockReturnValue(volume);
      snapshots.restore.mockImplementation(async () => {
        steps.push('restore');
        return { version: 4, files: 1, bytes_total: 1, directories: 0, symlinks: 0, duration_ms: 1 };
      });
      provider.create.mockImplementation(async () => {
        steps.push('create');
        return { providerSandboxId: 'prov-new', limits: LIMITS };
      });

      await service.create(ACCOUNT, USER, { init_from_s3: true, s3_bucket_name: 'team-bucket', s3_key_prefix: 'projects/demo/', snapshot_version: 4 });

      expect(steps).toEqual(['app', 'volume', 'create', 'restore']);
      expect(provider.volume).toHaveBeenCalledWith(ACCOUNT, 'default', 'prov-new');
      expect(saves[saves.length - 1]).toMatchObject({ status: 'running', providerSandboxId: 'prov-new' });
      expect(snapshots.restore).toHaveBeenCalledWith(volume, { bucket: 'team-bucket', keyPrefix: 'projects/demo/', accountId: ACCOUNT }, 4);
      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ bucketMount: { bucket: 'team-bucket', keyPrefix: `projects/demo/${ACCOUNT}/`, readOnly: false } }));
    });

    it('restores the latest snapshot of the default bucket when no bucket is named', async () => {
      engineStartsSandboxes();
      provider.volume.mockReturnValue(volume);
      snapshots.restore.mockResolvedValue(null);

      await service.create(ACCOUNT, USER, { init_from_s3: true });

      expect(snapshots.restore).toHaveBeenCalledWith(volume, { bucket: 'workspaces', keyPrefix: '', accountId: ACCOUNT }, undefined);
    });

    it('never reports running a sandbox whose restore failed, and stops it', async () => {
      const failure = new Error('bucket unreachable');
      engineStartsSandboxes();
      provider.terminate.mockResolvedValue(undefined);
      provider.volume.mockReturnValue(volume);
      snapshots.restore.mockRejectedValue(failure);

      await expect(service.create(ACCOUNT, USER, { init_from_s3: true })).rejects.toBe(failure);
      expect(saves.some((saved) => saved.status === 'running')).toBe(false);
      expect(saves[saves.length - 1]).toMatchObject({ status: 'error', error: 'bucket unreachable' });
      expect(provider.terminate).toHaveBeenCalledTimes(1);
    });
  });

  describe('network policy', () => {
    it('answers the deprecated "open" as "internet"', async () => {
      engineStartsSandboxes();
      const sandbox = await service.create(ACCOUNT, USER, { network: 'open' });
      expect(sandbox.config).toMatchObject({ network: 'internet', cidr_allowlist: [], allowed_domains: [] });
      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] } }));
    });

    it('stores an allowlist normalized and de-duplicated and hands it to the engine', async () => {
      engineStartsSandboxes();
      const sandbox = await service.create(ACCOUNT, USER, {
        network: 'allowlist',
        cidr_allowlist: ['203.0.113.7', '2001:DB8:0::/32', '203.0.113.7/32'],
        allowed_domains: ['Registry.NPMJS.org.', '*.GitHub.com', 'registry.npmjs.org'],
      });
      const applied = { cidr_allowlist: ['203.0.113.7/32', '2001:db8::/32'], allowed_domains: ['registry.npmjs.org', '*.github.com'] };
      expect(sandbox.config).toMatchObject({ network: 'allowlist', ...applied });
      const network = { mode: 'allowlist', cidrAllowlist: applied.cidr_allowlist, allowedDomains: applied.allowed_domains };
      expect(provider.assertNetworkSupported).toHaveBeenCalledWith(network);
      expect(provider.create).toHaveBeenCalledWith(expect.objectContaining({ network }));
    });

    it('accepts empty lists with any mode', async () => {
      engineStartsSandboxes();
      const sandbox = await service.create(ACCOUNT, USER, { network: 'none', cidr_allowlist: [], allowed_domains: [] });
      expect(sandbox.config).toMatchObject({ network: 'none', cidr_allowlist: [], allowed_domains: [] });
    });

    it.each<[string, Record<string, unknown>, RegExp]>([
      ['CIDRs without allowlist', { cidr_allowlist: ['203.0.113.0/24'] }, /^cidr_allowlist is only valid with network "allowlist" \(network is "internet"\)$/],
      ['domains with network none', { network: 'none', allowed_domains: ['example.com'] }, /^allowed_domains is only valid with network "allowlist"/],
      ['host bits', { network: 'allowlist', cidr_allowlist: ['203.0.113.0/24', '10.1.2.3/8'] }, /^cidr_allowlist\[1\]: "10.1.2.3\/8" has host bits set; the network is 10.0.0.0\/8$/],
      ['a blocked range', { network: 'allowlist', cidr_allowlist: ['169.254.169.254/32'] }, /^cidr_allowlist\[0\]: "169.254.169.254\/32" lies inside 169.254.0.0\/16/],
      ['not a CIDR', { network: 'allowlist', cidr_allowlist: ['example.com'] }, /^cidr_allowlist\[0\]: "example.com" is not an IPv4 or IPv6 CIDR$/],
      ['a port', { network: 'allowlist', allowed_domains: ['example.com:443'] }, /^allowed_domains\[0\]: "example.com:443" is not a host name/],
      ['an IP as a domain', { network: 'allowlist', allowed_domains: ['8.8.8.8'] }, /^allowed_domains\[0\]: "8.8.8.8" is an IP address/],
    ])('refuses %s, naming the field, before anything is stored', async (_label, dto, message) => {
      await expect(service.create(ACCOUNT, USER, dto)).rejects.toThrow(message);
      await expect(service.create(ACCOUNT, USER, dto)).rejects.toBeInstanceOf(InvalidInputError);
      expect(saves).toEqual([]);
    });

    it('stores nothing and starts nothing when the engine cannot enforce the policy', async () => {
      provider.assertNetworkSupported.mockImplementation(() => {
        throw new UnsupportedNetworkPolicyError('allowed_domains', 'not on this engine');
      });
      await expect(service.create(ACCOUNT, USER, { network: 'allowlist', allowed_domains: ['example.com'] })).rejects.toBeInstanceOf(UnsupportedNetworkPolicyError);
      expect(saves).toEqual([]);
      expect(provider.ensureApp).not.toHaveBeenCalled();
    });

    it('re-attaches a sandbox stored with "open" (before the allowlist existed) as internet', async () => {
      const legacy = storedSandbox({ providerSandboxId: 'prov-legacy' }, { network: 'open' });
      repository.findBy.mockResolvedValue([legacy]);
      provider.reattach.mockResolvedValue(true);
      repository.createQueryBuilder.mockReturnValue({ select: () => ({ getRawMany: async () => [] }) } as never);
      await service.onApplicationBootstrap();
      expect(provider.reattach).toHaveBeenCalledWith('prov-legacy', expect.objectContaining({ network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] } }));
    });
  });

  describe('get', () => {
    it('reports a sandbox the engine says has ended as ended, with the engine reason', async () => {
      const stored = storedSandbox();
      provider.status.mockResolvedValue({ status: 'terminated', exitReason: 'timeout' });

      const sandbox = await service.get(ACCOUNT, stored.id);

      expect(provider.status).toHaveBeenCalledWith('prov-1');
      expect(sandbox).toMatchObject({ status: 'terminated', exitReason: 'timeout' });
      expect(saves[saves.length - 1]).toMatchObject({ status: 'terminated', exitReason: 'timeout', terminatedAt: expect.any(Date) });
    });

    it('keeps a sandbox the engine still runs as running', async () => {
      const stored = storedSandbox();
      provider.status.mockResolvedValue({ status: 'running' });

      await expect(service.get(ACCOUNT, stored.id)).resolves.toMatchObject({ status: 'running' });
      expect(saves).toEqual([]);
    });

    it('does not ask the engine about a sandbox that already ended', async () => {
      const stored = storedSandbox({ status: 'terminated', exitReason: 'terminated_by_user' });

      await expect(service.get(ACCOUNT, stored.id)).resolves.toMatchObject({ status: 'terminated', exitReason: 'terminated_by_user' });
    });

    it("answers another account's sandbox as not found", async () => {
      const stored = storedSandbox({ accountId: OTHER_ACCOUNT });

      await expect(service.get(ACCOUNT, stored.id)).rejects.toThrow(SandboxNotFoundError);
    });

    it('keeps a sandbox usable when one status check fails transiently', async () => {
      const stored = storedSandbox();
      provider.status.mockRejectedValueOnce(new ProviderUnavailableError('sandbox', 'connection reset'));
      provider.status.mockResolvedValueOnce({ status: 'running' });

      await service.get(ACCOUNT, stored.id).catch(() => undefined);

      await expect(service.get(ACCOUNT, stored.id)).resolves.toMatchObject({ status: 'running' });
    });
  });

  describe('terminate', () => {
    const sync = { sync: true, force: false };

    it('snapshots the workspace first, then terminates, when the sandbox has a bucket', async () => {
      const stored = storedSandbox({}, { s3_bucket_name: 'team-bucket', s3_key_prefix: 'p/' });
      const steps: string[] = [];
      provider.status.mockResolvedValue({ status: 'running' });
      provider.volume.mockReturnValue(volume);
      snapshots.snapshot.mockImplementation(async () => {
        steps.push('snapshot');
        return STATS;
      });
      provider.terminate.mockImplementation(async () => void steps.push('terminate'));

      const { sandbox, snapshot } = await service.terminate(ACCOUNT, stored.id, sync);

      expect(steps).toEqual(['snapshot', 'terminate']);
      expect(snapshots.snapshot).toHaveBeenCalledWith(volume, { bucket: 'team-bucket', keyPrefix: 'p/', accountId: ACCOUNT });
      expect(provider.terminate).toHaveBeenCalledWith('prov-1');
      expect(snapshot).toEqual(STATS);
      expect(sandbox).toMatchObject({ status: 'terminated', exitReason: 'terminated_by_user' });
    });

    it('leaves the sandbox running when the final snapshot fails', async () => {
      const stored = storedSandbox({}, { s3_bucket_name: 'team-bucket' });
      const failure = new SnapshotFailedError({ ...STATS, errors: [{ path: 'big.bin', error: 'EIO' }] });
      provider.status.mockResolvedValue({ status: 'running' });
      provider.volume.mockReturnValue(volume);
      snapshots.snapshot.mockRejectedValue(failure);

      const refusal = service.terminate(ACCOUNT, stored.id, sync);

      await expect(refusal).rejects.toThrow(FinalSyncFailedError);
      await expect(refusal).rejects.toThrow(/still running: snapshot failed, version 3 not committed: big.bin: EIO/);
      expect(provider.terminate).not.toHaveBeenCalled();
      expect(rows.get(stored.id)?.status).toBe('running');
    });

    it('terminates anyway with force when the final snapshot fails', async () => {
      const stored = storedSandbox({}, { s3_bucket_name: 'team-bucket' });
      provider.status.mockResolvedValue({ status: 'running' });
      provider.volume.mockReturnValue(volume);
      snapshots.snapshot.mockRejectedValue(new SnapshotFailedError({ ...STATS, errors: [{ path: 'big.bin', error: 'EIO' }] }));
      provider.terminate.mockResolvedValue(undefined);

      const { sandbox, snapshot } = await service.terminate(ACCOUNT, stored.id, { sync: true, force: true });

      expect(snapshot).toBeNull();
      expect(provider.terminate).toHaveBeenCalledWith('prov-1');
      expect(sandbox.status).toBe('terminated');
    });

    it.each([
      ['sync is off', { s3_bucket_name: 'team-bucket' }, { sync: false, force: false }],
      ['the sandbox has no bucket', {}, sync],
    ])('terminates without a snapshot when %s', async (_case, config, options) => {
      const stored = storedSandbox({}, config);
      provider.status.mockResolvedValue({ status: 'running' });
      provider.terminate.mockResolvedValue(undefined);

      const { sandbox, snapshot } = await service.terminate(ACCOUNT, stored.id, options);

      expect(snapshot).toBeNull();
      expect(sandbox.status).toBe('terminated');
    });

    it('is idempotent: terminating again changes nothing and does not call the engine', async () => {
      const stored = storedSandbox();
      provider.status.mockResolvedValue({ status: 'running' });
      provider.terminate.mockResolvedValue(undefined);

      const first = await service.terminate(ACCOUNT, stored.id, sync);
      const terminatedAt = first.sandbox.terminatedAt;
      const second = await service.terminate(ACCOUNT, stored.id, sync);

      expect(provider.terminate).toHaveBeenCalledTimes(1);
      expect(second.sandbox).toMatchObject({ status: 'terminated', exitReason: 'terminated_by_user', terminatedAt });
      expect(second.snapshot).toBeNull();
    });
  });

  describe('snapshotWorkspace', () => {
    it('takes one snapshot of a location at a time, so two versions never race', async () => {
      const first = storedSandbox({}, { s3_bucket_name: 'team-bucket' });
      const second = storedSandbox({ providerSandboxId: 'prov-2' }, { s3_bucket_name: 'team-bucket' });
      provider.volume.mockReturnValue(volume);
      let inFlight = 0;
      let mostInFlight = 0;
      snapshots.snapshot.mockImplementation(async () => {
        mostInFlight = Math.max(mostInFlight, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 10));
        inFlight--;
        return STATS;
      });

      await Promise.all([service.snapshotWorkspace(first), service.snapshotWorkspace(second)]);

      expect(snapshots.snapshot).toHaveBeenCalledTimes(2);
      expect(mostInFlight).toBe(1);
    });
  });

  describe('after a service restart', () => {
    it('re-attaches sandboxes the engine still runs and records the others as ended by the restart', async () => {
      const alive = storedSandbox({ providerSandboxId: 'prov-alive' });
      const gone = storedSandbox({ providerSandboxId: 'prov-gone' });
      const unreachable = storedSandbox({ providerSandboxId: 'prov-unreachable' });
      const neverStarted = storedSandbox({ status: 'creating', providerSandboxId: null });
      repository.findBy.mockResolvedValueOnce([alive, gone, unreachable, neverStarted]);
      provider.reattach.mockImplementation(async (providerSandboxId) => {
        if (providerSandboxId === 'prov-unreachable') throw new ProviderUnavailableError('sandbox', 'engine down');
        return providerSandboxId === 'prov-alive';
      });

      accountsWithSandboxes([ACCOUNT]);
      provider.runningSandboxIds.mockResolvedValue(undefined);

      await service.onApplicationBootstrap();

      expect(provider.reattach).toHaveBeenCalledWith('prov-alive', expect.objectContaining({ sandboxId: alive.id, volumeName: 'default', workdir: '/mnt/workspace' }));
      expect(alive.status).toBe('running');
      for (const ended of [gone, unreachable, neverStarted]) {
        expect(ended).toMatchObject({ status: 'terminated', exitReason: 'service_restarted', terminatedAt: expect.any(Date) });
      }
      expect(provider.reattach).toHaveBeenCalledTimes(3);
    });

    it('stops engine sandboxes that no row accounts for, and only those', async () => {
      const alive = storedSandbox({ providerSandboxId: 'prov-alive' });
      repository.findBy.mockResolvedValueOnce([alive]);
      provider.reattach.mockResolvedValue(true);
      accountsWithSandboxes([ACCOUNT, OTHER_ACCOUNT]);
      provider.runningSandboxIds.mockImplementation(async (accountId) => (accountId === ACCOUNT ? ['prov-alive', 'prov-orphan'] : ['prov-other-orphan']));
      provider.terminate.mockResolvedValue(undefined);

      await service.onApplicationBootstrap();

      expect(provider.terminate.mock.calls.map(([id]) => id).sort()).toEqual(['prov-orphan', 'prov-other-orphan']);
      expect(alive.status).toBe('running');
    });

    it('leaves everything alone when the engine cannot list its sandboxes', async () => {
      repository.findBy.mockResolvedValueOnce([]);
      accountsWithSandboxes([ACCOUNT]);
      provider.runningSandboxIds.mockRejectedValue(new ProviderUnavailableError('sandbox', 'engine down'));

      await service.onApplicationBootstrap();

      expect(provider.terminate).not.toHaveBeenCalled();
    });
  });

  /** The accounts the boot-time reconciliation finds in the sandbox table. */
  function accountsWithSandboxes(accountIds: string[]): void {
    const rawRows = accountIds.map((accountId) => ({ accountId }));
    repository.createQueryBuilder.mockReturnValue({ select: () => ({ getRawMany: async () => rawRows }) } as never);
  }

  describe('exec', () => {
    function finishedProcess(stdout: string, stderr: string, exit: ExecExit): SandboxProcess {
      const out = new PassThrough();
      const err = new PassThrough();
      out.end(stdout);
      err.end(stderr);
      return { stdout: out, stderr: err, wait: async () => exit, kill: jest.fn(() => Promise.reject(new Error('unexpected kill'))) };
    }

    it('caps output at EXEC_OUTPUT_LIMIT_BYTES and says it was truncated', async () => {
      const stored = storedSandbox();
      provider.status.mockResolvedValue({ status: 'running' });
      provider.exec.mockResolvedValue(finishedProcess('x'.repeat(3000), 'warning\n', { exitCode: 3, timedOut: false }));
      repository.update.mockResolvedValue({ affected: 1 } as never);

      const result = await service.exec(ACCOUNT, stored.id, { command: ['sh', '-c', 'yes x'], env: { A: 'b' }, workdir: '/tmp' });

      expect(provider.exec).toHaveBeenCalledWith('prov-1', { argv: ['sh', '-c', 'yes x'], env: { A: 'b' }, workdir: '/tmp', timeoutSeconds: 30 });
      expect(result).toMatchObject({ exit_code: 3, stdout: 'x'.repeat(1024), stderr: 'warning\n', truncated: true, timed_out: false });
    });

    it('returns complete output, the timeout flag and records the activity', async () => {
      const stored = storedSandbox();
      provider.status.mockResolvedValue({ status: 'running' });
      provider.exec.mockResolvedValue(finishedProcess('hello\n', '', { exitCode: 124, timedOut: true }));
      repository.update.mockResolvedValue({ affected: 1 } as never);

      const result = await service.exec(ACCOUNT, stored.id, { command: ['sleep', '99'], timeout_seconds: 5 });

      expect(provider.exec).toHaveBeenCalledWith('prov-1', expect.objectContaining({ timeoutSeconds: 5 }));
      expect(result).toMatchObject({ exit_code: 124, stdout: 'hello\n', stderr: '', truncated: false, timed_out: true });
      expect(repository.update).toHaveBeenCalledWith({ id: stored.id }, { lastActivityAt: expect.any(Date) });
    });

    it('refuses to run a command in a sandbox that is not running', async () => {
      const stored = storedSandbox({ status: 'terminated', exitReason: 'terminated_by_user' });

      await expect(service.exec(ACCOUNT, stored.id, { command: ['true'] })).rejects.toThrow(SandboxNotRunningError);
    });
  });

  describe('idle sweep', () => {
    it('terminates only sandboxes idle for longer than their own idle timeout', async () => {
      const now = new Date('2030-01-01T12:00:00Z');
      const secondsAgo = (seconds: number) => new Date(now.getTime() - seconds * 1000);
      const idleTooLong = storedSandbox({ providerSandboxId: 'prov-idle', lastActivityAt: secondsAgo(120) }, { idle_timeout_seconds: 60 });
      const idleButWithinLimit = storedSandbox({ providerSandboxId: 'prov-patient', lastActivityAt: secondsAgo(120) }, { idle_timeout_seconds: 600 });
      const withoutIdleTimeout = storedSandbox({ providerSandboxId: 'prov-forever', lastActivityAt: secondsAgo(86_400) });
      repository.findBy.mockResolvedValueOnce([idleTooLong, idleButWithinLimit, withoutIdleTimeout]);
      provider.terminate.mockResolvedValue(undefined);

      await service.terminateIdle(now);

      expect(provider.terminate).toHaveBeenCalledTimes(1);
      expect(provider.terminate).toHaveBeenCalledWith('prov-idle');
      expect(idleTooLong).toMatchObject({ status: 'terminated', exitReason: 'idle_timeout' });
      expect(idleButWithinLimit.status).toBe('running');
      expect(withoutIdleTimeout.status).toBe('running');
    });
  });
});
