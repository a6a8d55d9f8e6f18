import { ModelGatewayEndpoint } from '../src/integrations/sandbox/model-gateway-endpoint';
import { FakeAnthropic, toolResults } from './support/fake-anthropic';
import { api } from './support/http';
import { readSse, SseEvent } from './support/sse-client';
import { createMember, startTestApp, TestApp } from './support/test-app';

/** The operator's key: it must reach the model API and nothing in a sandbox. */
const OPERATOR_KEY = 'sk-ant-operator-e2e-4f1c9a7d2b6e8f03';
const WORKSPACE = '/mnt/workspace';
const ENV_DUMP = `${WORKSPACE}/env-dump.txt`;

describe('Model gateway: the operator key stays in the service (real app, sandbox and Claude CLI)', () => {
  let fake: FakeAnthropic;
  let app: TestApp;
  let token: string;
  let user: ReturnType<typeof api>;
  let gatewayPort: number;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ delayMs: 2 });
    app = await startTestApp({ env: { ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: OPERATOR_KEY, RUN_IDLE_TIMEOUT_SECONDS: '30' } });
    token = (await createMember(app)).token;
    user = api(app.url, token);
    gatewayPort = app.app.get(ModelGatewayEndpoint).port!;
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
  });

  const createSandbox = async (body: Record<string, unknown>) => {
    const response = await user.post('/api/sandboxes', body);
    expect(response.status).toBe(201);
    return response.body.data.sandbox_id as string;
  };
  const startRun = async (sandboxId: string, body: Record<string, unknown>) => {
    const response = await user.post(`/api/sandboxes/${sandboxId}/runs`, body);
    expect(response.status).toBe(202);
    return response.body.data.run_id as string;
  };
  const exec = async (sandboxId: string, script: string) => {
    const response = await user.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['sh', '-c', script], timeout_seconds: 30 });
    expect(response.status).toBe(200);
    return response.body.data as { exit_code: number; stdout: string; stderr: string };
  };
  const gatewayCall = (base: string, path: string, headers: Record<string, string>, body: unknown = {}) =>
    fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', ...headers }, body: JSON.stringify(body) });
  const lastDone = (events: SseEvent[]) => JSON.parse(events[events.length - 1].data);

  it('runs Claude with only a run token: no process or file in the sandbox holds the operator key, `env` does not show it, the token dies with the run', async () => {
    const sandboxId = await createSandbox({ volume_name: 'gateway' });
    fake.script([
      { content: [{ type: 'tool_use', name: 'Bash', input: { command: `env; env > ${ENV_DUMP}; sleep 8`, description: 'Show the environment' } }] },
      { content: [{ type: 'text', text: 'Environment shown.' }] },
    ]);
    const runId = await startRun(sandboxId, { prompt: 'Print your environment' });
    const following = readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`, { token });

    // While the agent's Bash tool sleeps, the Claude process and its shell are alive in the sandbox.
    await waitUntil(async () => (await exec(sandboxId, `test -s ${ENV_DUMP}`)).exit_code === 0);
    const environments = (await exec(sandboxId, `for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < "$f"; echo; done 2>/dev/null`)).stdout;
    expect(environments).not.toContain(OPERATOR_KEY);
    const runToken = /^ANTHROPIC_API_KEY=(mgw_[A-Za-z0-9_-]{43})$/m.exec(environments)?.[1];
    expect(runToken).toBeDefined();
    // The host's loopback as the sandbox's NAT shows it: the only host port its egress filter opens.
    expect(environments).toMatch(new RegExp(`^ANTHROPIC_BASE_URL=http://10\\.0\\.2\\.2:${gatewayPort}$`, 'm'));

    // The same token works through the app's /model-gateway mount while the run is active, and only there.
    const viaApp = await gatewayCall(app.url, '/model-gateway/v1/messages', { 'x-api-key': runToken! }, { model: 'claude-sonnet-4-5', max_tokens: 16, stream: true, messages: [{ role: 'user', content: 'side question' }] });
    expect(viaApp.status).toBe(200);
    expect(await viaApp.text()).toContain('event: message_stop');
    expect((await gatewayCall(app.url, '/model-gateway/v1/models', { 'x-api-key': runToken! })).status).toBe(404);

    const { events } = await following;
    expect(lastDone(events)).toMatchObject({ run_id: runId, status: 'succeeded' });

    const envOutput = Object.values(toolResults(fake.conversationRequests[fake.conversationRequests.length - 1].body)).join('\n');
    expect(envOutput).toContain(`ANTHROPIC_API_KEY=${runToken}`);
    const toolResultEvents = events.filter((event) => event.event === 'user' && event.data.includes('tool_result'));
    expect(toolResultEvents.map((event) => event.data).join('\n')).toContain('ANTHROPIC_API_KEY=mgw_');
    expect(JSON.stringify(events)).not.toContain(OPERATOR_KEY);

    const filesWithKey = await exec(sandboxId, `grep -rlF -e '${OPERATOR_KEY}' -e '${OPERATOR_KEY.slice(-20)}' ${WORKSPACE} /tmp /root /var/tmp 2>/dev/null; true`);
    expect(filesWithKey.stdout).toBe('');
    expect((await exec(sandboxId, `cat ${ENV_DUMP}`)).stdout).toContain('ANTHROPIC_API_KEY=mgw_');

    expect(fake.requests.length).toBeGreaterThanOrEqual(2);
    for (const request of fake.requests) {
      expect(request.headers['x-api-key']).toBe(OPERATOR_KEY);
      expect(JSON.stringify(request.headers)).not.toContain(runToken);
    }

    const afterRun = await gatewayCall(`http://127.0.0.1:${gatewayPort}`, '/v1/messages', { 'x-api-key': runToken! }, { model: 'claude-sonnet-4-5', max_tokens: 16, messages: [] });
    expect(afterRun.status).toBe(401);
    expect(await afterRun.json()).toEqual({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });

    const run = await user.get(`/api/sandboxes/${sandboxId}/runs/${runId}`);
    expect(run.body.data.model_usage).toMatchObject({ requests: expect.any(Number), input_tokens: expect.any(Number), output_tokens: expect.any(Number) });
    expect(run.body.data.model_usage.requests).toBeGreaterThanOrEqual(3);
    expect(run.body.data.model_usage.input_tokens).toBeGreaterThanOrEqual(3 * 120);
    expect(run.body.data.model_usage.output_tokens).toBeGreaterThan(0);

    const logs = app.logs.join('\n');
    expect(logs).not.toContain(OPERATOR_KEY);
    expect(logs).not.toContain(runToken);
    // The CLI needed no path beyond the gateway's allowlist (apart from the test's own probe above).
    const refused = app.logs.filter((line) => line.includes('model gateway path not served')).map((line) => JSON.parse(line).path);
    expect(refused).toEqual(['/v1/models']);
    expect(fake.otherRequests).toEqual([]);
  });

  it('serves only the gateway on its loopback port, and refuses requests without a valid run token', async () => {
    const loopback = `http://127.0.0.1:${gatewayPort}`;
    expect((await fetch(`${loopback}/api/health`)).status).toBe(404);
    expect((await fetch(`${loopback}/docs`)).status).toBe(404);
    expect((await gatewayCall(loopback, '/api/auth/login', {}, { email: app.adminEmail, password: app.adminPassword })).status).toBe(404);
    const noToken = await gatewayCall(loopback, '/v1/messages', {});
    expect({ status: noToken.status, body: await noToken.json() }).toEqual({ status: 401, body: { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } } });
    expect((await gatewayCall(app.url, '/model-gateway/v1/messages', { 'x-api-key': OPERATOR_KEY })).status).toBe(401);
    expect((await gatewayCall(loopback, '/v1/messages', { authorization: `Bearer ${app.adminToken}` })).status).toBe(401);
  });

  it('completes a run in a sandbox created with network "none": the gateway is the one thing it reaches', async () => {
    const sandboxId = await createSandbox({ volume_name: 'offline', network: 'none' });
    fake.script([{ content: [{ type: 'text', text: 'Offline but answered.' }] }]);
    const runId = await startRun(sandboxId, { prompt: 'Answer without network', timeout_seconds: 40 });

    const { events } = await readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`, { token });

    expect(lastDone(events)).toMatchObject({ status: 'succeeded' });
  });
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
