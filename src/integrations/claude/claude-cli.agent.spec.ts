import { PassThrough } from 'node:stream';
import { lastValueFrom, toArray } from 'rxjs';
import { AppConfig } from '../../config/app-config';
import { strictMock } from '../../testing/strict-mock';
import { ExecExit, SandboxProcess, SandboxProvider } from '../sandbox/sandbox-provider';
import { SandboxGoneError } from '../sandbox/sandbox-provider.errors';
import { ClaudeExecution } from './claude.agent';
import { ClaudeCliAgent } from './claude-cli.agent';

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

const SANDBOX = { providerSandboxId: 'prov-1', workdir: '/mnt/workspace/app', volumeMountPath: '/mnt/workspace' };
const GATEWAY_URL = 'http://127.0.0.1:4100';
const CREDENTIALS = { ANTHROPIC_API_KEY: 'sk-ant-secret' };
const SUCCESS = { type: 'result', subtype: 'success', is_error: false, result: 'All tests pass', session_id: 'sess-9', total_cost_usd: 0.0123, usage: { input_tokens: 10, output_tokens: 20 }, num_turns: 2 };

describe('ClaudeCliAgent', () => {
  let sandboxes: jest.Mocked<SandboxProvider>;
  let claudeProcess: FakeClaudeProcess;

  function agentWith(env: Record<string, string> = CREDENTIALS): ClaudeCliAgent {
    return new ClaudeCliAgent(AppConfig.fromEnvironment({ DATA_DIR: '/tmp/claude-cli-agent-spec', ...env }), sandboxes);
  }

  beforeEach(() => {
    claudeProcess = new FakeClaudeProcess();
    sandboxes = strictMock<SandboxProvider>('sandboxes', ['exec', 'modelGatewayUrl']);
    sandboxes.exec.mockResolvedValue(claudeProcess);
    sandboxes.modelGatewayUrl.mockReturnValue(GATEWAY_URL);
  });

  /** Runs Claude to its end and returns what it produced. */
  async function run(execution: ClaudeExecution, act: () => void) {
    const events = lastValueFrom(execution.events$.pipe(toArray()));
    await new Promise((resolve) => setImmediate(resolve));
    act();
    return { events: await events, result: await execution.result };
  }

  describe('configuration', () => {
    it('is configured with model credentials and names the variables to set otherwise', () => {
      expect(agentWith().isConfigured()).toBe(true);
      expect(agentWith({}).isConfigured()).toBe(false);
      expect(agentWith({}).missingCredentialsMessage()).toContain('ANTHROPIC_API_KEY');
    });

    it.each([
      ['the credentials are Bedrock or Vertex', { CLAUDE_CODE_USE_VERTEX: '1', CLOUD_ML_REGION: 'us-east5', ANTHROPIC_VERTEX_PROJECT_ID: 'p' }, GATEWAY_URL, /Bedrock and Vertex/],
      ['the engine has no gateway URL', CREDENTIALS, null, /MODEL_GATEWAY_PUBLIC_URL/],
    ])('says why runs cannot use the model gateway when %s', (_case, env, url, reason) => {
      sandboxes.modelGatewayUrl.mockReturnValue(url);

      expect(agentWith(env).modelGatewayUnavailableReason()).toMatch(reason);
    });

    it('has no reason against the gateway for an Anthropic key and an engine that reaches it', () => {
      expect(agentWith().modelGatewayUnavailableReason()).toBeNull();
    });
  });

  it('runs the CLI as root in the sandbox workdir, its state on the volume and the credentials only in its secret environment', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'fix the tests', resumeSessionId: 'sess-1', model: 'claude-sonnet-4-5' });
    await run(execution, () => claudeProcess.exit(0));

    expect(sandboxes.exec).toHaveBeenCalledWith('prov-1', {
      argv: ['claude', '-p', '--output-format=stream-json', '--verbose', '--model=claude-sonnet-4-5', '--dangerously-skip-permissions', '--resume=sess-1', '--', 'fix the tests'],
      env: { CLAUDE_CONFIG_DIR: '/mnt/workspace/.claude-state', IS_SANDBOX: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_AUTOUPDATER: '1' },
      secretEnv: CREDENTIALS,
      workdir: '/mnt/workspace/app',
    });
  });

  it('hands Claude the gateway URL and the run token instead of the credentials when given a token', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi', modelGatewayToken: 'mgw_run-token' });
    await run(execution, () => claudeProcess.exit(0));

    expect(sandboxes.exec.mock.calls[0][1].secretEnv).toEqual({ ANTHROPIC_BASE_URL: GATEWAY_URL, ANTHROPIC_API_KEY: 'mgw_run-token' });
  });

  it('turns stdout lines into Claude messages, anything else into output, and stderr into stderr lines', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { events } = await run(execution, () => {
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
    });

    const fromStdout = events.filter((event) => event.kind !== 'stderr');
    expect(fromStdout.map((event) => (event.kind === 'message' ? event.type : event.kind))).toEqual(['system', 'assistant', 'user', 'stream_event', 'output', 'output', 'output', 'result']);
    expect(fromStdout[1]).toEqual({ kind: 'message', type: 'assistant', payload: { type: 'assistant', message: { content: [{ type: 'text', text: 'On it' }] } } });
    expect(fromStdout.slice(4, 7)).toEqual([
      { kind: 'output', line: JSON.stringify({ type: 'rate_limit_notice', retry_in: 3 }) },
      { kind: 'output', line: 'plain text from a tool' },
      { kind: 'output', line: '[1,2,3]' },
    ]);
    expect(events.filter((event) => event.kind === 'stderr')).toEqual([{ kind: 'stderr', line: 'warning: slow network' }]);
  });

  it('reports a line over 10 MB as oversized and keeps reading', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { events } = await run(execution, () => {
      claudeProcess.print('x'.repeat(10 * 1024 * 1024 + 10), SUCCESS);
      claudeProcess.exit(0);
    });

    expect(events).toEqual([{ kind: 'oversized', bytes: 10 * 1024 * 1024 + 10, limitBytes: 10 * 1024 * 1024 }, expect.objectContaining({ kind: 'message', type: 'result' })]);
  });

  it('interprets a successful result: session, cost, usage and turns', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      claudeProcess.print(SUCCESS);
      claudeProcess.exit(0);
    });

    expect(result).toEqual({ status: 'succeeded', error: null, exitCode: 0, sessionId: 'sess-9', result: 'All tests pass', totalCostUsd: 0.0123, usage: SUCCESS.usage, numTurns: 2 });
  });

  it('fails on an error result, with its reason', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      claudeProcess.print({ ...SUCCESS, subtype: 'error_max_turns', is_error: true, result: 'Reached the turn limit' });
      claudeProcess.exit(1);
    });

    expect(result).toMatchObject({ status: 'failed', sessionId: 'sess-9', exitCode: 1, error: 'error_max_turns: Reached the turn limit' });
  });

  it('fails when Claude exits without a result, quoting the end of its error output', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      claudeProcess.printError('Error: Invalid API key · Please run /login');
      claudeProcess.exit(1);
    });

    expect(result).toMatchObject({ status: 'failed', exitCode: 1, error: expect.stringContaining('Invalid API key') });
  });

  it('quotes only the last few kilobytes of a long error output', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      claudeProcess.printError(...Array.from({ length: 200 }, (_, index) => `stderr line ${index} ${'.'.repeat(80)}`));
      claudeProcess.exit(1);
    });

    expect(result.error).toContain('stderr line 199');
    expect(result.error).not.toContain('stderr line 0 ');
    expect(result.error!.length).toBeLessThan(4096 + 200);
  });

  it('kills Claude on cancel', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => void execution.cancel());

    expect(claudeProcess.kill).toHaveBeenCalled();
    expect(result).toMatchObject({ status: 'failed', exitCode: 137 });
  });

  it('kills Claude as soon as it has started when cancelled while starting', async () => {
    let startProcess!: (process: SandboxProcess) => void;
    sandboxes.exec.mockReturnValueOnce(new Promise((resolve) => (startProcess = resolve)));
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });

    await execution.cancel();
    startProcess(claudeProcess);
    await execution.result;

    expect(claudeProcess.kill).toHaveBeenCalled();
  });

  it('rejects the result and completes the events when the engine cannot start Claude', async () => {
    sandboxes.exec.mockReset().mockRejectedValueOnce(new SandboxGoneError('prov-1'));
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const events = lastValueFrom(execution.events$.pipe(toArray()));

    await expect(execution.result).rejects.toThrow('prov-1 is no longer running');
    await expect(events).resolves.toEqual([]);
  });
});
