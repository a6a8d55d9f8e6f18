import { describeOnEngines, type Engine } from './engines';
import { FakeAnthropic, requestTexts } from './fake-anthropic';
import { api } from './http';
import { readSse, type SseEvent } from './sse-client';
import { createMember, DatabaseKind, startTestApp, TestApp } from './test-app';

const API_KEY = 'sk-ant-test-secret-value-123';
/** What the CLI prints when its stdin stays open: it waited 3 s for piped input that never came. */
const OPEN_STDIN_WARNING = 'no stdin data received';

/**
 * The runs suite, on one database kind and the given engines (test/runs.*.e2e-spec.ts: pglite on
 * the local engine and, in runs.modal, on Modal; postgres on the local engine).
 */
export function describeRuns(database: DatabaseKind, engines: readonly Engine[]): void {
describeOnEngines(`Claude Code runs streamed over SSE (${database})`, (engine) => {
  let fake: FakeAnthropic;
  let app: TestApp;
  let token: string;
  let user: ReturnType<typeof api>;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ delayMs: 5 });
    app = await startTestApp({ database, env: { ...engine.env(), ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: API_KEY, RUN_IDLE_TIMEOUT_SECONDS: '8', SSE_HEARTBEAT_SECONDS: '1' } });
    token = (await createMember(app)).token;
    user = api(app.url, token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
  });

  let created: string[] = [];
  afterEach(async () => {
    for (const id of created) await user.delete(`/api/sandboxes/${id}`);
    created = [];
  });
  let volumes = 0;
  /** A sandbox on a volume of its own unless named: no test continues another test's conversation. */
  const createSandbox = async (body: Record<string, unknown> = {}) => {
    const response = await user.post('/api/sandboxes', { volume_name: `volume-${++volumes}`, ...body });
    expect(response.status).toBe(201);
    created.push(response.body.data.sandbox_id);
    if (engine.isModal) await untilExecWorks(response.body.data.sandbox_id);
    return response.body.data.sandbox_id as string;
  };
  /**
   * The fake Modal control plane answers a create before its sandbox's mounts are all in place: an
   * exec joining it at once may find no /usr/bin/env (exit 127). Real Modal runs execs only in a
   * running sandbox; this waits out the fake's start-up, it does not retry the service's own calls.
   */
  const untilExecWorks = async (sandboxId: string) => {
    for (let attempt = 0; attempt < 50; attempt++) {
      if ((await user.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['true'] })).body?.data?.exit_code === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const startRun = async (sandboxId: string, body: Record<string, unknown>) => {
    const response = await user.post(`/api/sandboxes/${sandboxId}/runs`, body);
    expect({ status: response.status, body: response.body }).toMatchObject({ status: 202, body: { data: { status: expect.stringMatching(/^(queued|running)$/) } } });
    return response.body.data.run_id as string;
  };
  /** Every event any test read, for the checks that hold for all of them. */
  const seen: SseEvent[] = [];
  const follow = async (sandboxId: string, runId: string, options: { lastEventId?: string; stopAfter?: number } = {}) => {
    const stream = await readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`, { token, ...options });
    seen.push(...stream.events);
    return stream;
  };

  /** Runs the prompt that writes hello.txt in a new sandbox on the volume; its events and session. */
  const writeHelloFile = async (volumeName: string) => {
    const sandboxId = await createSandbox({ volume_name: volumeName });
    fake.script([
      { content: [{ type: 'text', text: 'I will write the file.' }, { type: 'tool_use', name: 'Write', input: { file_path: '/mnt/workspace/hello.txt', content: 'hi from claude\n' } }] },
      { content: [{ type: 'text', text: 'The file is written.' }] },
    ]);
    const runId = await startRun(sandboxId, { prompt: 'Please create hello.txt', include_partial_messages: true });
    const { events } = await follow(sandboxId, runId);
    const done = JSON.parse(events[events.length - 1].data);
    return { sandboxId, runId, events, done, sessionId: done.session_id as string };
  };

  it('runs a prompt whose scripted reply writes a file, streaming every step and ending with done', async () => {
    const { sandboxId, runId, events, done } = await writeHelloFile('first-run');

    const types = events.map((event) => event.event);
    expect(types[0]).toBe('system');
    // The CLI's stdin is closed at start: it never waits for piped input.
    expect(events.filter((event) => event.data.includes(OPEN_STDIN_WARNING))).toEqual([]);
    expect(types).toEqual(expect.arrayContaining(['assistant', 'user', 'stream_event', 'result']));
    expect(types[types.length - 1]).toBe('done');
    expect(events.map((event) => Number(event.id))).toEqual(events.map((_, index) => index + 1));
    expect(done).toMatchObject({ run_id: runId, status: 'succeeded', exit_code: 0, session_id: expect.any(String) });
    expect(done.total_cost_usd).toBeGreaterThan(0);
    const firstSessionId = done.session_id;
    const toolUse = events.filter((event) => event.event === 'assistant').flatMap((event) => JSON.parse(event.data).message.content).find((block: { type: string }) => block.type === 'tool_use');
    expect(toolUse).toMatchObject({ name: 'Write', input: { file_path: '/mnt/workspace/hello.txt' } });

    const file = await user.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['cat', '/mnt/workspace/hello.txt'] });
    expect(file.body.data.stdout).toBe('hi from claude\n');

    const run = await user.get(`/api/sandboxes/${sandboxId}/runs/${runId}`);
    expect(run.body.data).toMatchObject({ status: 'succeeded', session_id: firstSessionId, result: 'The file is written.', num_turns: expect.any(Number) });
    expect(run.body.data.usage.output_tokens).toBeGreaterThan(0);

    const replay = await follow(sandboxId, runId);
    expect(replay.events).toEqual(events);
  });

  it('continues the conversation in the next run, and in a new sandbox on the same volume', async () => {
    const { sandboxId, sessionId: firstSessionId } = await writeHelloFile('conversation');
    fake.script([{ content: [{ type: 'text', text: 'Second answer.' }] }]);
    const before = fake.conversationRequests.length;
    const second = await startRun(sandboxId, { prompt: 'What did you write?' });
    const { events } = await follow(sandboxId, second);
    expect(JSON.parse(events[events.length - 1].data)).toMatchObject({ status: 'succeeded', session_id: firstSessionId });
    const sent = requestTexts(fake.conversationRequests[before].body).join('\n');
    expect(sent).toContain('Please create hello.txt');
    expect(sent).toContain('What did you write?');

    await user.delete(`/api/sandboxes/${sandboxId}`);
    const replacement = await createSandbox({ volume_name: 'conversation' });
    fake.script([{ content: [{ type: 'text', text: 'Still here.' }] }]);
    const third = await startRun(replacement, { prompt: 'Do you remember?' });
    const resumed = await follow(replacement, third);
    expect(JSON.parse(resumed.events[resumed.events.length - 1].data)).toMatchObject({ status: 'succeeded', session_id: firstSessionId });
    const history = requestTexts(fake.conversationRequests[fake.conversationRequests.length - 1].body).join('\n');
    expect(history).toContain('Please create hello.txt');
    expect(history).toContain('What did you write?');

    fake.script([{ content: [{ type: 'text', text: 'New conversation.' }] }]);
    const fresh = await startRun(replacement, { prompt: 'Start over', resume: false });
    const freshEvents = await follow(replacement, fresh);
    expect(JSON.parse(freshEvents.events[freshEvents.events.length - 1].data).session_id).not.toBe(firstSessionId);
  });

  it('replays from Last-Event-ID in the middle of a live run with no gap and no duplicate', async () => {
    const sandboxId = await createSandbox();
    fake.script([{ content: [{ type: 'text', text: 'one two three four five six seven eight nine ten eleven twelve' }], delayMs: 150 }]);
    const runId = await startRun(sandboxId, { prompt: 'Count slowly', include_partial_messages: true });
    const first = await follow(sandboxId, runId, { stopAfter: 4 });
    expect(first.events).toHaveLength(4);
    const rest = await follow(sandboxId, runId, { lastEventId: first.events[3].id });
    const combined = [...first.events, ...rest.events];
    expect(combined.map((event) => Number(event.id))).toEqual(combined.map((_, index) => index + 1));
    expect(combined[combined.length - 1].event).toBe('done');
    const complete = await follow(sandboxId, runId);
    expect(combined).toEqual(complete.events);
    const afterQuery = await readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events?after=${complete.events.length - 2}`, { token });
    expect(afterQuery.events.map((event) => event.event)).toEqual([complete.events[complete.events.length - 2].event, 'done']);
  });

  it('gives every one of several concurrent subscribers every event', async () => {
    const sandboxId = await createSandbox();
    fake.script([{ content: [{ type: 'text', text: 'broadcast to everyone listening' }], delayMs: 40 }]);
    const runId = await startRun(sandboxId, { prompt: 'Broadcast', include_partial_messages: true });
    const streams = await Promise.all(Array.from({ length: 5 }, () => follow(sandboxId, runId)));
    for (const stream of streams) expect(stream.events).toEqual(streams[0].events);
    expect(streams[0].events[streams[0].events.length - 1].event).toBe('done');
  });

  it('refuses a second active run with 409 and cancels a run on request', async () => {
    const sandboxId = await createSandbox();
    fake.script([{ stall: 'silent' }]);
    const before = fake.conversationRequests.length;
    const runId = await startRun(sandboxId, { prompt: 'This will hang' });
    const conflict = await user.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Another one' });
    expect(conflict.status).toBe(409);
    await fake.waitForConversationRequests(before + 1);
    const cancelled = await user.post(`/api/sandboxes/${sandboxId}/runs/${runId}/cancel`);
    expect(cancelled.body.data.status).toBe('cancelled');
    const { events } = await follow(sandboxId, runId);
    expect(JSON.parse(events[events.length - 1].data).status).toBe('cancelled');
  });

  it('refuses a run in a sandbox that is not running with 409', async () => {
    const sandboxId = await createSandbox();
    await user.delete(`/api/sandboxes/${sandboxId}`);
    const refused = await user.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Too late' });
    expect({ status: refused.status, message: refused.body.message }).toEqual({ status: 409, message: 'The sandbox is terminated, not running' });
  });

  it('kills a run that stops producing output (watchdog) and marks it timed_out', async () => {
    const sandboxId = await createSandbox();
    fake.script([{ stall: 'mid-stream' }]);
    const runId = await startRun(sandboxId, { prompt: 'Stall please' });
    const { events } = await follow(sandboxId, runId);
    expect(JSON.parse(events[events.length - 1].data).status).toBe('timed_out');
    expect(events.some((event) => event.event === 'error')).toBe(true);
  });

  it('speaks the seed wire format on POST …/claude and records it as a run', async () => {
    const sandboxId = await createSandbox();
    fake.script([{ content: [{ type: 'text', text: 'Seed compatible.' }] }]);
    const { raw, contentType } = await readSse(`${app.url}/api/sandboxes/${sandboxId}/claude`, { token, method: 'POST', body: { prompt: 'Seed endpoint' } });
    expect(contentType).toContain('text/event-stream');
    const messages = raw.split('\n\n').filter(Boolean);
    expect(messages[messages.length - 1]).toBe('data: [DONE]');
    const lines = messages.slice(0, -1).map((message) => {
      expect(message.startsWith('data: ')).toBe(true);
      expect(message).not.toContain('\nid:');
      return JSON.parse(message.slice('data: '.length));
    });
    expect(lines[0].type).toBe('system');
    expect(lines[lines.length - 1]).toMatchObject({ type: 'result', result: 'Seed compatible.' });
    const history = await user.get(`/api/sandboxes/${sandboxId}/runs`);
    expect(history.body.data[0]).toMatchObject({ prompt: 'Seed endpoint', status: 'succeeded' });
  });

  it('hides runs from other accounts and validates prompts', async () => {
    const sandboxId = await createSandbox();
    fake.script([{ content: [{ type: 'text', text: 'Something to hide.' }] }]);
    await follow(sandboxId, await startRun(sandboxId, { prompt: 'A private run' }));
    const other = api(app.url, (await createMember(app)).token);
    const { body } = await user.get(`/api/sandboxes/${sandboxId}/runs`);
    const runId = body.data[0].run_id;
    expect((await other.get(`/api/sandboxes/${sandboxId}/runs`)).status).toBe(404);
    expect((await other.get(`/api/sandboxes/${sandboxId}/runs/${runId}`)).status).toBe(404);
    expect((await other.post(`/api/sandboxes/${sandboxId}/runs/${runId}/cancel`)).status).toBe(404);
    expect((await other.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Not yours' })).status).toBe(404);
    expect((await other.post(`/api/sandboxes/${sandboxId}/claude`, { prompt: 'Not yours' })).status).toBe(404);
    expect((await other.get(`/api/sandboxes/${sandboxId}/runs/${runId}/events`)).status).toBe(404);
    expect((await user.get(`/api/sandboxes/${sandboxId}/runs/not-a-run/events`)).status).toBe(404);
    const badResume = await user.get(`/api/sandboxes/${sandboxId}/runs/${runId}/events`, { 'last-event-id': 'yesterday' });
    expect({ status: badResume.status, message: badResume.body.message }).toEqual({ status: 400, message: 'Last-Event-ID / after must be an event sequence number' });
    expect((await user.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: '' })).status).toBe(400);
    expect((await user.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'x'.repeat(100_001) })).status).toBe(400);
  });

  it('never shows the model API key in a response or a log line', () => {
    expect(app.logs.join('\n')).not.toContain(API_KEY);
  });

  it(`never has a run wait for stdin ("${OPEN_STDIN_WARNING}" in no event of any run above)`, () => {
    expect(seen.length).toBeGreaterThan(50);
    expect(seen.filter((event) => event.data.includes(OPEN_STDIN_WARNING))).toEqual([]);
  });
}, { engines });

}

export function describeRunsWithoutCredentials(): void {
describe('runs without model credentials', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app?.close({ purge: true }));

  it('answers 503 naming the variables to set', async () => {
    const user = api(app.url, app.adminToken);
    const sandbox = await user.post('/api/sandboxes', {});
    const response = await user.post(`/api/sandboxes/${sandbox.body.data.sandbox_id}/runs`, { prompt: 'hello' });
    expect(response.status).toBe(503);
    expect(response.body.message).toContain('ANTHROPIC_API_KEY');
  });
});
}
