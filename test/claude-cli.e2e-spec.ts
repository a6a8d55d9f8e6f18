import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppConfig } from '../src/config/app-config';
import { claudeCliInvocation, ClaudeInvocationOptions } from '../src/integrations/claude/claude-cli.invocation';
import { ClaudeCliPlace, ClaudeCliProcess, runClaudeCli } from './support/claude-cli';
import { FakeAnthropic, requestTexts, systemText, toolResults } from './support/fake-anthropic';

jest.setTimeout(60_000);

const API_KEY = 'sk-ant-fake-e2e-key';

/** The real Claude Code CLI, run directly (no sandbox) against the scripted fake Messages API. */
describe('Claude Code CLI against the fake Anthropic API', () => {
  let fake: FakeAnthropic;
  let config: AppConfig;
  let claudeBin: string;
  let root: string;
  let volume: string;

  beforeAll(async () => {
    fake = await FakeAnthropic.start();
    config = AppConfig.fromEnvironment({ ANTHROPIC_API_KEY: API_KEY, ANTHROPIC_BASE_URL: fake.url });
    claudeBin = config.sandbox.claudeBin;
  });

  afterAll(() => fake.stop());

  beforeEach(async () => {
    fake.reset();
    root = await mkdtemp(join(tmpdir(), 'claude-cli-e2e-'));
    volume = join(root, 'volume');
    await mkdir(volume);
  });

  afterEach(() => rm(root, { recursive: true, force: true }));

  /** A sandbox: the volume as cwd, Claude's state on the volume, its own HOME. */
  async function sandbox(name = 'first'): Promise<ClaudeCliPlace> {
    const home = join(root, `home-${name}`);
    await mkdir(join(home, 'tmp'), { recursive: true });
    return { bin: claudeBin, cwd: volume, home };
  }

  function invocation(options: Partial<ClaudeInvocationOptions> & { prompt: string }) {
    return claudeCliInvocation(config, { runsAsRoot: true, configDir: join(volume, '.claude'), ...options });
  }

  function shape(event: Record<string, unknown> & { type: string }): string {
    const content = (event.message as { content?: Array<{ type: string; name?: string }> } | undefined)?.content ?? [];
    if (event.type === 'system' || event.type === 'result') return `${event.type}:${event.subtype}`;
    return [event.type, ...content.map((block) => (block.name ? `${block.type}:${block.name}` : block.type))].join(':');
  }

  it('runs a tool loop: streams init, each block, the tool results and the result, and changes the files', async () => {
    fake.script([
      {
        content: [
          { type: 'text', text: 'Writing the file.' },
          { type: 'tool_use', id: 'toolu_write', name: 'Write', input: { file_path: join(volume, 'notes/hello.txt'), content: 'héllo 🚀\n' } },
        ],
      },
      {
        content: [
          { type: 'tool_use', id: 'toolu_bash', name: 'Bash', input: { command: 'echo ran > bash.txt && printf "pwd=%s" "$PWD"', description: 'Record a run' } },
        ],
      },
      { content: [{ type: 'text', text: 'All done.' }] },
    ]);

    const cli = await runClaudeCli(invocation({ prompt: 'create the files' }), await sandbox());

    expect(cli.exit.code).toBe(0);
    expect(cli.events.map(shape)).toEqual([
      'system:init',
      'assistant:text',
      'assistant:tool_use:Write',
      'user:tool_result',
      'assistant:tool_use:Bash',
      'user:tool_result',
      'assistant:text',
      'result:success',
    ]);
    const init = cli.events[0];
    expect(init).toMatchObject({ cwd: volume, permissionMode: 'bypassPermissions', apiKeySource: 'ANTHROPIC_API_KEY' });
    expect(cli.result).toMatchObject({ is_error: false, result: 'All done.', num_turns: 3, session_id: init.session_id });
    expect(cli.result!.total_cost_usd).toBeGreaterThan(0);
    expect(await readFile(join(volume, 'notes/hello.txt'), 'utf8')).toBe('héllo 🚀\n');
    expect(await readFile(join(volume, 'bash.txt'), 'utf8')).toBe('ran\n');

    const [first, second, third] = fake.conversationRequests;
    expect(fake.conversationRequests).toHaveLength(3);
    expect(first.headers['x-api-key']).toBe(API_KEY);
    expect(first.body.stream).toBe(true);
    expect(toolResults(second.body)).toEqual({ toolu_write: expect.stringContaining('File created successfully') });
    expect(toolResults(third.body)).toMatchObject({ toolu_bash: `pwd=${volume}` });
    expect(fake.unconsumedReplies).toBe(0);
  });

  it('emits stream_event lines with the deltas when partial messages are requested', async () => {
    fake.script([{ content: [{ type: 'text', text: 'one two three four five six' }] }]);

    const cli = await runClaudeCli(invocation({ prompt: 'count', includePartialMessages: true }), await sandbox());

    const deltas = cli.events
      .filter((event) => event.type === 'stream_event')
      .map((event) => (event.event as { type: string; delta?: { text?: string } }))
      .filter((event) => event.type === 'content_block_delta')
      .map((event) => event.delta!.text);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('one two three four five six');
    const eventTypes = cli.events.filter((event) => event.type === 'stream_event').map((event) => (event.event as { type: string }).type);
    expect(eventTypes[0]).toBe('message_start');
    expect(eventTypes.at(-1)).toBe('message_stop');
    expect(cli.result).toMatchObject({ result: 'one two three four five six' });
  });

  it('passes model, max turns, appended system prompt and tool restrictions through to the API', async () => {
    fake.script([
      { content: [{ type: 'tool_use', name: 'Bash', input: { command: 'true', description: 'Nothing' } }] },
      { content: [{ type: 'tool_use', name: 'Bash', input: { command: 'true', description: 'Nothing' } }] },
    ]);

    const cli = await runClaudeCli(
      invocation({
        prompt: 'go',
        model: 'claude-fake-model',
        maxTurns: 1,
        appendSystemPrompt: '-Always answer in haiku.\n"Really."',
        disallowedTools: ['Write', 'Edit'],
      }),
      await sandbox(),
    );

    const [request] = fake.conversationRequests;
    expect(request.body.model).toBe('claude-fake-model');
    expect(systemText(request.body)).toContain('-Always answer in haiku.\n"Really."');
    const tools = (request.body.tools ?? []).map((tool) => tool.name);
    expect(tools).toContain('Bash');
    expect(tools).not.toContain('Write');
    expect(tools).not.toContain('Edit');
    expect(cli.result).toMatchObject({ subtype: 'error_max_turns', is_error: true });
    expect(cli.exit.code).toBe(1);
  });

  it.each([
    ['starting with a dash', '--help -p --resume x'],
    ['that is only a double dash', '--'],
    ['naming a subcommand', 'doctor'],
    ['with quotes, newlines and unicode', `He said "hi" and 'bye'\nline two\t$(whoami) \`id\` \\n 🚀 Größe 日本語`],
  ])('delivers a prompt %s verbatim to the API', async (_name, prompt) => {
    fake.script([{ content: [{ type: 'text', text: 'ok' }] }]);

    const cli = await runClaudeCli(invocation({ prompt }), await sandbox());

    expect(cli.exit.code).toBe(0);
    expect(requestTexts(fake.conversationRequests[0].body)).toContain(prompt);
  });

  it('resumes a conversation: the second run sends the earlier turns and keeps the session id', async () => {
    fake.script([
      { content: [{ type: 'text', text: 'The secret word is marmalade.' }] },
      { content: [{ type: 'text', text: 'It was marmalade.' }] },
    ]);
    const place = await sandbox();
    const first = await runClaudeCli(invocation({ prompt: 'Remember a secret word.' }), place);
    const sessionId = first.result!.session_id as string;

    const second = await runClaudeCli(invocation({ prompt: 'What was the word?', resumeSessionId: sessionId }), place);

    expect(second.result).toMatchObject({ is_error: false, session_id: sessionId, result: 'It was marmalade.' });
    const texts = requestTexts(fake.conversationRequests[1].body);
    expect(texts).toEqual(expect.arrayContaining(['Remember a secret word.', 'The secret word is marmalade.', 'What was the word?']));
    expect(texts.indexOf('The secret word is marmalade.')).toBeLessThan(texts.indexOf('What was the word?'));
  });

  it('resumes from a new sandbox on the same volume: fresh HOME and temp dir, same CLAUDE_CONFIG_DIR', async () => {
    fake.script([
      { content: [{ type: 'tool_use', name: 'Write', input: { file_path: join(volume, 'state.txt'), content: 'v1' } }] },
      { content: [{ type: 'text', text: 'Saved v1.' }] },
      { content: [{ type: 'text', text: 'Continuing after v1.' }] },
    ]);
    const first = await runClaudeCli(invocation({ prompt: 'save state' }), await sandbox('old'));
    expect(await readdir(join(root, 'home-old'))).toEqual(['tmp']);
    await rm(join(root, 'home-old'), { recursive: true });

    const second = await runClaudeCli(invocation({ prompt: 'continue', resumeSessionId: first.result!.session_id as string }), await sandbox('new'));

    expect(second.result).toMatchObject({ is_error: false, session_id: first.result!.session_id, result: 'Continuing after v1.' });
    const resumed = fake.conversationRequests[2].body;
    expect(requestTexts(resumed)).toEqual(expect.arrayContaining(['save state', 'Saved v1.', 'continue']));
    expect(Object.keys(toolResults(resumed))).toHaveLength(1);
  });

  it('reports a resume of an unknown session as an error result', async () => {
    const cli = await runClaudeCli(invocation({ prompt: 'hi', resumeSessionId: '0b5e6f3c-1d2e-4f60-8a9b-0c1d2e3f4a5b' }), await sandbox());

    expect(cli.exit.code).toBe(1);
    expect(cli.result).toMatchObject({ subtype: 'error_during_execution', is_error: true });
    expect(cli.exit.stderr).toContain('No conversation found');
    expect(fake.requests).toHaveLength(0);
  });

  it('reports a failing API as an error result with exit code 1 once retries are exhausted', async () => {
    const overloaded = { error: { status: 500, type: 'api_error', message: 'scripted failure' } };
    fake.script([overloaded, overloaded]);
    const failing = invocation({ prompt: 'fail' });

    const cli = await runClaudeCli({ ...failing, env: { ...failing.env, CLAUDE_CODE_MAX_RETRIES: '1' } }, await sandbox());

    expect(cli.exit.code).toBe(1);
    expect(cli.events.map(shape)).toEqual(['system:init', 'system:api_retry', 'assistant:text', 'result:success']);
    expect(cli.result).toMatchObject({ is_error: true, api_error_status: 500, result: expect.stringContaining('scripted failure') });
  });

  it.each(['silent', 'mid-stream'] as const)('stays silent after init while the API stalls (%s), until it is killed', async (stall) => {
    fake.script([{ stall }]);
    const cli = new ClaudeCliProcess(invocation({ prompt: 'hang' }), await sandbox());

    try {
      await fake.waitForConversationRequests(1);
      await sleep(1500);
      expect(cli.events.map((event) => event.type)).toEqual(['system']);
    } finally {
      cli.kill();
    }
    expect(await cli.exited).toMatchObject({ signal: 'SIGKILL' });
  });
});

describe('fake Anthropic API', () => {
  let fake: FakeAnthropic;

  beforeAll(async () => (fake = await FakeAnthropic.start({ delayMs: 0 })));
  afterAll(() => fake.stop());

  it('answers side requests, count_tokens and other paths without consuming the script', async () => {
    fake.script([{ content: [{ type: 'text', text: 'scripted' }] }]);
    const post = (path: string, body: object) =>
      fetch(`${fake.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

    const title = await post('/v1/messages', { model: 'm', stream: true, messages: [{ role: 'user', content: 'name this' }] });
    const count = await post('/v1/messages/count_tokens', { model: 'm', messages: [{ role: 'user', content: 'abcdefgh' }] });
    const hello = await fetch(`${fake.url}/api/hello`, { method: 'HEAD' });

    expect(sseTexts(await title.text())).toBe('Fake side reply');
    expect(await count.json()).toEqual({ input_tokens: expect.any(Number) });
    expect(hello.status).toBe(200);
    expect(fake.unconsumedReplies).toBe(1);
    expect(fake.requests.map((request) => request.conversation)).toEqual([false]);
    expect(fake.otherRequests).toEqual([
      { method: 'POST', path: '/v1/messages/count_tokens' },
      { method: 'HEAD', path: '/api/hello' },
    ]);
  });
});

/** The concatenated text deltas of an Anthropic SSE body. */
function sseTexts(body: string): string {
  return body
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => JSON.parse(line.slice('data: '.length)) as { delta?: { text?: string } })
    .map((event) => event.delta?.text ?? '')
    .join('');
}
