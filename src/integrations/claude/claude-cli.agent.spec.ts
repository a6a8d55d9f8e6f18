import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { lastValueFrom, toArray } from 'rxjs';
import { AppConfig } from '../../config/app-config';
import { strictMock } from '../../testing/strict-mock';
import { ExecExit, ExecRequest, SandboxProcess, SandboxProvider } from '../sandbox/sandbox-provider';
import { SandboxGoneError } from '../sandbox/sandbox-provider.errors';
import { ClaudeExecution, ResumePoint } from './claude.agent';
import { ClaudeEvent, ExecutionDetachedError } from './claude.events';
import { ClaudeCliAgent } from './claude-cli.agent';
import { followArgv, killArgv, startArgv } from './claude-run-log';

/**
 * One exec in the sandbox: the test (or the fake agent) writes its output and decides when it exits.
 * As with the real engines, wait() resolves only once the process exited and both its output
 * streams were read to their end: output nobody reads holds it.
 */
class FakeProcess implements SandboxProcess {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  /** Killing the exec ends it like a signal would (and nothing else: an agent it started runs on). */
  readonly kill = jest.fn(async () => this.exit(137));
  exited = false;
  private resolveExit!: (exit: ExecExit) => void;
  private readonly exitPromise = Promise.all([
    new Promise<ExecExit>((resolve) => (this.resolveExit = resolve)),
    once(this.stdout, 'end'),
    once(this.stderr, 'end'),
  ]).then(([exit]) => exit);

  wait(): Promise<ExecExit> {
    return this.exitPromise;
  }

  exit(exitCode: number): void {
    if (this.exited) return;
    this.exited = true;
    this.stdout.end();
    this.stderr.end();
    this.resolveExit({ exitCode, timedOut: false });
  }

  static exited(exitCode: number, stderr = ''): FakeProcess {
    const process = new FakeProcess();
    if (stderr) process.stderr.write(stderr);
    process.exit(exitCode);
    return process;
  }
}

/**
 * Claude running detached in the sandbox, as its log files show it (see claude-run-log.ts): what it
 * printed so far, and whether it ended. Followers print a log from an offset, then what is
 * appended, and end when the agent ends: stdout's with the agent's exit code, stderr's with 0.
 */
class FakeAgent {
  started = false;
  killed = false;
  exitCode: number | null = null;
  readonly logs = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  readonly endLines = { stdout: '', stderr: '' };

  /** Bytes the agent itself wrote to a log (without the wrapper's end-of-run line). */
  outputLength(stream: 'stdout' | 'stderr'): number {
    return this.logs[stream].length - Buffer.byteLength(this.endLines[stream]);
  }
  readonly followers: Array<{ stream: 'stdout' | 'stderr'; offset: number; process: FakeProcess }> = [];

  print(...lines: Array<string | object>): void {
    for (const line of lines) this.write('stdout', `${typeof line === 'string' ? line : JSON.stringify(line)}\n`);
  }

  printError(...lines: string[]): void {
    for (const line of lines) this.write('stderr', `${line}\n`);
  }

  write(stream: 'stdout' | 'stderr', text: string): void {
    const bytes = Buffer.from(text);
    this.logs[stream] = Buffer.concat([this.logs[stream], bytes]);
    for (const follower of this.followers) if (follower.stream === stream && !follower.process.exited) follower.process.stdout.write(bytes);
  }

  /** The agent ends: the wrapper appends its end-of-run line to both logs (not when the group was killed). */
  exit(exitCode: number): void {
    if (this.exitCode !== null) return;
    if (!this.killed) for (const stream of ['stdout', 'stderr'] as const) this.write(stream, (this.endLines[stream] = `\nclaude-run-ended ${exitCode}\n`));
    this.exitCode = exitCode;
    for (const follower of this.followers) this.end(follower.stream, follower.process);
  }

  /** killArgv: kills the process group (no exit file: the stdout follower says 137); nothing before the start. */
  kill(): void {
    if (!this.started || this.exitCode !== null) return;
    this.killed = true;
    this.exit(137);
  }

  /** followArgv: waits for the agent to start (its pid file), then prints its log from the offset. */
  follow(stream: 'stdout' | 'stderr', offset: number): FakeProcess {
    const process = new FakeProcess();
    this.followers.push({ stream, offset, process });
    const rest = this.logs[stream].subarray(offset);
    if (rest.length > 0) process.stdout.write(rest);
    if (this.exitCode !== null) this.end(stream, process);
    return process;
  }

  private end(stream: 'stdout' | 'stderr', process: FakeProcess): void {
    process.exit(stream === 'stdout' ? this.exitCode! : 0);
  }
}

const SANDBOX = { providerSandboxId: 'prov-1', workdir: '/mnt/workspace/app', volumeMountPath: '/mnt/workspace' };
const RUN_DIR = '/run/claude-runs/run-1';
const GATEWAY_URL = 'http://127.0.0.1:4100';
const CREDENTIALS = { ANTHROPIC_API_KEY: 'sk-ant-secret' };
const SUCCESS = { type: 'result', subtype: 'success', is_error: false, result: 'All tests pass', session_id: 'sess-9', total_cost_usd: 0.0123, usage: { input_tokens: 10, output_tokens: 20 }, num_turns: 2 };
const lineBytes = (line: object | string) => Buffer.byteLength(`${typeof line === 'string' ? line : JSON.stringify(line)}\n`);

// An exec whose wait() never resolves would hang a test: fail it early instead.
jest.setTimeout(10_000);

describe('ClaudeCliAgent', () => {
  let sandboxes: jest.Mocked<SandboxProvider>;
  let agent: FakeAgent;
  /** What the starter exec does; by default it starts the agent and exits 0 at once. */
  let starter: (request: ExecRequest) => Promise<SandboxProcess>;

  function agentWith(env: Record<string, string> = CREDENTIALS): ClaudeCliAgent {
    return new ClaudeCliAgent(AppConfig.fromEnvironment({ DATA_DIR: '/tmp/claude-cli-agent-spec', ...env }), sandboxes);
  }

  /** Dispatches an exec on its argv, as the scripts of claude-run-log.ts would behave. */
  function exec(request: ExecRequest): Promise<SandboxProcess> {
    const { argv } = request;
    if (argv.length === 5) {
      agent.kill();
      return Promise.resolve(FakeProcess.exited(0));
    }
    if (argv.length === 7 && (argv[5] === 'stdout' || argv[5] === 'stderr')) return Promise.resolve(agent.follow(argv[5], Number(argv[6])));
    return starter(request);
  }

  const startAgent = () => {
    agent.started = true;
    return Promise.resolve(FakeProcess.exited(0));
  };

  beforeEach(() => {
    agent = new FakeAgent();
    starter = startAgent;
    sandboxes = strictMock<SandboxProvider>('sandboxes', ['exec', 'modelGatewayUrl']);
    sandboxes.exec.mockImplementation((_id, request) => exec(request));
    sandboxes.modelGatewayUrl.mockReturnValue(GATEWAY_URL);
  });

  /** The requests of the execs of one kind, in order. */
  function execsOf(kind: 'start' | 'stdout' | 'stderr' | 'kill'): ExecRequest[] {
    const requests = sandboxes.exec.mock.calls.map(([, request]) => request);
    if (kind === 'kill') return requests.filter((request) => request.argv.length === 5);
    const follows = (request: ExecRequest) => request.argv.length === 7 && ['stdout', 'stderr'].includes(request.argv[5]);
    if (kind === 'start') return requests.filter((request) => request.argv.length !== 5 && !follows(request));
    return requests.filter((request) => follows(request) && request.argv[5] === kind);
  }

  /** Runs Claude to its end and returns what it produced. */
  async function run(execution: ClaudeExecution, act: () => void) {
    const events = lastValueFrom(execution.events$.pipe(toArray()));
    await new Promise((resolve) => setImmediate(resolve));
    act();
    return { events: await events, result: await execution.result };
  }

  /** Waits until both followers run. */
  async function followed(): Promise<void> {
    while (agent.followers.length < 2) await new Promise((resolve) => setImmediate(resolve));
  }

  const withoutPositions = (events: ClaudeEvent[]) => events.map(({ position: _position, ...event }) => event);

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

  it('starts the CLI detached as root in the sandbox workdir, its state on the volume and the credentials only in the starter’s secret environment', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'fix the tests', resumeSessionId: 'sess-1', model: 'claude-sonnet-4-5' });
    await run(execution, () => agent.exit(0));

    const claudeArgv = ['claude', '-p', '--output-format=stream-json', '--verbose', '--model=claude-sonnet-4-5', '--dangerously-skip-permissions', '--resume=sess-1', '--', 'fix the tests'];
    expect(sandboxes.exec.mock.calls[0]).toEqual([
      'prov-1',
      {
        argv: startArgv(RUN_DIR, claudeArgv),
        env: { CLAUDE_CONFIG_DIR: '/mnt/workspace/.claude-state', IS_SANDBOX: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_AUTOUPDATER: '1' },
        secretEnv: CREDENTIALS,
        workdir: '/mnt/workspace/app',
      },
    ]);
    expect(sandboxes.exec.mock.calls[0][1].argv.slice(0, 6)).toEqual(['/bin/sh', '-c', expect.any(String), 'sh', RUN_DIR, 'claude']);
    // The followers (from the start of the logs) get the run's directory only: no secret, no environment.
    expect(sandboxes.exec).toHaveBeenCalledTimes(3);
    expect(sandboxes.exec.mock.calls.slice(1)).toEqual(
      expect.arrayContaining([
        ['prov-1', { argv: followArgv(RUN_DIR, 'stdout', 0) }],
        ['prov-1', { argv: followArgv(RUN_DIR, 'stderr', 0) }],
      ]),
    );
    for (const [, request] of sandboxes.exec.mock.calls.slice(1)) expect(Object.keys(request)).toEqual(['argv']);
  });

  it('hands Claude the gateway URL and the run token instead of the credentials when given a token', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi', modelGatewayToken: 'mgw_run-token' });
    await run(execution, () => agent.exit(0));

    expect(execsOf('start')).toHaveLength(1);
    expect(execsOf('start')[0].secretEnv).toEqual({ ANTHROPIC_BASE_URL: GATEWAY_URL, ANTHROPIC_API_KEY: 'mgw_run-token' });
    for (const request of [...execsOf('stdout'), ...execsOf('stderr')]) expect(request).toEqual({ argv: expect.any(Array) });
  });

  it('turns stdout lines into Claude messages, anything else into output, and stderr into stderr lines', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { events } = await run(execution, () => {
      agent.print(
        { type: 'system', subtype: 'init', session_id: 'sess-9' },
        { type: 'assistant', message: { content: [{ type: 'text', text: 'On it' }] } },
        { type: 'user', message: { content: [] } },
        { type: 'stream_event', event: { type: 'content_block_delta' } },
        { type: 'rate_limit_notice', retry_in: 3 },
        'plain text from a tool',
        '[1,2,3]',
        SUCCESS,
      );
      agent.printError('warning: slow network');
      agent.exit(0);
    });

    const fromStdout = withoutPositions(events.filter((event) => event.kind !== 'stderr'));
    expect(fromStdout.map((event) => (event.kind === 'message' ? event.type : event.kind))).toEqual(['system', 'assistant', 'user', 'stream_event', 'output', 'output', 'output', 'result']);
    expect(fromStdout[1]).toEqual({ kind: 'message', type: 'assistant', payload: { type: 'assistant', message: { content: [{ type: 'text', text: 'On it' }] } } });
    expect(fromStdout.slice(4, 7)).toEqual([
      { kind: 'output', line: JSON.stringify({ type: 'rate_limit_notice', retry_in: 3 }) },
      { kind: 'output', line: 'plain text from a tool' },
      { kind: 'output', line: '[1,2,3]' },
    ]);
    expect(events.filter((event) => event.kind === 'stderr')).toEqual([{ kind: 'stderr', line: 'warning: slow network', position: { stream: 'stderr', offset: 22 } }]);
  });

  it('says with each event where its line ends in its log, in bytes', async () => {
    const lines = [{ type: 'system', subtype: 'init' }, '', 'Größe 🚀', SUCCESS];
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { events } = await run(execution, () => {
      agent.print(...lines);
      agent.printError('first', 'ünïcode');
      agent.exit(0);
    });

    const ends = lines.map((_, index) => lines.slice(0, index + 1).reduce<number>((sum, line) => sum + lineBytes(line), 0));
    expect(events.filter((event) => event.kind !== 'stderr').map((event) => event.position)).toEqual([
      { stream: 'stdout', offset: ends[0] },
      // The blank line yields no event, but counts.
      { stream: 'stdout', offset: ends[2] },
      { stream: 'stdout', offset: ends[3] },
    ]);
    expect(ends[3]).toBe(agent.outputLength('stdout'));
    expect(events.filter((event) => event.kind === 'stderr').map((event) => event.position)).toEqual([
      { stream: 'stderr', offset: 6 },
      { stream: 'stderr', offset: 6 + Buffer.byteLength('ünïcode\n') },
    ]);
  });

  it('reports a line over 10 MB as oversized and keeps reading', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { events } = await run(execution, () => {
      agent.print('x'.repeat(10 * 1024 * 1024 + 10), SUCCESS);
      agent.exit(0);
    });

    expect(events).toEqual([
      { kind: 'oversized', bytes: 10 * 1024 * 1024 + 10, limitBytes: 10 * 1024 * 1024, position: { stream: 'stdout', offset: 10 * 1024 * 1024 + 11 } },
      expect.objectContaining({ kind: 'message', type: 'result', position: { stream: 'stdout', offset: 10 * 1024 * 1024 + 11 + lineBytes(SUCCESS) } }),
    ]);
  });

  it('interprets a successful result: session, cost, usage and turns', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      agent.print(SUCCESS);
      agent.exit(0);
    });

    expect(result).toEqual({ status: 'succeeded', error: null, exitCode: 0, sessionId: 'sess-9', result: 'All tests pass', totalCostUsd: 0.0123, usage: SUCCESS.usage, numTurns: 2 });
  });

  it('asks for the starter exec first and the followers only once it exists, so the agent is never queued behind them', async () => {
    let launch!: (process: SandboxProcess) => void;
    starter = () => new Promise((resolve) => (launch = resolve));
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    await new Promise((resolve) => setImmediate(resolve));
    expect({ starts: execsOf('start').length, follows: execsOf('stdout').length + execsOf('stderr').length }).toEqual({ starts: 1, follows: 0 });

    agent.started = true;
    launch(FakeProcess.exited(0));
    const { result } = await run(execution, () => {
      agent.print(SUCCESS);
      agent.exit(0);
    });
    expect(result.status).toBe('succeeded');
    expect(execsOf('stdout')).toHaveLength(1);
    expect(execsOf('stderr')).toHaveLength(1);
  });

  it('ends at the wrapper’s end-of-run line, with its exit code, without waiting for the followers to notice the agent is gone', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { events, result } = await run(execution, () => {
      agent.print(SUCCESS);
      // The end-of-run lines only: the followers' tails would notice the agent's end only later.
      for (const stream of ['stdout', 'stderr'] as const) agent.write(stream, '\nclaude-run-ended 0\n');
    });

    expect(result).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(events.map((event) => event.kind)).toEqual(['message']);
    // Left to exit by themselves (their tails notice within 20 ms): killing one costs an exec on Modal.
    expect(agent.followers).toHaveLength(2);
    for (const follower of agent.followers) expect(follower.process.kill).not.toHaveBeenCalled();
  });

  it('fails on an error result, with its reason', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      agent.print({ ...SUCCESS, subtype: 'error_max_turns', is_error: true, result: 'Reached the turn limit' });
      agent.exit(1);
    });

    expect(result).toMatchObject({ status: 'failed', sessionId: 'sess-9', exitCode: 1, error: 'error_max_turns: Reached the turn limit' });
  });

  it('fails when Claude exits without a result, quoting the end of its error output', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      agent.printError('Error: Invalid API key · Please run /login');
      agent.exit(1);
    });

    expect(result).toMatchObject({ status: 'failed', exitCode: 1, error: expect.stringContaining('Invalid API key') });
  });

  it('quotes only the last few kilobytes of a long error output', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      agent.printError(...Array.from({ length: 200 }, (_, index) => `stderr line ${index} ${'.'.repeat(80)}`));
      agent.exit(1);
    });

    expect(result.error).toContain('stderr line 199');
    expect(result.error).not.toContain('stderr line 0 ');
    expect(result.error!.length).toBeLessThan(4096 + 200);
  });

  it('kills Claude on cancel, through the kill script, and ends with its exit code', async () => {
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const { result } = await run(execution, () => {
      agent.print({ type: 'system', subtype: 'init' });
      void execution.cancel();
    });

    expect(execsOf('kill')).toEqual([{ argv: killArgv(RUN_DIR) }]);
    expect(agent.killed).toBe(true);
    expect(result).toMatchObject({ status: 'failed', exitCode: 137 });
  });

  it('kills Claude as soon as it has started when cancelled while starting', async () => {
    let startProcess!: () => void;
    starter = () => new Promise((resolve) => (startProcess = () => resolve(startAgent())));
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });

    await execution.cancel();
    // Too early to kill anything: the agent has not started yet.
    expect(agent.killed).toBe(false);
    startProcess();
    const result = await execution.result;

    expect(agent.killed).toBe(true);
    expect(execsOf('kill')).toHaveLength(2);
    expect(result).toMatchObject({ status: 'failed', exitCode: 137 });
  });

  it('rejects the result and completes the events when the engine cannot start Claude', async () => {
    starter = () => Promise.reject(new SandboxGoneError('prov-1'));
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const events = lastValueFrom(execution.events$.pipe(toArray()));

    await expect(execution.result).rejects.toThrow('prov-1 is no longer running');
    await expect(events).resolves.toEqual([]);
    expect(agent.followers.filter((follower) => !follower.process.exited)).toEqual([]);
  });

  it('rejects the result with the starter’s error output when it exits non-zero, and leaves no follower running', async () => {
    starter = () => Promise.resolve(FakeProcess.exited(125, 'run already started\n'));
    const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
    const events = lastValueFrom(execution.events$.pipe(toArray()));

    await expect(execution.result).rejects.toThrow('Claude could not be started in the sandbox (exit code 125): run already started');
    await expect(events).resolves.toEqual([]);
    expect(agent.followers.filter((follower) => !follower.process.exited)).toEqual([]);
  });

  describe('resume', () => {
    const INIT = { type: 'system', subtype: 'init', session_id: 'sess-9' };
    const ASSISTANT = { type: 'assistant', message: { content: [] } };

    it('follows the run from the given offsets without starting it again, the events continuing where they stopped', async () => {
      agent.started = true;
      agent.print(INIT, ASSISTANT);
      agent.printError('already read', 'not yet read');
      const from: ResumePoint = { offsets: { stdout: lineBytes(INIT), stderr: lineBytes('already read') }, stderrTail: 'already read' };

      const execution = agentWith().resume(SANDBOX, 'run-1', from);
      const { events, result } = await run(execution, () => {
        agent.print(SUCCESS);
        agent.exit(0);
      });

      expect(execsOf('start')).toEqual([]);
      expect(execsOf('stdout')).toEqual([{ argv: followArgv(RUN_DIR, 'stdout', lineBytes(INIT)) }]);
      expect(execsOf('stderr')).toEqual([{ argv: followArgv(RUN_DIR, 'stderr', lineBytes('already read')) }]);
      expect(events.filter((event) => event.kind !== 'stderr')).toEqual([
        { kind: 'message', type: 'assistant', payload: ASSISTANT, position: { stream: 'stdout', offset: lineBytes(INIT) + lineBytes(ASSISTANT) } },
        { kind: 'message', type: 'result', payload: SUCCESS, position: { stream: 'stdout', offset: agent.outputLength('stdout') } },
      ]);
      expect(events.filter((event) => event.kind === 'stderr')).toEqual([{ kind: 'stderr', line: 'not yet read', position: { stream: 'stderr', offset: agent.outputLength('stderr') } }]);
      expect(result).toMatchObject({ status: 'succeeded', sessionId: 'sess-9', exitCode: 0 });
    });

    it('uses the result recorded before the restart when the result line was already read', async () => {
      agent.started = true;
      agent.print(INIT, SUCCESS);
      agent.exit(0);
      const from: ResumePoint = { offsets: { stdout: agent.outputLength('stdout'), stderr: 0 }, result: SUCCESS, stderrTail: '' };

      const execution = agentWith().resume(SANDBOX, 'run-1', from);
      const { events, result } = await run(execution, () => undefined);

      expect(events).toEqual([]);
      expect(result).toEqual({ status: 'succeeded', error: null, exitCode: 0, sessionId: 'sess-9', result: 'All tests pass', totalCostUsd: 0.0123, usage: SUCCESS.usage, numTurns: 2 });
    });

    it('explains a failure with the stderr recorded before the restart and what came after', async () => {
      agent.started = true;
      agent.printError('Error: first half');
      const from: ResumePoint = { offsets: { stdout: 0, stderr: agent.outputLength('stderr') }, stderrTail: 'Error: first half' };

      const execution = agentWith().resume(SANDBOX, 'run-1', from);
      const { result } = await run(execution, () => {
        agent.printError('second half');
        agent.exit(1);
      });

      expect(result).toMatchObject({ status: 'failed', exitCode: 1, error: expect.stringContaining('Error: first half\nsecond half') });
    });
  });

  describe('detach', () => {
    it('stops following, leaving Claude running: the followers are killed, not the agent, and the result rejects', async () => {
      const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });
      const events = lastValueFrom(execution.events$.pipe(toArray()));
      await followed();
      agent.print({ type: 'system', subtype: 'init' });
      // A line still being written when the service stops is not an event: the next service reads it whole.
      agent.write('stdout', '{"type":"assistant","mess');
      await new Promise((resolve) => setImmediate(resolve));

      await execution.detach();

      await expect(execution.result).rejects.toBeInstanceOf(ExecutionDetachedError);
      expect(withoutPositions(await events)).toEqual([{ kind: 'message', type: 'system', payload: { type: 'system', subtype: 'init' } }]);
      for (const follower of agent.followers) expect(follower.process.kill).toHaveBeenCalled();
      expect(execsOf('kill')).toEqual([]);
      expect(agent.killed).toBe(false);
      expect(agent.exitCode).toBeNull();
    });

    it('stops following when detached while Claude is starting, and leaves it running', async () => {
      let startProcess!: () => void;
      starter = () => new Promise((resolve) => (startProcess = () => resolve(startAgent())));
      const execution = agentWith().start(SANDBOX, 'run-1', { prompt: 'hi' });

      await execution.detach();
      startProcess();

      await expect(execution.result).rejects.toBeInstanceOf(ExecutionDetachedError);
      expect(agent.followers.filter((follower) => !follower.process.exited)).toEqual([]);
      expect(execsOf('kill')).toEqual([]);
      expect(agent.started).toBe(true);
    });
  });
});
