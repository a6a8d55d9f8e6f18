import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { api } from './support/http';
import { startTestApp, TestApp } from './support/test-app';

// The network fields on the Modal engine, against the fake Modal control plane (../shared/fake-modal):
// what the SDK actually sends for each mode, and the 422 for allowed_domains before any Modal call.
const FAKE_SERVER = resolve(__dirname, '../../shared/fake-modal/server.mjs');

interface FakeCall {
  method: string;
  request: { definition?: { networkAccess?: { networkAccessType?: number; allowedCidrs?: string[]; allowedDomains?: string[] } } };
}

async function startFakeModal(): Promise<{ child: ChildProcess; port: number; adminPort: number }> {
  const child = spawn(process.execPath, [FAKE_SERVER], { env: { ...process.env, MODAL_SDK_NODE_MODULES: resolve(__dirname, '../node_modules') }, stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  await new Promise<void>((done, fail) => {
    child.once('exit', (code) => fail(new Error(`fake Modal exited with ${code}`)));
    child.stdout!.on('data', (chunk) => {
      text += chunk;
      if (/FAKE_MODAL_ADMIN_PORT=\d+/.test(text)) done();
    });
  });
  return { child, port: Number(/FAKE_MODAL_PORT=(\d+)/.exec(text)![1]), adminPort: Number(/FAKE_MODAL_ADMIN_PORT=(\d+)/.exec(text)![1]) };
}

describe('network policy on the Modal engine (fake control plane)', () => {
  let fake: Awaited<ReturnType<typeof startFakeModal>>;
  let app: TestApp;
  let user: ReturnType<typeof api>;

  beforeAll(async () => {
    fake = await startFakeModal();
    // The SDK reads its server address from the process environment, not from our configuration.
    process.env.MODAL_SERVER_URL = `http://127.0.0.1:${fake.port}`;
    app = await startTestApp({ env: { SANDBOX_PROVIDER: 'modal', MODAL_TOKEN_ID: 'ak-test', MODAL_TOKEN_SECRET: 'as-test' } });
    user = api(app.url, app.adminToken);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    fake?.child.kill();
    delete process.env.MODAL_SERVER_URL;
  });

  const calls = async (method: string): Promise<FakeCall[]> => {
    const all = (await (await fetch(`http://127.0.0.1:${fake.adminPort}/calls`)).json()) as FakeCall[];
    return all.filter((call) => call.method.toLowerCase().includes(method.toLowerCase()));
  };

  it('refuses allowed_domains with a 422 naming the field, before calling Modal', async () => {
    const before = (await calls('')).length;
    const response = await user.post('/api/sandboxes', { network: 'allowlist', cidr_allowlist: ['203.0.113.0/24'], allowed_domains: ['registry.npmjs.org'] });
    expect(response.status).toBe(422);
    expect(response.body.message).toMatch(/^allowed_domains: /);
    expect(response.body.details).toMatchObject({ field: 'allowed_domains' });
    expect((await calls('')).length).toBe(before);
    expect((await user.get('/api/sandboxes')).body.data).toEqual([]);
  });

  it.each<[string, Record<string, unknown>, { networkAccessType: number; allowedCidrs: string[] }]>([
    ['internet', {}, { networkAccessType: 1, allowedCidrs: [] }],
    ['none', { network: 'none' }, { networkAccessType: 2, allowedCidrs: [] }],
    ['allowlist', { network: 'allowlist', cidr_allowlist: ['203.0.113.0/24', '2001:db8::/32'] }, { networkAccessType: 3, allowedCidrs: ['203.0.113.0/24', '2001:db8::/32'] }],
  ])('sends network %s to Modal as the SDK encodes it', async (mode, body, expected) => {
    const before = (await calls('SandboxCreate')).length;
    const response = await user.post('/api/sandboxes', body);
    expect({ status: response.status, message: response.body.message }).toEqual({ status: 201, message: undefined });
    expect(response.body.data).toMatchObject({ network: mode });
    const created = (await calls('SandboxCreate')).slice(before);
    expect(created).toHaveLength(1);
    expect(created[0].request.definition?.networkAccess).toMatchObject({ ...expected, allowedDomains: [] });
    await user.delete(`/api/sandboxes/${response.body.data.sandbox_id}`);
  });
});
