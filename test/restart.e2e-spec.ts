import { execFileSync } from 'node:child_process';
import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { readSse } from './support/sse-client';
import { startTestApp, TestApp } from './support/test-app';

describe('service restart', () => {
  let fake: FakeAnthropic;
  let app: TestApp;

  beforeAll(async () => {
    fake = await FakeAnthropic.start();
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
  });

  it('records running sandboxes as ended by the restart and active runs as interrupted, with replayable streams', async () => {
    const env = { ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-restart-test' };
    app = await startTestApp({ env });
    const admin = api(app.url, app.adminToken);
    const sandboxId = (await admin.post('/api/sandboxes', {})).body.data.sandbox_id;
    fake.script([{ stall: 'silent' }]);
    const runId = (await admin.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'This outlives the service' })).body.data.run_id;
    await fake.waitForConversationRequests(1);
    const sandboxProcesses = (await admin.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['sh', '-c', 'echo $$'] })).body.data;
    expect(sandboxProcesses.exit_code).toBe(0);

    await app.close();
    expect(processesMentioning(app.dataDir)).toEqual([]);
    app = await startTestApp({ env, reuse: { dataDir: app.dataDir } });
    const restarted = api(app.url, app.adminToken);

    const sandbox = await restarted.get(`/api/sandboxes/${sandboxId}`);
    expect(sandbox.body.data).toMatchObject({ status: 'terminated', exit_reason: 'service_restarted' });
    const run = await restarted.get(`/api/sandboxes/${sandboxId}/runs/${runId}`);
    expect(run.body.data.status).toBe('interrupted');
    const { events } = await readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`, { token: app.adminToken });
    expect(events[0].event).toBe('system');
    expect(events[events.length - 1].event).toBe('done');
    expect(JSON.parse(events[events.length - 1].data).status).toBe('interrupted');
    expect(events.filter((event) => event.event === 'done')).toHaveLength(1);
  });
});

/** Command lines of live processes that reference a path (sandbox processes name their data dir). */
function processesMentioning(path: string): string[] {
  return execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(path) && !line.includes('ps -eo'));
}
