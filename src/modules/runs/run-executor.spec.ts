import { Logger } from '@nestjs/common';
import { lastValueFrom, Subject, toArray } from 'rxjs';
import { DataSource } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { ClaudeAgent, ClaudeExecution, ClaudeResult } from '../../integrations/claude/claude.agent';
import { ClaudeEvent, ExecutionDetachedError } from '../../integrations/claude/claude.events';
import { SandboxGoneError } from '../../integrations/sandbox/sandbox-provider.errors';
import { openTestDatabase } from '../../testing/pglite-database';
import { insertRunIn, insertSandbox, RUN_OPTIONS } from '../../testing/run-fixtures';
import { strictMock } from '../../testing/strict-mock';
import { SandboxActivity } from '../sandboxes/sandbox-activity';
import { Sandbox } from '../sandboxes/sandbox.entity';
import { ModelGatewayToken } from './model-gateway-token.entity';
import { ModelGatewayTokens } from './model-gateway-tokens.service';
import { RunEvent } from './run-event.entity';
import { RunEventLog, StoredEvent } from './run-event-log';
import { RunExecutor } from './run-executor';
import { Run, RunOptions } from './run.entity';
import { RunStateStore } from './run-state.store';
import { singleInstanceFeed } from '../../testing/run-fixtures';
import { InstanceIdentity } from '../../common/instance-identity';
import { RunLeases } from './run-leases';

/** Claude as the executor sees it: the test emits its events and decides how it ends. */
class FakeClaudeExecution implements ClaudeExecution {
  private readonly emitted = new Subject<ClaudeEvent>();
  readonly events$ = this.emitted.asObservable();
  readonly result: Promise<ClaudeResult>;
  /** Cancelling ends it like a kill would: no result message. */
  readonly cancel = jest.fn(async () => this.end({ ...KILLED }));
  readonly detach = jest.fn(async () => this.fail(new ExecutionDetachedError()));
  private settle!: { resolve: (result: ClaudeResult) => void; reject: (error: Error) => void };

  constructor() {
    this.result = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
  }

  emit(...events: ClaudeEvent[]): void {
    for (const event of events) this.emitted.next(event);
  }

  end(result: ClaudeResult): void {
    this.emitted.complete();
    this.settle.resolve(result);
  }

  fail(error: Error): void {
    this.emitted.complete();
    this.settle.reject(error);
  }
}

const SANDBOX = { providerSandboxId: 'prov-1', workdir: '/mnt/workspace/app', volumeMountPath: '/mnt/workspace' };
const NO_RESULT = { sessionId: null, result: null, totalCostUsd: null, usage: null, numTurns: null };
const KILLED: ClaudeResult = { status: 'failed', error: 'Claude exited without a result. No error output.', exitCode: 137, ...NO_RESULT };
const SUCCESS: ClaudeResult = { status: 'succeeded', error: null, exitCode: 0, sessionId: 'sess-9', result: 'All tests pass', totalCostUsd: 0.0123, usage: { input_tokens: 10, output_tokens: 20 }, numTurns: 2 };
const message = (type: 'system' | 'assistant' | 'result', payload: Record<string, unknown> = {}): ClaudeEvent => ({ kind: 'message', type, payload: { type, ...payload } });
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('RunExecutor (real PGlite database)', () => {
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  let dataSource: DataSource;
  let claude: jest.Mocked<ClaudeAgent>;
  let execution: FakeClaudeExecution;
  let gatewayTokens: ModelGatewayTokens;
  let log: RunEventLog;
  let executor: RunExecutor;
  let activity: SandboxActivity;
  /** For each revocation of a run token: whether the run's done event was already stored. */
  let revokedAfterDone: boolean[];

  beforeAll(async () => {
    database = await openTestDatabase();
    dataSource = database.dataSource;
  });
  afterAll(() => database?.close());

  beforeEach(() => {
    for (const level of ['log', 'warn', 'error'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    execution = new FakeClaudeExecution();
    claude = strictMock<ClaudeAgent>('claude', ['isConfigured', 'missingCredentialsMessage', 'modelGatewayUnavailableReason', 'start', 'resume']);
    claude.modelGatewayUnavailableReason.mockReturnValue(null);
    claude.start.mockReturnValue(execution);
    gatewayTokens = new ModelGatewayTokens(dataSource.getRepository(ModelGatewayToken));
    revokedAfterDone = [];
    const revoke = gatewayTokens.revoke.bind(gatewayTokens);
    jest.spyOn(gatewayTokens, 'revoke').mockImplementation(async (runId) => {
      revokedAfterDone.push((await dataSource.getRepository(RunEvent).countBy({ runId, type: 'done' })) > 0);
      return revoke(runId);
    });
    log = new RunEventLog(dataSource.getRepository(RunEvent), singleInstanceFeed(dataSource));
    const config = AppConfig.fromEnvironment({ DATA_DIR: '/tmp/run-executor-spec', RUN_IDLE_TIMEOUT_SECONDS: '5' });
    activity = new SandboxActivity(dataSource.getRepository(Sandbox));
    executor = new RunExecutor(new RunStateStore(dataSource.getRepository(Run)), log, claude, config, gatewayTokens, activity, new RunLeases(dataSource.getRepository(Run), config, new InstanceIdentity(config)));
  });
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  async function newRun(options: Partial<RunOptions> = {}): Promise<Run> {
    return insertRunIn(dataSource, await insertSandbox(dataSource), { options: { ...RUN_OPTIONS, ...options } });
  }

  /** Starts the run and returns every event its stream will carry, once it has ended. */
  function start(run: Run): Promise<StoredEvent[]> {
    executor.start(run, SANDBOX);
    return lastValueFrom(log.follow(run.id, 0).pipe(toArray()));
  }

  /** Starts the run and lets it reach Claude; `events` as for start(). */
  async function started(run: Run): Promise<{ events: Promise<StoredEvent[]> }> {
    const events = start(run);
    while (claude.start.mock.calls.length === 0) await settle();
    return { events };
  }

  const stored = (run: Run) => dataSource.getRepository(Run).findOneByOrFail({ id: run.id });
  const typesOf = (events: StoredEvent[]) => events.map((event) => event.type);

  /** The run's gateway token was revoked before anyone could see the run as ended. */
  async function expectTokenRevokedBeforeDone(run: Run): Promise<void> {
    expect(revokedAfterDone[0]).toBe(false);
    const [token] = await dataSource.getRepository(ModelGatewayToken).findBy({ runId: run.id });
    expect(token.revokedAt).toEqual(expect.any(Date));
  }

  describe('model gateway', () => {
    it('issues a run token and hands it to Claude', async () => {
      const run = await newRun();
      const { events } = await started(run);
      execution.end(SUCCESS);
      await events;

      const [token] = await dataSource.getRepository(ModelGatewayToken).findBy({ runId: run.id });
      expect(token).toBeDefined();
      expect(claude.start).toHaveBeenCalledWith(SANDBOX, run.id, expect.objectContaining({ modelGatewayToken: expect.stringMatching(/^mgw_/) }));
      await expectTokenRevokedBeforeDone(run);
    });

    it('issues no token when Claude cannot use the gateway (its credentials are injected as before)', async () => {
      claude.modelGatewayUnavailableReason.mockReturnValue('sandboxes of this engine cannot reach the model gateway');
      const run = await newRun();
      const { events } = await started(run);
      execution.end(SUCCESS);
      await events;

      expect(await dataSource.getRepository(ModelGatewayToken).countBy({ runId: run.id })).toBe(0);
      expect(claude.start).toHaveBeenCalledWith(SANDBOX, run.id, expect.objectContaining({ modelGatewayToken: undefined }));
    });

    it('warns once at start-up that any process in a sandbox can read the credentials, saying why', () => {
      const warn = jest.spyOn(Logger.prototype, 'warn');
      claude.isConfigured.mockReturnValue(true);
      claude.modelGatewayUnavailableReason.mockReturnValue('set MODEL_GATEWAY_PUBLIC_URL');

      executor.onApplicationBootstrap();

      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][1])).toMatch(/can read them.*MODEL_GATEWAY_PUBLIC_URL/);
    });

    it('does not warn when runs go through the gateway', () => {
      const warn = jest.spyOn(Logger.prototype, 'warn');
      claude.isConfigured.mockReturnValue(true);

      executor.onApplicationBootstrap();

      expect(warn).not.toHaveBeenCalled();
    });
  });

  it('runs Claude with the run’s options and records the run as running', async () => {
    const run = await newRun({ resumed_session_id: 'sess-1', model: 'claude-sonnet-4-5', allowed_tools: ['Edit'], include_partial_messages: true });
    const { events } = await started(run);

    expect(claude.start).toHaveBeenCalledWith(SANDBOX, run.id, {
      prompt: 'fix the tests',
      resumeSessionId: 'sess-1',
      model: 'claude-sonnet-4-5',
      maxTurns: undefined,
      allowedTools: ['Edit'],
      disallowedTools: [],
      appendSystemPrompt: undefined,
      includePartialMessages: true,
      modelGatewayToken: expect.any(String),
    });
    expect(await stored(run)).toMatchObject({ status: 'running', startedAt: expect.any(Date) });
    execution.end(SUCCESS);
    await events;
  });

  it('records Claude’s messages as events of their type, other output as output, stderr as stderr, an oversized line as an error', async () => {
    const run = await newRun();
    const { events } = await started(run);
    execution.emit(
      message('system', { subtype: 'init' }),
      message('assistant', { message: { content: [] } }),
      { kind: 'output', line: 'plain text from a tool' },
      { kind: 'stderr', line: 'warning: slow network' },
      { kind: 'oversized', bytes: 10 * 1024 * 1024 + 10, limitBytes: 10 * 1024 * 1024 },
      message('result', { subtype: 'success' }),
    );
    execution.end(SUCCESS);
    const all = await events;

    expect(typesOf(all)).toEqual(['system', 'assistant', 'output', 'stderr', 'error', 'result', 'done']);
    expect(all.map((event) => event.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all[1].data).toEqual({ type: 'assistant', message: { content: [] } });
    expect(all.slice(2, 5).map((event) => event.data)).toEqual([
      { line: 'plain text from a tool' },
      { line: 'warning: slow network' },
      { message: expect.stringContaining('exceeded the 10 MB limit') },
    ]);
  });

  it('records a successful result: status, session, cost and usage, and ends the stream with done', async () => {
    const run = await newRun();
    const { events } = await started(run);
    execution.end(SUCCESS);
    const all = await events;

    expect(await stored(run)).toMatchObject({ status: 'succeeded', exitCode: 0, sessionId: 'sess-9', result: 'All tests pass', totalCostUsd: 0.0123, usage: SUCCESS.usage, numTurns: 2, error: null, finishedAt: expect.any(Date) });
    expect(all[all.length - 1]).toMatchObject({
      type: 'done',
      data: { run_id: run.id, status: 'succeeded', exit_code: 0, session_id: 'sess-9', total_cost_usd: 0.0123, usage: SUCCESS.usage },
    });
    await settle();
    expect(await executor.cancel(run.id)).toBe(false);
  });

  it('keeps its sandbox busy (never idle-stopped) while the run is active, and restarts its idle clock at the end', async () => {
    const run = await newRun();
    const { events } = await started(run);
    expect(activity.isBusy(run.sandboxId)).toBe(true);
    execution.end(SUCCESS);
    await events;
    await settle();
    expect(activity.isBusy(run.sandboxId)).toBe(false);
  });

  it('fails a run whose result failed, with Claude’s reason as an error event before done', async () => {
    const run = await newRun();
    const { events } = await started(run);
    execution.end({ ...SUCCESS, status: 'failed', exitCode: 1, error: 'error_max_turns: Reached the turn limit' });
    const all = await events;

    expect(await stored(run)).toMatchObject({ status: 'failed', exitCode: 1, sessionId: 'sess-9', error: 'error_max_turns: Reached the turn limit' });
    expect(all.slice(-2)).toEqual([
      expect.objectContaining({ type: 'error', data: { message: 'error_max_turns: Reached the turn limit' } }),
      expect.objectContaining({ type: 'done', data: expect.objectContaining({ status: 'failed', exit_code: 1 }) }),
    ]);
    await expectTokenRevokedBeforeDone(run);
  });

  describe('watchdog', () => {
    beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));

    it('stops a run that stays silent for the idle timeout and marks it timed out', async () => {
      const run = await newRun();
      const { events } = await started(run);

      await jest.advanceTimersByTimeAsync(4_000);
      execution.emit(message('assistant'));
      await jest.advanceTimersByTimeAsync(4_000);
      expect(execution.cancel).not.toHaveBeenCalled();
      await jest.advanceTimersByTimeAsync(1_001);
      const all = await events;

      expect(execution.cancel).toHaveBeenCalled();
      expect(await stored(run)).toMatchObject({ status: 'timed_out', error: expect.stringContaining('no output for too long') });
      expect(typesOf(all).slice(-2)).toEqual(['error', 'done']);
      await expectTokenRevokedBeforeDone(run);
    });

    it('stops a run that keeps talking past its time limit', async () => {
      const run = await newRun({ timeout_seconds: 8 });
      const { events } = await started(run);

      for (let second = 1; second < 8; second++) {
        await jest.advanceTimersByTimeAsync(1_000);
        execution.emit(message('assistant'));
      }
      expect(execution.cancel).not.toHaveBeenCalled();
      await jest.advanceTimersByTimeAsync(1_001);
      await events;

      expect(await stored(run)).toMatchObject({ status: 'timed_out' });
    });
  });

  describe('cancel', () => {
    it('stops Claude and records the run as cancelled, ending its stream with done', async () => {
      const run = await newRun();
      const { events } = await started(run);
      execution.emit(message('assistant'));

      await expect(executor.cancel(run.id)).resolves.toBe(true);
      const all = await events;

      expect(execution.cancel).toHaveBeenCalled();
      expect(await stored(run)).toMatchObject({ status: 'cancelled', exitCode: 137, error: null });
      await expectTokenRevokedBeforeDone(run);
      expect(all[all.length - 1]).toMatchObject({ type: 'done', data: { status: 'cancelled' } });
      expect(await executor.cancel(run.id)).toBe(false);
    });

    it('ends the runs of a sandbox the service stops at its lifetime as interrupted, saying so, and no other run', async () => {
      const run = await newRun();
      const { events } = await started(run);

      await activity.ending(run.sandboxId, 'timeout');
      await activity.ending('another-sandbox', 'timeout');
      const all = await events;

      expect(execution.cancel).toHaveBeenCalledTimes(1);
      expect(await stored(run)).toMatchObject({ status: 'interrupted', error: 'sandbox lifetime reached' });
      expect(all[all.length - 1]).toMatchObject({ type: 'done', data: { status: 'interrupted' } });
    });

    it('stops a run cancelled before Claude started', async () => {
      const run = await newRun();
      const events = start(run);

      const cancelled = executor.cancel(run.id);

      await expect(cancelled).resolves.toBe(true);
      await events;
      expect(execution.cancel).toHaveBeenCalled();
      expect(await stored(run)).toMatchObject({ status: 'cancelled' });
    });

    it('answers false for a run that is not active', async () => {
      await expect(executor.cancel('run-unknown')).resolves.toBe(false);
    });
  });

  it('records where each event’s line ends in the agent’s log, and nothing for the events it adds', async () => {
    const run = await newRun();
    const { events } = await started(run);
    execution.emit(
      { ...message('system', { subtype: 'init' }), position: { stream: 'stdout', offset: 57 } },
      { kind: 'stderr', line: 'warning', position: { stream: 'stderr', offset: 8 } },
      { kind: 'oversized', bytes: 11 * 1024 * 1024, limitBytes: 10 * 1024 * 1024, position: { stream: 'stdout', offset: 57 + 11 * 1024 * 1024 + 1 } },
    );
    execution.end({ ...SUCCESS, status: 'failed', error: 'boom' });
    await events;

    const rows = await dataSource.getRepository(RunEvent).find({ where: { runId: run.id }, order: { seq: 'ASC' } });
    expect(rows.map((row) => [row.seq, row.type, row.logStream, row.logOffset])).toEqual([
      [1, 'system', 'stdout', 57],
      [2, 'stderr', 'stderr', 8],
      [3, 'error', 'stdout', 57 + 11 * 1024 * 1024 + 1],
      [4, 'error', null, null],
      [5, 'done', null, null],
    ]);
  });

  describe('service stop (onModuleDestroy)', () => {
    it('leaves active runs running: detaches, writes what was read, ends their streams without done and keeps their gateway token', async () => {
      const run = await newRun();
      const { events } = await started(run);
      execution.emit({ ...message('assistant'), position: { stream: 'stdout', offset: 42 } });

      await executor.onModuleDestroy();
      const all = await events;

      expect(execution.detach).toHaveBeenCalledTimes(1);
      expect(execution.cancel).not.toHaveBeenCalled();
      expect(typesOf(all)).toEqual(['assistant']);
      expect(await dataSource.getRepository(RunEvent).countBy({ runId: run.id, type: 'done' })).toBe(0);
      expect(await stored(run)).toMatchObject({ status: 'running', finishedAt: null, error: null, exitCode: null });
      expect(gatewayTokens.revoke).not.toHaveBeenCalled();
      const [token] = await dataSource.getRepository(ModelGatewayToken).findBy({ runId: run.id });
      expect(token.revokedAt).toBeNull();
      expect(activity.isBusy(run.sandboxId)).toBe(false);
      expect(await executor.cancel(run.id)).toBe(false);
    });

    it('does nothing when no run is active', async () => {
      await expect(executor.onModuleDestroy()).resolves.toBeUndefined();
    });
  });

  describe('database outage', () => {
    /** Holds every insert of run events until released, as a database that does not answer would. */
    function holdEventWrites(): () => void {
      const repository = dataSource.getRepository(RunEvent);
      const insert = repository.insert.bind(repository);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      jest.spyOn(repository, 'insert').mockImplementation(async (row) => {
        await released;
        return insert(row);
      });
      return release;
    }

    it('pauses reading the agent while its events are not written, then resumes where the written events end, with no gap', async () => {
      const release = holdEventWrites();
      const run = await newRun();
      await started(run);
      const resumed = new FakeClaudeExecution();
      claude.resume.mockReturnValue(resumed);

      for (let line = 1; line <= 1_000; line++) execution.emit({ kind: 'output', line: `line ${line}`, position: { stream: 'stdout', offset: line * 10 } });

      expect(execution.detach).toHaveBeenCalledTimes(1);
      expect(claude.resume).not.toHaveBeenCalled();
      release();
      while (claude.resume.mock.calls.length === 0) await settle();
      expect(claude.resume).toHaveBeenCalledWith(SANDBOX, run.id, expect.objectContaining({ offsets: { stdout: 10_000, stderr: 0 } }));
      const events = lastValueFrom(log.follow(run.id, 0).pipe(toArray()));
      resumed.emit({ kind: 'output', line: 'line 1001', position: { stream: 'stdout', offset: 10_010 } });
      resumed.end(SUCCESS);
      const all = await events;

      expect(all.map((event) => event.seq)).toEqual(Array.from({ length: 1_002 }, (_, index) => index + 1));
      expect(all[1_000]).toMatchObject({ type: 'output', data: { line: 'line 1001' } });
      expect(all[1_001].type).toBe('done');
      expect(await stored(run)).toMatchObject({ status: 'succeeded' });
    });

    it('records the end of a run whose agent ended while the database was down, once it is back', async () => {
      const run = await newRun();
      await started(run);
      const runs = dataSource.getRepository(Run);
      const update = runs.update.bind(runs);
      let failures = 0;
      jest.spyOn(runs, 'update').mockImplementation(async (...args: Parameters<typeof runs.update>) => {
        if (failures++ < 2) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
        return update(...args);
      });
      const events = lastValueFrom(log.follow(run.id, 0).pipe(toArray()));

      execution.end(SUCCESS);

      expect((await events).at(-1)).toMatchObject({ type: 'done', data: expect.objectContaining({ status: 'succeeded' }) });
      expect(failures).toBe(3);
      expect(await stored(run)).toMatchObject({ status: 'succeeded' });
    });
  });

  describe('resume after a restart', () => {
    /** A run the previous service started and recorded up to some point, with its gateway token. */
    async function runLeftRunning(options: Partial<RunOptions> = {}, startedAt = new Date(Date.now() - 60_000)): Promise<Run> {
      const run = await insertRunIn(dataSource, await insertSandbox(dataSource), { status: 'running', startedAt, options: { ...RUN_OPTIONS, ...options } });
      await gatewayTokens.issue(run.id);
      const previous = new RunEventLog(dataSource.getRepository(RunEvent), singleInstanceFeed(dataSource));
      previous.open(run.id);
      await previous.append(run.id, 'system', { type: 'system', subtype: 'init' }, { stream: 'stdout', offset: 100 });
      await previous.append(run.id, 'stderr', { line: 'warning: slow network' }, { stream: 'stderr', offset: 22 });
      await previous.append(run.id, 'assistant', { type: 'assistant' }, { stream: 'stdout', offset: 250 });
      await previous.close(run.id);
      return run;
    }

    it('follows the run from where its recorded events end, the events continuing at the next seq', async () => {
      claude.resume.mockReturnValue(execution);
      const run = await runLeftRunning();

      await executor.resume(run, SANDBOX);
      const events = lastValueFrom(log.follow(run.id, 0).pipe(toArray()));
      await settle();
      execution.emit({ ...message('result', { subtype: 'success' }), position: { stream: 'stdout', offset: 400 } });
      execution.end(SUCCESS);
      const all = await events;

      expect(claude.resume).toHaveBeenCalledWith(SANDBOX, run.id, { offsets: { stdout: 250, stderr: 22 }, result: undefined, stderrTail: 'warning: slow network' });
      expect(claude.start).not.toHaveBeenCalled();
      expect(all.map((event) => [event.seq, event.type])).toEqual([
        [1, 'system'],
        [2, 'stderr'],
        [3, 'assistant'],
        [4, 'result'],
        [5, 'done'],
      ]);
      expect(await dataSource.getRepository(RunEvent).findOneByOrFail({ runId: run.id, seq: 4 })).toMatchObject({ logStream: 'stdout', logOffset: 400 });
      expect(await stored(run)).toMatchObject({ status: 'succeeded', sessionId: 'sess-9', exitCode: 0 });
      await expectTokenRevokedBeforeDone(run);
    });

    it('hands Claude the result already recorded before the restart', async () => {
      claude.resume.mockReturnValue(execution);
      const run = await runLeftRunning();
      const previous = new RunEventLog(dataSource.getRepository(RunEvent), singleInstanceFeed(dataSource));
      previous.open(run.id, 4);
      await previous.append(run.id, 'result', { type: 'result', subtype: 'success', session_id: 'sess-9' }, { stream: 'stdout', offset: 500 });
      await previous.close(run.id);

      await executor.resume(run, SANDBOX);
      const events = lastValueFrom(log.follow(run.id, 0).pipe(toArray()));
      execution.end(SUCCESS);

      expect(typesOf(await events)).toEqual(['system', 'stderr', 'assistant', 'result', 'done']);

      expect(claude.resume).toHaveBeenCalledWith(SANDBOX, run.id, {
        offsets: { stdout: 500, stderr: 22 },
        result: { type: 'result', subtype: 'success', session_id: 'sess-9' },
        stderrTail: 'warning: slow network',
      });
    });

    describe('time limit', () => {
      beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));

      it('counts the total time limit from the run’s start, not from the resume', async () => {
        claude.resume.mockReturnValue(execution);
        const run = await runLeftRunning({ timeout_seconds: 10 }, new Date(Date.now() - 8_000));

        await executor.resume(run, SANDBOX);
        const events = lastValueFrom(log.follow(run.id, 0).pipe(toArray()));
        await jest.advanceTimersByTimeAsync(1_500);
        execution.emit(message('assistant'));
        expect(execution.cancel).not.toHaveBeenCalled();
        await jest.advanceTimersByTimeAsync(600);

        expect(execution.cancel).toHaveBeenCalledTimes(1);
        const all = await events;
        expect(await stored(run)).toMatchObject({ status: 'timed_out' });
        expect(typesOf(all).slice(-2)).toEqual(['error', 'done']);
      });
    });
  });

  it('fails the run and still ends its stream with done when Claude cannot be started', async () => {
    const run = await newRun();
    const { events } = await started(run);
    execution.fail(new SandboxGoneError('prov-1'));
    const all = await events;

    expect(await stored(run)).toMatchObject({ status: 'failed', error: expect.stringContaining('prov-1 is no longer running') });
    expect(typesOf(all)).toEqual(['error', 'done']);
    await expectTokenRevokedBeforeDone(run);
  });

  it('never ends a run twice: a run already ended in the database is not overwritten', async () => {
    const run = await newRun();
    const { events } = await started(run);
    await dataSource.getRepository(Run).update({ id: run.id }, { status: 'interrupted' });

    execution.end(SUCCESS);
    await events;

    expect(await stored(run)).toMatchObject({ status: 'interrupted', sessionId: null });
  });
});
