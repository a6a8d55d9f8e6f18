import { describeOnEngines } from './support/engines';
import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { readSse } from './support/sse-client';
import { createMember, startTestApp, TestApp } from './support/test-app';

/** Idle means idle: a run (and anyone watching it) keeps its sandbox alive; the idle stop comes after, with a final snapshot. */
describeOnEngines('idle stop of a sandbox with a working agent (real app, sandbox and Claude CLI)', (engine) => {
  let fake: FakeAnthropic;
  let app: TestApp;
  let user: ReturnType<typeof api>;
  let token: string;

  beforeAll(async () => {
    // Each text delta 1 s apart: the run streams for ~25 s, longer than the idle timeout plus one sweep.
    fake = await FakeAnthropic.start({ delayMs: 1000, piecesPerBlock: 25 });
    app = await startTestApp({ env: { ...engine.env(), ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-idle-e2e' } });
    token = (await createMember(app)).token;
    user = api(app.url, token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
  });

  it('lets a 25 s run finish in a sandbox with a 10 s idle timeout, then stops the sandbox idle, after a final snapshot', async () => {
    const created = await user.post('/api/sandboxes', { idle_timeout_seconds: 10, volume_name: 'idle-e2e' });
    expect(created.status).toBe(201);
    const sandboxId = created.body.data.sandbox_id as string;
    fake.script([{ content: [{ type: 'text', text: 'slow '.repeat(25) }] }]);
    const started = await user.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Answer slowly' });
    expect(started.status).toBe(202);
    const runId = started.body.data.run_id as string;

    const { events } = await readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`, { token });
    const done = events.at(-1)!;
    expect(done.event).toBe('done');
    expect(JSON.parse(done.data)).toMatchObject({ status: 'succeeded' });
    expect((await user.get(`/api/sandboxes/${sandboxId}`)).body.data.status).toBe('running');

    const ended = await waitFor(async () => {
      const sandbox = (await user.get(`/api/sandboxes/${sandboxId}`)).body.data;
      return sandbox.status === 'terminated' ? sandbox : undefined;
    }, 45_000);
    const snapshots = await user.get(`/api/sandboxes/${sandboxId}/snapshots`);
    // One expectation, so that a failure shows both: how it ended, and whether the final snapshot was taken.
    expect({ ended, snapshots: { status: snapshots.status, final_snapshot_taken: snapshots.body.data?.length >= 1 } }).toMatchObject({
      ended: { status: 'terminated', exit_reason: 'idle_timeout' },
      snapshots: { status: 200, final_snapshot_taken: true },
    });
  }, 120_000);
});

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
