import { api } from './support/http';
import { readSse } from './support/sse-client';
import { startTestApp, TestApp } from './support/test-app';

// The HTTP API on the real Modal engine. Runs only with MODAL_TOKEN_ID and MODAL_TOKEN_SECRET set;
// the Claude part also needs a real ANTHROPIC_API_KEY (the fake model on localhost is not reachable
// from Modal). Everything it creates is terminated at the end.
const modalEnv = process.env.MODAL_TOKEN_ID && process.env.MODAL_TOKEN_SECRET
  ? { MODAL_TOKEN_ID: process.env.MODAL_TOKEN_ID, MODAL_TOKEN_SECRET: process.env.MODAL_TOKEN_SECRET, ...(process.env.MODAL_ENVIRONMENT ? { MODAL_ENVIRONMENT: process.env.MODAL_ENVIRONMENT } : {}) }
  : undefined;

if (!modalEnv) {
  describe('Modal live API suite', () => {
    it('is skipped without Modal credentials', () => {
      console.log('Modal live API suite skipped: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (and ANTHROPIC_API_KEY for the Claude run)');
      expect(modalEnv).toBeUndefined();
    });
  });
} else {
  describe('Modal live API suite', () => {
    jest.setTimeout(20 * 60_000);
    let app: TestApp;
    let user: ReturnType<typeof api>;
    const created: string[] = [];

    beforeAll(async () => {
      const anthropic: Record<string, string> = process.env.ANTHROPIC_API_KEY ? { ANTHROPIC_API_KEY: process.env.ANTHROPIC_API_KEY } : {};
      app = await startTestApp({ env: { SANDBOX_PROVIDER: 'modal', ...modalEnv, ...anthropic } });
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

    (process.env.ANTHROPIC_API_KEY ? it : it.skip)('streams a real Claude run over SSE', async () => {
      const id = await create({});
      const run = await user.post(`/api/sandboxes/${id}/runs`, { prompt: 'Reply with the single word: ready', max_turns: 1 });
      expect(run.status).toBe(202);
      const { events } = await readSse(`${app.url}/api/sandboxes/${id}/runs/${run.body.data.run_id}/events`, { token: app.adminToken });
      expect(events[0].event).toBe('system');
      expect(JSON.parse(events[events.length - 1].data).status).toBe('succeeded');
    });
  });
}
