import { Logger } from '@nestjs/common';
import { PassThrough } from 'node:stream';
import { lastValueFrom, toArray } from 'rxjs';
import { FindManyOptions, FindOperator, InsertResult, Repository } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { ClaudeInvocation, ClaudeProvider } from '../../integrations/claude/claude.provider';
import { ExecExit, SandboxProcess, SandboxProvider } from '../../integrations/sandbox/sandbox-provider';
import { SandboxGoneError } from '../../integrations/sandbox/sandbox-provider.errors';
import { ModelGatewayTokens } from '../model-gateway/model-gateway-tokens.service';
import { RunEvent } from './run-event.entity';
import { RunEventLog, StoredEvent } from './run-event-log';
import { RunExecutor } from './run-executor';
import { Run, RunOptions } from './run.entity';
import { strictMock } from '../../testing/strict-mock';


/** The Claude process inside the sandbox: the test writes its output and decides when it exits. */
class FakeClaudeProcess implements SandboxProcess {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  /** Killing it ends it like a signal would. */
  readonly kill = jest.fn(async () => this.exit(137));
  private exited = false;
  private resolveExit!: (exit: ExecExit) => void;
  private readonly exitPromise = new Promise<ExecExit>((resolve) => (this.resolveExit = resolve));

  wait(): Promise<ExecExit> {
    return this.exitPromise;
  }

  print(...lines: Array<string | object>): void {
    for (const line of lines) this.stdout.write(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  }

  printError(...lines: string[]): void {
    for (const line of lines) this.stderr.write(`${line}\n`);
  }

  exit(exitCode: number): void {
    if (this.exited) return;
    this.exited = true;
    this.stdout.end();
    this.stderr.end();
    this.resolveExit({ exitCode, timedOut: false });
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));
const TARGET = { providerSandboxId: 'prov-1', workdir: '/mnt/workspace/app', volumeMountPath: '/mnt/workspace' };
const INVOCATION: ClaudeInvocation = { argv: ['claude', '-p', '--', 'fix the tests'], env: { CLAUDE_CONFIG_DIR: '/mnt/workspace/.claude-state' }, secretEnv: { ANTHROPIC_API_KEY: 'sk-ant-secret' } };
const GATEWAY_URL = 'http://127.0.0.1:4100';
const RUN_TOKEN = 'mgw_run-token';
const SUCCESS = { type: 'result', subtype: 'success', is_error: false, result: 'All tests pass', session_id: 'sess-9', total_cost_usd: 0.0123, usage: { input_tokens: 10, output_tokens: 20 }, num_turns: 2 };

function newRun(options: Partial<RunOptions> = {}): Run {
  return Object.assign(new Run(), {
    id: 'run-1',
    sandboxId: 'sb-1',
    accountId: 'acc-1',
    createdBy: 'u-1',
    prompt: 'fix the tests',
    status: 'queued',
    sessionId: null,
    exitCode: null,
    result: null,
    totalCostUsd: null,
    usage: null,
    numTurns: null,
    createdAt: new Date(),
    startedAt: null,
    finishedAt: null,
    error: null,
    options: {
      resume: true,
      model: null,
      max_turns: null,
      allowed_tools: [],
      disallowed_tools: [],
      append_system_prompt: null,
      include_partial_messages: false,
      timeout_seconds: 3600,
      resumed_session_id: null,
      ...options,
    },
  } satisfies Partial<Run>);
}

describe('RunExecutor', () => {
  let eventRows: RunEvent[];
  let runs: jest.Mocked<Repository<Run>>;
  let claude: jest.Mocked<ClaudeProvider>;
  let provider: jest.Mocked<SandboxProvider>;
  let log: RunEventLog;
  let executor: RunExecutor;
  let claudeProcess: FakeClaudeProcess;
  let gatewayTokens: jest.Mocked<ModelGatewayTokens>;
  /** For each revoke() call: whether the run's done event had already been stored. */
  let revokedAfterDone: boolean[];

  beforeEach(() => {
    for (const level of ['log', 'warn', 'error'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    eventRows = [];
    const eventRepository = strictMock<Repository<RunEvent>>('runEvents', ['insert', 'find']);
    eventRepository.insert.mockImplementation(async (row) => {
      eventRows.push(row as RunEvent);
      return {} as InsertResult;
    });
    eventRepository.find.mockImplementation(async (options?: FindManyOptions<RunEvent>) => {
      const where = options!.where as { runId: string; seq: FindOperator<number> };
      return eventRows.filter((row) => row.runId === where.runId && row.seq > where.seq.value);
    });
    log = new RunEventLog(eventRepository);
    runs = strictMock<Repository<Run>>('runs', ['update']);
    runs.update.mockResolvedValue({ affected: 1 } as never);
    claude = strictMock<ClaudeProvider>('claude', ['isConfigured', 'missingCredentialsMessage', 'buildInvocation', 'supportsModelGateway']);
    claude.buildInvocation.mockReturnValue(INVOCATION);
    claude.supportsModelGateway.mockReturnValue(true);
    provider = strictMock<SandboxProvider>('provider', ['ensureApp', 'ensureVolume', 'create', 'exec', 'status', 'terminate', 'reattach', 'volume', 'isConfigured', 'modelGatewayUrl']);
    provider.modelGatewayUrl.mockReturnValue(GATEWAY_URL);
    claudeProcess = new FakeClaudeProcess();
    provider.exec.mockResolvedValue(claudeProcess);
    revokedAfterDone = [];
    gatewayTokens = strictMock<ModelGatewayTokens>('gatewayTokens', ['issue', 'revoke']);
    gatewayTokens.issue.mockResolvedValue(RUN_TOKEN);
    gatewayTokens.revoke.mockImplementation(async () => void revokedAfterDone.push(eventRows.some((row) => row.type === 'done')));
    executor = new RunExecutor(runs, log, claude, provider, AppConfig.fromEnvironment({ DATA_DIR: '/tmp/run-executor-spec', RUN_IDLE_TIMEOUT_SECONDS: '5' }), gatewayTokens);
  });
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  /** Starts the run and returns every event its stream will carry, once it has ended. */
  function start(run: Run): Promise<StoredEvent[]> {
    executor.start(run, TARGET);
    return lastValueFrom(log.follow(run.id, 0).pipe(toArray()));
  }

  /** The run row as the last write left it. */
  function storedRun(): Partial<Run> {
    return Object.assign({}, ...runs.update.mock.calls.map(([, fields]) => fields)) as Partial<Run>;
  }

  const typesOf = (events: StoredEvent[]) => events.map((event) => event.type);

  /** The run's gateway token was revoked before anyone could see the run as ended. */
  function expectTokenRevokedBeforeDone(): void {
    expect(gatewayTokens.revoke).toHaveBeenCalledWith('run-1');
    expect(revokedAfterDone[0]).toBe(false);
  }

  describe('model gateway', () => {
    it('issues a run token and hands Claude the gateway URL and that token instead of the credentials', async () => {
      const events = start(newRun());
      await settle();
      claudeProcess.print(SUCCESS);
      claudeProcess.exit(0);
      await events;

      expect(gatewayTokens.issue).toHaveBeenCalledWith('run-1');
      expect(claude.buildInvocation).toHaveBeenCalledWith(expect.objectContaining({ modelGateway: { url: GATEWAY_URL, token: RUN_TOKEN } }));
      expectTokenRevokedBeforeDone();
    });

    it('injects the credentials as before when the engine has no gateway URL (Modal without MODEL_GATEWAY_PUBLIC_URL)', async () => {
      provider.modelGatewayUrl.mockReturnValue(null);
      const events = start(newRun());
      await settle();
      claudeProcess.print(SUCCESS);
      claudeProcess.exit(0);
      await events;

      expect(gatewayTokens.issue).not.toHaveBeenCalled();
      expect(claude.buildInvocation).toHaveBeenCalledWith(expect.objectContaining({ modelGateway: undefined }));
    });

    it('injects the credentials as before for Bedrock or Vertex', async () => {
      claude.supportsModelGateway.mockReturnValue(false);
      const events = start(newRun());
      await settle();
      claudeProcess.print(SUCCESS);
      claudeProcess.exit(0);
      await events;

      expect(gatewayTokens.issue).not.toHaveBeenCalled();
      expect(claude.buildInvocation).toHaveBeenCalledWith(expect.objectContaining({ modelGateway: undefined }));
    });

    it.each([
      ['the engine has no gateway URL', () => provider.modelGatewayUrl.mockReturnValue(null), /can read them.*MODEL_GATEWAY_PUBLIC_URL/],
      ['the credentials are Bedrock or Vertex', () => claude.supportsModelGateway.mockReturnValue(false), /can read them.*Bedrock and Vertex/],
    ])('warns once at start-up that any process in a sandbox can read the credentials when %s', (_case, arrange, message) => {
      const warn = jest.spyOn(Logger.prototype, 'warn');
      claude.isConfigured.mockReturnValue(true);
      arrange();

      executor.onApplicationBootstrap();

      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][1])).toMatch(message);
    });

    it('does not warn when runs go through the gateway', () => {
      const warn = jest.spyOn(Logger.prototype, 'warn');
      claude.isConfigured.mockReturnValue(true);

      executor.onApplicationBootstrap();

      expect(warn).not.toHaveBeenCalled();
    });
  });

  it('runs Claude in the sandbox workdir, with its state on the volume and credentials only in its secret environment', async () => {
    const run = newRun({ resumed_session_id: 'sess-1', model: 'claude-sonnet-4-5' });
    const events = start(run);
    await settle();
    claudeProcess.print(SUCCESS);
    claudeProcess.exit(0);
    await events;

    expect(claude.buildInvocation).toHaveBeenCalledWith(
      expect.objectContaining({ prompt: 'fix the tests', resumeSessionId: 'sess-1', model: 'claude-sonnet-4-5', configDir: '/mnt/workspace/.claude-state' }),
    );
    expect(provider.exec).toHaveBeenCalledWith('prov-1', { argv: INVOCATION.argv, env: INVOCATION.env, secretEnv: INVOCATION.secretEnv, workdir: '/mnt/workspace/app' });
    expect(runs.update).toHaveBeenCalledWith({ id: 'run-1' }, { status: 'running', startedAt: expect.any(Date) });
  });

  it('turns stdout lines into events of their type, anything else into output, stderr into stderr events', async () => {
    const events = start(newRun());
    await settle();
    claudeProcess.print(
      { type: 'system', subtype: 'init', session_id: 'sess-9' },
      { type: 'assistant', message: { content: [{ type: 'text', text: 'On it' }] } },
      { type: 'user', message: { content: [] } },
      { type: 'stream_event', event: { type: 'content_block_delta' } },
      { type: 'rate_limit_notice', retry_in: 3 },
      'plain text from a tool',
      '[1,2,3]',
      SUCCESS,
    );
    claudeProcess.printError('warning: slow network');
    claudeProcess.exit(0);
    const all = await events;

    const fromStdout = all.filter((event) => event.type !== 'stderr');
    expect(typesOf(fromStdout)).toEqual(['system', 'assistant', 'user', 'stream_event', 'output', 'output', 'output', 'result', 'done']);
    expect(fromStdout[1].data).toEqual({ type: 'assistant', message: { content: [{ type: 'text', text: 'On it' }] } });
    expect(fromStdout.slice(4, 7).map((event) => event.data)).toEqual([
      { line: JSON.stringify({ type: 'rate_limit_notice', retry_in: 3 }) },
      { line: 'plain text from a tool' },
      { line: '[1,2,3]' },
    ]);
    expect(all.filter((event) => event.type === 'stderr').map((event) => event.data)).toEqual([{ line: 'warning: slow network' }]);
  });

  it('reports a line over 10 MB as an error event and keeps reading', async () => {
    const events = start(newRun());
    await settle();
    claudeProcess.print('x'.repeat(10 * 1024 * 1024 + 10), SUCCESS);
    claudeProcess.exit(0);
    const all = await events;

    expect(typesOf(all)).toEqual(['error', 'result', 'done']);
    expect(all[0].data).toEqual({ message: expect.stringContaining('exceeded the 10 MB limit') });
  });

  it('records a successful result: status, session, cost and usage, and ends the stream with done', async () => {
    const events = start(newRun());
    await settle();
    claudeProcess.print(SUCCESS);
    claudeProcess.exit(0);
    const all = await events;

    expect(storedRun()).toMatchObject({ status: 'succeeded', exitCode: 0, sessionId: 'sess-9', result: 'All tests pass', totalCostUsd: 0.0123, usage: SUCCESS.usage, numTurns: 2, error: null });
    expect(all[all.length - 1]).toMatchObject({
      type: 'done',
      data: { run_id: 'run-1', status: 'succeeded', exit_code: 0, session_id: 'sess-9', total_cost_usd: 0.0123, usage: SUCCESS.usage },
    });
    await settle();
    expect(await executor.cancel('run-1')).toBe(false);
  });

  it('fails a run whose result is an error, with its reason', async () => {
    const events = start(newRun());
    await settle();
    claudeProcess.print({ ...SUCCESS, subtype: 'error_max_turns', is_error: true, result: 'Reached the turn limit' });
    claudeProcess.exit(1);
    const all = await events;

    expect(storedRun()).toMatchObject({ status: 'failed', sessionId: 'sess-9', error: 'error_max_turns: Reached the turn limit' });
    expect(typesOf(all).slice(-2)).toEqual(['error', 'done']);
  });

  it('fails a run that exits without a result, quoting the end of its error output', async () => {
    const events = start(newRun());
    await settle();
    claudeProcess.printError('Error: Invalid API key · Please run /login');
    claudeProcess.exit(1);
    const all = await events;

    expect(storedRun()).toMatchObject({ status: 'failed', exitCode: 1, error: expect.stringContaining('Invalid API key') });
    expectTokenRevokedBeforeDone();
    expect(all.slice(-2)).toEqual([
      expect.objectContaining({ type: 'error', data: { message: expect.stringContaining('Invalid API key') } }),
      expect.objectContaining({ type: 'done', data: expect.objectContaining({ status: 'failed', exit_code: 1 }) }),
    ]);
  });

  it('quotes only the last few kilobytes of a long error output', async () => {
    const events = start(newRun());
    await settle();
    claudeProcess.printError(...Array.from({ length: 200 }, (_, index) => `stderr line ${index} ${'.'.repeat(80)}`));
    claudeProcess.exit(1);
    await events;

    const error = storedRun().error!;
    expect(error).toContain('stderr line 199');
    expect(error).not.toContain('stderr line 0 ');
    expect(error.length).toBeLessThan(4096 + 200);
  });

  describe('watchdog', () => {
    beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));

    it('kills a run that stays silent for the idle timeout and marks it timed out', async () => {
      const events = start(newRun());
      await settle();

      await jest.advanceTimersByTimeAsync(4_000);
      claudeProcess.print({ type: 'assistant', message: {} });
      await settle();
      await jest.advanceTimersByTimeAsync(4_000);
      expect(claudeProcess.kill).not.toHaveBeenCalled();
      await jest.advanceTimersByTimeAsync(1_001);
      const all = await events;

      expect(claudeProcess.kill).toHaveBeenCalled();
      expect(storedRun()).toMatchObject({ status: 'timed_out', error: expect.stringContaining('no output for too long') });
      expect(typesOf(all).slice(-1)).toEqual(['done']);
      expectTokenRevokedBeforeDone();
    });

    it('kills a run that keeps talking past its time limit', async () => {
      const events = start(newRun({ timeout_seconds: 8 }));
      await settle();

      for (let second = 1; second < 8; second++) {
        await jest.advanceTimersByTimeAsync(1_000);
        claudeProcess.print({ type: 'assistant', message: {} });
        await settle();
      }
      expect(claudeProcess.kill).not.toHaveBeenCalled();
      await jest.advanceTimersByTimeAsync(1_001);
      await events;

      expect(storedRun()).toMatchObject({ status: 'timed_out' });
    });
  });

  describe('cancel', () => {
    it('kills the process and records the run as cancelled, ending its stream with done', async () => {
      const events = start(newRun());
      await settle();
      claudeProcess.print({ type: 'assistant', message: {} });

      await expect(executor.cancel('run-1')).resolves.toBe(true);
      const all = await events;

      expect(claudeProcess.kill).toHaveBeenCalled();
      expect(storedRun()).toMatchObject({ status: 'cancelled', error: null });
      expectTokenRevokedBeforeDone();
      expect(all[all.length - 1]).toMatchObject({ type: 'done', data: { status: 'cancelled' } });
      expect(await executor.cancel('run-1')).toBe(false);
    });

    it('stops a run cancelled before its process started', async () => {
      let startProcess!: (process: SandboxProcess) => void;
      provider.exec.mockReturnValueOnce(new Promise((resolve) => (startProcess = resolve)));
      const events = start(newRun());
      await settle();

      const cancelled = executor.cancel('run-1');
      startProcess(claudeProcess);

      await expect(cancelled).resolves.toBe(true);
      await events;
      expect(claudeProcess.kill).toHaveBeenCalled();
      expect(storedRun()).toMatchObject({ status: 'cancelled' });
    });

    it('answers false for a run that is not active', async () => {
      await expect(executor.cancel('run-unknown')).resolves.toBe(false);
    });
  });

  it('records runs still active at shutdown as interrupted', async () => {
    const events = start(newRun());
    await settle();

    await executor.onModuleDestroy();
    const all = await events;

    expect(storedRun()).toMatchObject({ status: 'interrupted', error: expect.stringContaining('service stopped') });
    expectTokenRevokedBeforeDone();
    expect(all[all.length - 1]).toMatchObject({ type: 'done', data: { status: 'interrupted' } });
  });

  it('fails the run and still ends its stream with done when the engine cannot start Claude', async () => {
    provider.exec.mockReset().mockRejectedValueOnce(new SandboxGoneError('prov-1'));

    const all = await start(newRun());

    expect(storedRun()).toMatchObject({ status: 'failed', error: expect.stringContaining('prov-1 is no longer running') });
    expect(typesOf(all)).toEqual(['error', 'done']);
    expectTokenRevokedBeforeDone();
  });
});
