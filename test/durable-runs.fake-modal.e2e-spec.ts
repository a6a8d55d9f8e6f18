import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { freePort, serviceOutput, startService, waitForHealth } from './support/service-process';
import { readSse, type SseEvent, seqsOf, usesATool } from './support/sse-client';
import { login } from './support/test-app';

// The same durable run on the Modal engine, through the real modal@0.11.1 SDK against the fake Modal
// control plane (../shared/fake-modal): the agent runs detached in the Modal sandbox and is followed
// by execs, so a service killed mid-run and started again resumes it exactly as on the local engine.
const FAKE_SERVER = resolve(__dirname, '../../shared/fake-modal/server.mjs');
const CLAUDE_BIN = join(dirname(require.resolve('@anthropic-ai/claude-code/package.json')), 'bin', 'claude.exe');
const ADMIN = { email: 'durable-modal@example.test', password: 'durable-password-1' };

async function startFakeModal(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [FAKE_SERVER], {
    env: { ...process.env, MODAL_SDK_NODE_MODULES: resolve(__dirname, '../node_modules'), FAKE_MODAL_CLAUDE_BIN: CLAUDE_BIN },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let text = '';
  await new Promise<void>((done, fail) => {
    child.once('exit', (code) => fail(new Error(`fake Modal exited with ${code}`)));
    child.stdout!.on('data', (chunk) => {
      text += chunk;
      if (/FAKE_MODAL_ADMIN_PORT=\d+/.test(text)) done();
    });
  });
  return { child, port: Number(/FAKE_MODAL_PORT=(\d+)/.exec(text)![1]) };
}

describe('runs outlive the service on the Modal engine (fake control plane)', () => {
  let modal: Awaited<ReturnType<typeof startFakeModal>>;
  let fake: FakeAnthropic;
  let dataDir: string;
  let port: number;
  let service: ChildProcess | undefined;
  let url: string;
  let token: string;
  let admin: ReturnType<typeof api>;

  beforeAll(async () => {
    [modal, fake] = await Promise.all([startFakeModal(), FakeAnthropic.start({ delayMs: 5 })]);
    dataDir = mkdtempSync(join(tmpdir(), 'mss-durable-modal-'));
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    await start();
  });

  afterAll(async () => {
    if (service) {
      const listed = (await admin.get('/api/sandboxes?limit=100')).body.data;
      for (const sandbox of Array.isArray(listed) ? listed : (listed?.items ?? [])) {
        if (sandbox.status === 'running') await admin.delete(`/api/sandboxes/${sandbox.sandbox_id}?sync=false`);
      }
      service.kill('SIGTERM');
      await once(service, 'exit');
    }
    modal?.child.kill();
    await fake?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(): Promise<void> {
    service = startService({
      PORT: String(port),
      DATA_DIR: dataDir,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      LOGIN_RATE_LIMIT: '1000',
      SANDBOX_PROVIDER: 'modal',
      MODAL_SERVER_URL: `http://127.0.0.1:${modal.port}`,
      MODAL_TOKEN_ID: 'ak-test',
      MODAL_TOKEN_SECRET: 'as-test',
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_API_KEY: 'sk-durable-modal-test',
    });
    await waitForHealth(url, service);
    token = await login(url, ADMIN.email, ADMIN.password);
    admin = api(url, token);
  }

  const eventsUrl = (sandboxId: string, runId: string) => `${url}/api/sandboxes/${sandboxId}/runs/${runId}/events`;

  it('kill -9 during a streaming run: the Modal sandbox is re-attached and the run resumes with every event once', async () => {
    const created = await admin.post('/api/sandboxes', {});
    expect(created.status).toBe(201);
    const sandboxId = created.body.data.sandbox_id;
    fake.script([
      { content: [{ type: 'text', text: 'Writing it slowly.' }, { type: 'tool_use', name: 'Bash', input: { command: 'sleep 5 && echo survived > /mnt/workspace/durable.txt', description: 'slow write' } }] },
      { content: [{ type: 'text', text: 'Written on Modal, across a restart of the service.' }] },
    ]);
    const started = await admin.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Write durable.txt slowly', include_partial_messages: true });
    expect(started.status).toBe(202);
    const runId = started.body.data.run_id;

    const before = await readSse(eventsUrl(sandboxId, runId), { token, until: usesATool });
    expect(before.events.some(usesATool)).toBe(true);
    const exited = once(service!, 'exit');
    service!.kill('SIGKILL');
    await exited;
    await start();

    expect((await admin.get(`/api/sandboxes/${sandboxId}`)).body.data.status).toBe('running');
    const after = await readSse(eventsUrl(sandboxId, runId), { token, lastEventId: before.events[before.events.length - 1].id });
    const streamed = [...seqsOf(before.events), ...seqsOf(after.events)];
    expect(streamed).toEqual(streamed.map((_, index) => index + 1));
    expect(JSON.parse(after.events[after.events.length - 1].data)).toMatchObject({ status: 'succeeded', exit_code: 0 });
    const run = (await admin.get(`/api/sandboxes/${sandboxId}/runs/${runId}`)).body.data;
    expect({ run, output: run.status === 'succeeded' ? '' : serviceOutput(service!).slice(-3000) }).toMatchObject({ run: { status: 'succeeded', result: 'Written on Modal, across a restart of the service.' } });
    const file = await admin.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['cat', '/mnt/workspace/durable.txt'] });
    expect(file.body.data.stdout).toBe('survived\n');
  });
});
