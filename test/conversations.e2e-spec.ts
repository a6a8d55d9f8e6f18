import { describeOnEngines } from './support/engines';
import { FakeAnthropic, requestTexts } from './support/fake-anthropic';
import { api } from './support/http';
import { readSse } from './support/sse-client';
import { createMember, startTestApp, TestApp } from './support/test-app';

const MEMORABLE = 'Remember this word for later: quokka.';
const REMEMBERED = 'Noted, the word is quokka.';

/**
 * Conversations follow the workspace: the real app, its sandboxes (each engine), the local snapshot store and
 * the real Claude Code CLI against the fake model, whose recorded requests show which earlier turns
 * the CLI sent, i.e. which conversation it resumed.
 */
describeOnEngines('conversations follow the workspace into snapshots and restored volumes', (engine) => {
  let fake: FakeAnthropic;
  let app: TestApp;
  let token: string;
  let user: ReturnType<typeof api>;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ delayMs: 5 });
    app = await startTestApp({ env: { ...engine.env(), ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-test-conversations', STORAGE_PROVIDER: 'local' } });
    token = (await createMember(app)).token;
    user = api(app.url, token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
  });

  let created: string[] = [];
  afterEach(async () => {
    for (const id of created) await user.delete(`/api/sandboxes/${id}?sync=false`);
    created = [];
  });

  const createSandbox = async (body: Record<string, unknown>) => {
    const response = await user.post('/api/sandboxes', body);
    expect({ status: response.status, message: response.body.message }).toEqual({ status: 201, message: undefined });
    created.push(response.body.data.sandbox_id);
    return response.body.data.sandbox_id as string;
  };
  /** Runs the prompt to its end; its run as stored and the model requests it made. */
  const run = async (sandboxId: string, prompt: string, reply: string, body: Record<string, unknown> = {}) => {
    fake.script([{ content: [{ type: 'text', text: reply }] }]);
    const before = fake.conversationRequests.length;
    const started = await user.post(`/api/sandboxes/${sandboxId}/runs`, { prompt, ...body });
    expect({ status: started.status, message: started.body.message }).toMatchObject({ status: 202 });
    const { events } = await readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${started.body.data.run_id}/events`, { token });
    expect(JSON.parse(events[events.length - 1].data)).toMatchObject({ status: 'succeeded' });
    const stored = (await user.get(`/api/sandboxes/${sandboxId}/runs/${started.body.data.run_id}`)).body.data;
    const sent = fake.conversationRequests.slice(before).map((request) => requestTexts(request.body).join('\n'));
    return { run: stored, sent: sent.join('\n') };
  };

  it('continues the snapshot’s conversation in a sandbox restored from it on a new volume, and not on a fresh one', async () => {
    const source = await createSandbox({ volume_name: 'conversation-source', s3_key_prefix: 'conversations/' });
    const first = await run(source, MEMORABLE, REMEMBERED);
    expect(first.run.options.resumed_session_id).toBeNull();
    const snapshot = await user.post(`/api/sandboxes/${source}/snapshots`);
    expect({ status: snapshot.status, errors: snapshot.body.data.errors }).toEqual({ status: 201, errors: [] });

    const restored = await createSandbox({ volume_name: 'conversation-restored', s3_key_prefix: 'conversations/', init_from_s3: true });
    const recall = await run(restored, 'Which word did I ask you to remember?', 'It was quokka.');

    expect(recall.run).toMatchObject({ session_id: first.run.session_id, options: { resume: true, resumed_session_id: first.run.session_id } });
    expect(recall.sent).toContain(MEMORABLE);
    expect(recall.sent).toContain(REMEMBERED);

    const fresh = await createSandbox({ volume_name: 'conversation-fresh' });
    const unrelated = await run(fresh, 'Which word did I ask you to remember?', 'You did not ask me anything yet.');
    expect(unrelated.run.options.resumed_session_id).toBeNull();
    expect(unrelated.run.session_id).not.toBe(first.run.session_id);
    expect(unrelated.sent).not.toContain(MEMORABLE);
  });

  it('starts a new conversation, instead of failing, when the volume no longer holds the last one', async () => {
    const sandbox = await createSandbox({ volume_name: 'conversation-wiped' });
    const first = await run(sandbox, MEMORABLE, REMEMBERED);
    const wiped = await user.post(`/api/sandboxes/${sandbox}/exec`, { command: ['rm', '-rf', '/mnt/workspace/.claude-state/projects'] });
    expect(wiped.body.data.exit_code).toBe(0);

    const next = await run(sandbox, 'Which word did I ask you to remember?', 'I do not know.');

    expect(next.run.options.resumed_session_id).toBeNull();
    expect(next.run.session_id).not.toBe(first.run.session_id);
    expect(next.sent).not.toContain(MEMORABLE);
  });
});
