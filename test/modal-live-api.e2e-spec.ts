import { api } from './support/http';
import { liveSuiteName, modalLiveEnvironment } from './support/modal-live';
import { readSse } from './support/sse-client';
import { startTestApp, TestApp } from './support/test-app';

// The HTTP API on the real Modal engine. Runs only with MODAL_TOKEN_ID and MODAL_TOKEN_SECRET set,
// and never against a MODAL_SERVER_URL that is not Modal's (see test/support/modal-live.ts);
// otherwise the suite is reported as skipped, with the reason in its name. The Claude part also
// needs a real ANTHROPIC_API_KEY (the fake model on localhost is not reachable from Modal) and is
// skipped, with that reason, without one. Everything it creates is terminated at the end.
const live = modalLiveEnvironment();
const claudeRun = process.env.ANTHROPIC_API_KEY ? it : it.skip;

(live.env ? describe : describe.skip)(liveSuiteName('Modal live API suite', live), () => {
  jest.setTimeout(20 * 60_000);
  let app: TestApp;
  let user: ReturnType<typeof api>;
  const created: string[] = [];

  beforeAll(async () => {
    const anthropic: Record<string, string> = process.env.ANTHROPIC_API_KEY ? { ANTHROPIC_API_KEY: process.env.ANTHROPIC_API_KEY } : {};
    app = await startTestApp({ env: { SANDBOX_PROVIDER: 'modal', ...live.env, ...anthropic } });
    user = api(app.url, app.adminToken);
  });
  afterAll(async () => {
    for (const id of created) await user.delete(`/api/sandboxes/${id}?sync=false`).catch(() => undefined);
    await app?.close({ purge: true });
  });

  const create = async (body: Record<string, unknown>) => {
    const response = await user.post('/api/sandboxes', body);
    expect({ status: response.status, message: response.body.message }).toEqual({ status: 201, message: undefined });
    created.push(response.body.data.sandbox_id);
    return response.body.data.sandbox_id as string;
  };

  it('snapshots a workspace from one Modal sandbox and restores it into another', async () => {
    const volume = `live-api-${Date.now()}`;
    const source = await create({ volume_name: volume, s3_key_prefix: 'modal-live/' });
    await user.post(`/api/sandboxes/${source}/exec`, { command: ['sh', '-c', 'mkdir -p sub && echo from-modal > sub/file.txt && chmod 640 sub/file.txt'] });
    const snapshot = await user.post(`/api/sandboxes/${source}/snapshots`);
    expect(snapshot.body.data).toMatchObject({ files: 1, errors: [] });

    const restored = await create({ volume_name: `${volume}-restored`, s3_key_prefix: 'modal-live/', init_from_s3: true });
    const check = await user.post(`/api/sandboxes/${restored}/exec`, { command: ['sh', '-c', 'cat sub/file.txt && stat -c %a sub/file.txt'] });
    expect(check.body.data.stdout).toBe('from-modal\n640\n');
  });

  claudeRun(`streams a real Claude run over SSE${process.env.ANTHROPIC_API_KEY ? '' : ' (skipped: set ANTHROPIC_API_KEY, a real key)'}`, async () => {
    const id = await create({});
    const run = await user.post(`/api/sandboxes/${id}/runs`, { prompt: 'Reply with the single word: ready', max_turns: 1 });
    expect(run.status).toBe(202);
    const { events } = await readSse(`${app.url}/api/sandboxes/${id}/runs/${run.body.data.run_id}/events`, { token: app.adminToken });
    expect(events[0].event).toBe('system');
    expect(JSON.parse(events[events.length - 1].data).status).toBe('succeeded');
  });
});
