import { ModelGatewayTokens } from '../model-gateway/model-gateway-tokens.service';
import { Logger } from '@nestjs/common';
import { InsertResult, QueryFailedError, Repository } from 'typeorm';
import { InvalidInputError } from '../../common/domain-error';
import { AppConfig } from '../../config/app-config';
import { ClaudeProvider } from '../../integrations/claude/claude.provider';
import { Sandbox } from '../sandboxes/sandbox.entity';
import { SandboxesService } from '../sandboxes/sandboxes.service';
import { RunEvent } from './run-event.entity';
import { RunEventLog } from './run-event-log';
import { RunExecutor } from './run-executor';
import { Run } from './run.entity';
import { ModelNotConfiguredError, RunAlreadyActiveError, RunNotFoundError } from './runs.errors';
import { RunsService } from './runs.service';
import { strictMock } from '../../testing/strict-mock';


/** The query that looks up the session to resume: records its parameters, answers `latest`. */
function sessionQuery(latest: Partial<Run> | null) {
  const builder = { innerJoin: jest.fn(), where: jest.fn(), andWhere: jest.fn(), orderBy: jest.fn(), getOne: jest.fn(async () => latest) };
  for (const step of [builder.innerJoin, builder.where, builder.andWhere, builder.orderBy]) step.mockReturnValue(builder);
  const parameters = () => Object.assign({}, ...[...builder.where.mock.calls, ...builder.andWhere.mock.calls].map((call) => call[1] ?? {})) as Record<string, unknown>;
  return { builder, parameters };
}

const ACCOUNT = 'acc-1';
const USER = 'u-1';
const SANDBOX_ID = 'sb-1';

describe('RunsService', () => {
  let runs: jest.Mocked<Repository<Run>>;
  let sandboxes: jest.Mocked<SandboxesService>;
  let executor: jest.Mocked<RunExecutor>;
  let eventRepository: jest.Mocked<Repository<RunEvent>>;
  let claude: jest.Mocked<ClaudeProvider>;
  let service: RunsService;
  let gatewayTokens: jest.Mocked<ModelGatewayTokens>;

  beforeEach(() => {
    for (const level of ['log', 'warn'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    runs = strictMock<Repository<Run>>('runs', ['create', 'save', 'findBy', 'findOneBy', 'find', 'createQueryBuilder']);
    sandboxes = strictMock<SandboxesService>('sandboxes', ['requireRunning', 'touch', 'findOwned'], { providerKind: 'local' });
    executor = strictMock<RunExecutor>('executor', ['start', 'cancel', 'onModuleDestroy']);
    eventRepository = strictMock<Repository<RunEvent>>('runEvents', ['insert', 'find', 'findOne']);
    claude = strictMock<ClaudeProvider>('claude', ['isConfigured', 'missingCredentialsMessage', 'buildInvocation']);
    const config = AppConfig.fromEnvironment({ DATA_DIR: '/tmp/runs-service-spec', RUN_MAX_PROMPT_CHARS: '20', RUN_DEFAULT_TIMEOUT_SECONDS: '900' });
    gatewayTokens = strictMock<ModelGatewayTokens>('gatewayTokens', ['revokeEndedRuns', 'usageOf']);
    service = new RunsService(runs, sandboxes, executor, new RunEventLog(eventRepository), claude, config, gatewayTokens);
  });
  afterEach(() => jest.restoreAllMocks());

  describe('start', () => {
    const sandbox = {
      id: SANDBOX_ID,
      accountId: ACCOUNT,
      status: 'running',
      providerSandboxId: 'prov-1',
      config: { volume_name: 'project-a', volume_mount_path: '/mnt/workspace', workdir: '/mnt/workspace/app' },
    } as Sandbox & { providerSandboxId: string };

    /** A configured model, a running sandbox, and a database that accepts the new run. */
    function readyToStart(): void {
      claude.isConfigured.mockReturnValue(true);
      sandboxes.requireRunning.mockResolvedValue(sandbox);
      sandboxes.touch.mockResolvedValue(undefined);
      runs.create.mockImplementation(((fields: Partial<Run>) => Object.assign(new Run(), fields)) as never);
      runs.save.mockImplementation((async (run: Run) => Object.assign(run, { id: 'run-new', createdAt: new Date() })) as never);
      executor.start.mockReturnValue(undefined);
    }

    it('refuses with 503 naming the variables to set when no model credentials are configured', async () => {
      claude.isConfigured.mockReturnValue(false);
      claude.missingCredentialsMessage.mockReturnValue('Claude is not configured: set ANTHROPIC_API_KEY');

      const refusal = service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'hi' });

      await expect(refusal).rejects.toThrow(ModelNotConfiguredError);
      await expect(refusal).rejects.toMatchObject({ kind: 'unavailable', message: 'Claude is not configured: set ANTHROPIC_API_KEY' });
    });

    it('refuses a prompt over RUN_MAX_PROMPT_CHARS with 400', async () => {
      claude.isConfigured.mockReturnValue(true);

      const refusal = service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'x'.repeat(21) });

      await expect(refusal).rejects.toThrow(InvalidInputError);
      await expect(refusal).rejects.toThrow('prompt must be at most 20 characters');
    });

    it('accepts a prompt of exactly RUN_MAX_PROMPT_CHARS', async () => {
      readyToStart();

      await expect(service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'x'.repeat(20), resume: false })).resolves.toMatchObject({ status: 'queued' });
    });

    it('continues the latest conversation on the same volume by default and starts the run in the sandbox', async () => {
      readyToStart();
      const { builder, parameters } = sessionQuery({ sessionId: 'sess-latest' });
      runs.createQueryBuilder.mockReturnValue(builder as never);

      const run = await service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'continue' });

      expect(parameters()).toMatchObject({ accountId: ACCOUNT, volumeName: 'project-a', provider: 'local' });
      expect(run).toMatchObject({ id: 'run-new', status: 'queued', sessionId: 'sess-latest', sandboxId: SANDBOX_ID, accountId: ACCOUNT, createdBy: USER, prompt: 'continue' });
      expect(run.options).toMatchObject({ resume: true, resumed_session_id: 'sess-latest', timeout_seconds: 900, allowed_tools: [], include_partial_messages: false });
      expect(executor.start).toHaveBeenCalledWith(run, { providerSandboxId: 'prov-1', workdir: '/mnt/workspace/app', volumeMountPath: '/mnt/workspace' });
      expect(sandboxes.touch).toHaveBeenCalledWith(SANDBOX_ID);
    });

    it('starts a new conversation when the volume has none yet', async () => {
      readyToStart();
      runs.createQueryBuilder.mockReturnValue(sessionQuery(null).builder as never);

      const run = await service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'hello' });

      expect(run.options.resumed_session_id).toBeNull();
    });

    it('starts a new conversation with resume: false, without looking for one', async () => {
      readyToStart();

      const run = await service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'fresh start', resume: false, model: 'claude-opus-4', timeout_seconds: 60 });

      expect(run.sessionId).toBeNull();
      expect(run.options).toMatchObject({ resume: false, resumed_session_id: null, model: 'claude-opus-4', timeout_seconds: 60 });
    });

    it('answers 409 naming the active run when the database refuses a second active run', async () => {
      readyToStart();
      runs.save.mockRejectedValueOnce(new QueryFailedError('INSERT INTO "run"', [], Object.assign(new Error('duplicate key value violates unique constraint "uq_run_active_per_sandbox"'), { code: '23505' })));
      runs.findOneBy.mockResolvedValueOnce(Object.assign(new Run(), { id: 'run-active', status: 'running' }));

      const refusal = service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'again', resume: false });

      await expect(refusal).rejects.toThrow(RunAlreadyActiveError);
      await expect(refusal).rejects.toMatchObject({ kind: 'conflict', details: { active_run_id: 'run-active' } });
      expect(executor.start).not.toHaveBeenCalled();
    });

    it('passes any other database failure on unchanged', async () => {
      readyToStart();
      const failure = new Error('connection terminated');
      runs.save.mockRejectedValueOnce(failure);

      await expect(service.start(ACCOUNT, USER, SANDBOX_ID, { prompt: 'again', resume: false })).rejects.toBe(failure);
      expect(executor.start).not.toHaveBeenCalled();
    });
  });

  describe('after a service restart', () => {
    it('records runs that were active as interrupted and ends their streams with done', async () => {
      const queued = Object.assign(new Run(), { id: 'run-a', status: 'queued', exitCode: null, sessionId: null, totalCostUsd: null, usage: null });
      const running = Object.assign(new Run(), { id: 'run-b', status: 'running', exitCode: null, sessionId: 'sess-b', totalCostUsd: null, usage: null });
      runs.findBy.mockResolvedValueOnce([queued, running]);
      runs.save.mockImplementation((async (run: Run) => run) as never);
      eventRepository.findOne.mockImplementation((async (options: { where: { runId: string } }) => (options.where.runId === 'run-a' ? { seq: 7 } : null)) as never);
      const inserted: Partial<RunEvent>[] = [];
      eventRepository.insert.mockImplementation(async (row) => {
        inserted.push(row as Partial<RunEvent>);
        return {} as InsertResult;
      });

      gatewayTokens.revokeEndedRuns.mockResolvedValue(undefined);

      await service.onApplicationBootstrap();

      for (const run of [queued, running]) {
        expect(run).toMatchObject({ status: 'interrupted', error: expect.stringContaining('restarted'), finishedAt: expect.any(Date) });
      }
      expect(runs.save).toHaveBeenCalledTimes(2);
      expect(inserted).toEqual([
        { runId: 'run-a', seq: 8, type: 'done', data: expect.objectContaining({ run_id: 'run-a', status: 'interrupted' }) },
        { runId: 'run-b', seq: 1, type: 'done', data: expect.objectContaining({ run_id: 'run-b', status: 'interrupted', session_id: 'sess-b' }) },
      ]);
      // After the runs were recorded as interrupted, so that their tokens are among those revoked.
      expect(gatewayTokens.revokeEndedRuns).toHaveBeenCalledTimes(1);
      expect(gatewayTokens.revokeEndedRuns.mock.invocationCallOrder[0]).toBeGreaterThan(Math.max(...runs.save.mock.invocationCallOrder));
    });
  });

  describe('cancel', () => {
    it('stops an active run and answers it as it ended', async () => {
      runs.findOneBy
        .mockResolvedValueOnce(Object.assign(new Run(), { id: 'run-1', status: 'running' }))
        .mockResolvedValueOnce(Object.assign(new Run(), { id: 'run-1', status: 'cancelled' }));
      executor.cancel.mockResolvedValueOnce(true);

      await expect(service.cancel(ACCOUNT, SANDBOX_ID, 'run-1')).resolves.toMatchObject({ status: 'cancelled' });
      expect(executor.cancel).toHaveBeenCalledWith('run-1');
    });

    it('leaves a finished run as it is', async () => {
      runs.findOneBy.mockResolvedValue(Object.assign(new Run(), { id: 'run-1', status: 'succeeded' }));

      await expect(service.cancel(ACCOUNT, SANDBOX_ID, 'run-1')).resolves.toMatchObject({ status: 'succeeded' });
      expect(executor.cancel).not.toHaveBeenCalled();
    });
  });

  it('answers a run of another account or sandbox as not found', async () => {
    runs.findOneBy.mockResolvedValueOnce(null);

    await expect(service.get(ACCOUNT, SANDBOX_ID, 'run-elsewhere')).rejects.toThrow(RunNotFoundError);
    expect(runs.findOneBy).toHaveBeenCalledWith({ id: 'run-elsewhere', sandboxId: SANDBOX_ID, accountId: ACCOUNT });
  });
});
