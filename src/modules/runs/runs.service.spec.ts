import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { InvalidInputError } from '../../common/domain-error';
import { AppConfig } from '../../config/app-config';
import { ClaudeAgent } from '../../integrations/claude/claude.agent';
import { ObjectStore } from '../../integrations/storage/object-store';
import { LocalVolumeAccess } from '../../integrations/sandbox/local/local-volume-access';
import { SandboxProvider } from '../../integrations/sandbox/sandbox-provider';
import { openTestDatabase } from '../../testing/pglite-database';
import { insertRunIn, insertSandbox, SandboxRow } from '../../testing/run-fixtures';
import { strictMock } from '../../testing/strict-mock';
import { ModelGatewayToken } from './model-gateway-token.entity';
import { ModelGatewayTokens } from './model-gateway-tokens.service';
import { Sandbox } from '../sandboxes/sandbox.entity';
import { SandboxesService } from '../sandboxes/sandboxes.service';
import { SecretsStore } from '../sandboxes/secrets.store';
import { SnapshotEngine } from '../snapshots/snapshot-engine';
import { SnapshotsService } from '../snapshots/snapshots.service';
import { SandboxActivity } from '../sandboxes/sandbox-activity';
import { RunEvent } from './run-event.entity';
import { RunEventLog } from './run-event-log';
import { RunExecutor } from './run-executor';
import { Run } from './run.entity';
import { RunStateStore } from './run-state.store';
import { ModelNotConfiguredError, RunAlreadyActiveError, RunNotFoundError } from './runs.errors';
import { RunsService } from './runs.service';
import { WorkspaceConversations } from './workspace-conversations';
import { singleInstanceFeed } from '../../testing/run-fixtures';
import { InstanceIdentity } from '../../common/instance-identity';
import { RunLeases } from './run-leases';

describe('RunsService (real PGlite database)', () => {
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  let dataSource: DataSource;
  let provider: jest.Mocked<SandboxProvider>;
  let executor: jest.Mocked<RunExecutor>;
  let claude: jest.Mocked<ClaudeAgent>;
  let gatewayTokens: ModelGatewayTokens;
  let service: RunsService;
  let sandbox: SandboxRow;
  let volumeRoot: string;

  beforeAll(async () => {
    database = await openTestDatabase();
    dataSource = database.dataSource;
  });
  afterAll(() => database?.close());

  beforeEach(async () => {
    for (const level of ['log', 'warn'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    const config = AppConfig.fromEnvironment({ DATA_DIR: '/tmp/runs-service-spec', RUN_MAX_PROMPT_CHARS: '20', RUN_DEFAULT_TIMEOUT_SECONDS: '900' });
    provider = strictMock<SandboxProvider>('provider', ['status', 'volume', 'reattach', 'runningSandboxIds'], { kind: 'local' });
    provider.status.mockResolvedValue({ status: 'running' } as never);
    // Sandboxes stored by the tests were made by "another instance": this one attaches to them on first use.
    provider.reattach.mockResolvedValue({ status: 'running' });
    volumeRoot = await mkdtemp(join(tmpdir(), 'runs-service-volume-'));
    provider.volume.mockReturnValue(new LocalVolumeAccess(volumeRoot));
    const sandboxes = new SandboxesService(dataSource.getRepository(Sandbox), provider, new SecretsStore(config), new SnapshotsService(new SnapshotEngine(strictMock<ObjectStore>('objectStore', [])), config), config, new SandboxActivity(dataSource.getRepository(Sandbox)));
    executor = strictMock<RunExecutor>('executor', ['start', 'cancel', 'resume', 'isFollowing']);
    executor.isFollowing.mockReturnValue(false);
    executor.start.mockReturnValue(undefined);
    claude = strictMock<ClaudeAgent>('claude', ['isConfigured', 'missingCredentialsMessage']);
    claude.isConfigured.mockReturnValue(true);
    gatewayTokens = new ModelGatewayTokens(dataSource.getRepository(ModelGatewayToken));
    const runs = dataSource.getRepository(Run);
    const conversations = new WorkspaceConversations(runs, sandboxes);
    service = new RunsService(runs, new RunStateStore(runs), sandboxes, executor, new RunEventLog(dataSource.getRepository(RunEvent), singleInstanceFeed(dataSource)), claude, config, gatewayTokens, conversations, new RunLeases(runs, config, new InstanceIdentity(config)));
    sandbox = await insertSandbox(dataSource, { volumeName: 'project-a' });
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await rm(volumeRoot, { recursive: true, force: true });
  });

  const start = async (prompt: string, dto: Record<string, unknown> = {}) =>
    service.start(sandbox.userId, await dataSource.getRepository(Sandbox).findOneByOrFail({ id: sandbox.sandboxId }), { prompt, ...dto });
  const stored = (runId: string) => dataSource.getRepository(Run).findOneByOrFail({ id: runId });

  describe('start', () => {
    it('refuses with 503 naming the variables to set when no model credentials are configured', async () => {
      claude.isConfigured.mockReturnValue(false);
      claude.missingCredentialsMessage.mockReturnValue('Claude is not configured: set ANTHROPIC_API_KEY');

      const refusal = start('hi');

      await expect(refusal).rejects.toThrow(ModelNotConfiguredError);
      await expect(refusal).rejects.toMatchObject({ kind: 'unavailable', message: 'Claude is not configured: set ANTHROPIC_API_KEY' });
    });

    it('refuses a prompt over RUN_MAX_PROMPT_CHARS with 400', async () => {
      const refusal = start('x'.repeat(21));

      await expect(refusal).rejects.toThrow(InvalidInputError);
      await expect(refusal).rejects.toThrow('prompt must be at most 20 characters');
    });

    it('stores a queued run for a prompt of exactly RUN_MAX_PROMPT_CHARS and starts it in the sandbox', async () => {
      const run = await start('x'.repeat(20), { resume: false });

      expect(await stored(run.id)).toMatchObject({ status: 'queued', prompt: 'x'.repeat(20), sandboxId: sandbox.sandboxId, accountId: sandbox.accountId, createdBy: sandbox.userId });
      expect(executor.start).toHaveBeenCalledWith(run, { providerSandboxId: sandbox.providerSandboxId, workdir: '/mnt/workspace/app', volumeMountPath: '/mnt/workspace' });
    });

    /** The transcript the CLI keeps for the fixtures' working directory (/mnt/workspace/app) on the volume. */
    const holdTranscript = async (sessionId: string) => {
      await mkdir(join(volumeRoot, '.claude-state/projects/-mnt-workspace-app'), { recursive: true });
      await writeFile(join(volumeRoot, `.claude-state/projects/-mnt-workspace-app/${sessionId}.jsonl`), '{"type":"user"}\n');
    };

    it('continues the conversation the sandbox’s volume holds, whatever sandbox or volume ran it (see WorkspaceConversations)', async () => {
      const sessionId = randomUUID();
      const elsewhere = await insertSandbox(dataSource, { volumeName: 'snapshotted', accountId: sandbox.accountId, userId: sandbox.userId });
      await insertRunIn(dataSource, elsewhere, { status: 'failed', sessionId });
      await holdTranscript(sessionId);

      const run = await start('continue');

      expect(run).toMatchObject({ status: 'queued', sessionId });
      expect((await stored(run.id)).options).toMatchObject({ resume: true, resumed_session_id: sessionId, timeout_seconds: 900, allowed_tools: [], include_partial_messages: false });
      expect(provider.volume).toHaveBeenCalledWith(sandbox.accountId, 'project-a', sandbox.providerSandboxId);
    });

    it('starts a new conversation when the volume holds none, even if the volume’s last run had one', async () => {
      await insertRunIn(dataSource, sandbox, { status: 'succeeded', sessionId: randomUUID() });

      const run = await start('hello');

      expect(run.sessionId).toBeNull();
      expect(run.options.resumed_session_id).toBeNull();
    });

    it('starts a new conversation with resume: false, without looking at the volume', async () => {
      const sessionId = randomUUID();
      await insertRunIn(dataSource, sandbox, { status: 'succeeded', sessionId });
      await holdTranscript(sessionId);

      const run = await start('fresh start', { resume: false, model: 'claude-opus-4', timeout_seconds: 60 });

      expect(run.sessionId).toBeNull();
      expect(run.options).toMatchObject({ resume: false, resumed_session_id: null, model: 'claude-opus-4', timeout_seconds: 60 });
      expect(provider.volume).not.toHaveBeenCalled();
    });

    it.each(['queued', 'running'] as const)('answers 409 naming the active run when the sandbox already has a %s run', async (status) => {
      const active = await insertRunIn(dataSource, sandbox, { status });

      const refusal = start('again', { resume: false });

      await expect(refusal).rejects.toThrow(RunAlreadyActiveError);
      await expect(refusal).rejects.toMatchObject({ kind: 'conflict', details: { active_run_id: active.id } });
      expect(executor.start).not.toHaveBeenCalled();
    });

    it('starts a run beside ended ones', async () => {
      await insertRunIn(dataSource, sandbox, { status: 'succeeded' });
      await insertRunIn(dataSource, sandbox, { status: 'interrupted' });

      await expect(start('again', { resume: false })).resolves.toMatchObject({ status: 'queued' });
    });
  });

  describe('after a service restart', () => {
    it('follows again the runs whose sandbox still runs, keeping their tokens; interrupts the others with done', async () => {
      const live = await insertSandbox(dataSource);
      const gone = await insertSandbox(dataSource);
      provider.reattach.mockImplementation(async (providerSandboxId) => (providerSandboxId === live.providerSandboxId ? { status: 'running' } : { status: 'terminated', exitReason: 'timeout', exitCode: 124 }));
      provider.runningSandboxIds.mockResolvedValue(undefined);
      executor.resume.mockResolvedValue(undefined);
      const queued = await insertRunIn(dataSource, sandbox, { status: 'queued' });
      // Queued long ago: its instance stopped before starting it (a fresh one may be starting right now elsewhere).
      await dataSource.getRepository(Run).update({ id: queued.id }, { createdAt: new Date(Date.now() - 120_000) });
      const starting = await insertRunIn(dataSource, await insertSandbox(dataSource), { status: 'queued' });
      const resumed = await insertRunIn(dataSource, live, { status: 'running', sessionId: 'sess-a' });
      const orphaned = await insertRunIn(dataSource, gone, { status: 'running', sessionId: 'sess-b' });
      const ended = await insertRunIn(dataSource, gone, { status: 'succeeded' });
      const events = dataSource.getRepository(RunEvent);
      await events.insert(Array.from({ length: 7 }, (_, index) => ({ runId: queued.id, seq: index + 1, type: 'output' as const, data: { line: `${index}` } })));
      const tokenOf = { queued: await gatewayTokens.issue(queued.id), resumed: await gatewayTokens.issue(resumed.id), orphaned: await gatewayTokens.issue(orphaned.id) };

      await service.onApplicationBootstrap();
      service.onModuleDestroy();

      expect(await stored(starting.id)).toMatchObject({ status: 'queued' });
      expect(executor.resume).toHaveBeenCalledTimes(1);
      expect(executor.resume).toHaveBeenCalledWith(expect.objectContaining({ id: resumed.id }), { providerSandboxId: live.providerSandboxId, workdir: '/mnt/workspace/app', volumeMountPath: '/mnt/workspace' });
      expect(await stored(resumed.id)).toMatchObject({ status: 'running', finishedAt: null });
      await expect(gatewayTokens.resolve(tokenOf.resumed)).resolves.toBe(resumed.id);
      expect(await stored(queued.id)).toMatchObject({ status: 'interrupted', error: expect.stringContaining('before this run started'), finishedAt: expect.any(Date) });
      expect(await stored(orphaned.id)).toMatchObject({ status: 'interrupted', error: expect.stringContaining('sandbox of this run ended while the service was stopped (timeout)') });
      expect(await stored(ended.id)).toMatchObject({ status: 'succeeded', error: null });
      expect(await events.findBy({ type: 'done' })).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ runId: queued.id, seq: 8, data: expect.objectContaining({ run_id: queued.id, status: 'interrupted' }) }),
          expect.objectContaining({ runId: orphaned.id, seq: 1, data: expect.objectContaining({ run_id: orphaned.id, status: 'interrupted', session_id: 'sess-b' }) }),
        ]),
      );
      expect(await events.countBy({ runId: resumed.id })).toBe(0);
      expect(await events.countBy({ runId: ended.id })).toBe(0);
      await expect(gatewayTokens.resolve(tokenOf.queued)).resolves.toBeNull();
      await expect(gatewayTokens.resolve(tokenOf.orphaned)).resolves.toBeNull();
    });
  });

  describe('cancel', () => {
    it('stops an active run and answers it as it ended', async () => {
      const run = await insertRunIn(dataSource, sandbox, { status: 'running' });
      executor.cancel.mockImplementationOnce(async (runId) => {
        await dataSource.getRepository(Run).update({ id: runId }, { status: 'cancelled' });
        return true;
      });

      await expect(service.cancel(sandbox.accountId, sandbox.sandboxId, run.id)).resolves.toMatchObject({ status: 'cancelled' });
      expect(executor.cancel).toHaveBeenCalledWith(run.id);
    });

    it('leaves a finished run as it is', async () => {
      const run = await insertRunIn(dataSource, sandbox, { status: 'succeeded' });

      await expect(service.cancel(sandbox.accountId, sandbox.sandboxId, run.id)).resolves.toMatchObject({ status: 'succeeded' });
      expect(executor.cancel).not.toHaveBeenCalled();
    });
  });

  it('answers a run of another account or sandbox as not found', async () => {
    const other = await insertSandbox(dataSource);
    const run = await insertRunIn(dataSource, other, { status: 'succeeded' });

    await expect(service.get(sandbox.accountId, sandbox.sandboxId, run.id)).rejects.toThrow(RunNotFoundError);
    await expect(service.get(other.accountId, sandbox.sandboxId, run.id)).rejects.toThrow(RunNotFoundError);
    await expect(service.get(other.accountId, other.sandboxId, run.id)).resolves.toMatchObject({ id: run.id });
  });
});
