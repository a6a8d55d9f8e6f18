import { CREATE_EXAMPLES } from '../src/modules/sandboxes/sandboxes.controller';
import { describeOnEngines, itOn } from './support/engines';
import { api, call } from './support/http';
import { TestPeerHost } from './support/network-peer';
import { createMember, startTestApp, TestApp } from './support/test-app';

const SECRET_VALUE = 'ghp_sandbox-secret-value-42';

// On the local engine the named secrets are the service's SECRETS_FILE; on Modal they exist only in
// the Modal workspace (the fake's FAKE_MODAL_SECRETS), and the service has no SECRETS_FILE.
describeOnEngines('sandbox API', (engine) => {
  let app: TestApp;
  let user: ReturnType<typeof api>;
  let other: ReturnType<typeof api>;

  beforeAll(async () => {
    app = await startTestApp({ env: { ...engine.env(), SANDBOX_MAX_TIMEOUT_SECONDS: '7200' } });
    user = api(app.url, (await createMember(app)).token);
    other = api(app.url, (await createMember(app)).token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
  });

  const create = async (body: Record<string, unknown> = {}) => {
    const response = await user.post('/api/sandboxes', body);
    expect({ status: response.status, body: response.body }).toMatchObject({ status: 201 });
    return response.body.data.sandbox_id as string;
  };
  const exec = (id: string, command: string[], extra: Record<string, unknown> = {}) => user.post(`/api/sandboxes/${id}/exec`, { command, ...extra });

  it('creates a sandbox, runs a command in it and terminates it', async () => {
    const created = await user.post('/api/sandboxes', {});
    expect(created.status).toBe(201);
    expect(created.body.data).toMatchObject({ status: 'running', provider: engine.name, volume_name: 'default', volume_mount_path: '/mnt/workspace', workdir: '/mnt/workspace', network: 'internet', cidr_allowlist: [], allowed_domains: [] });
    expect(created.body.data.limits).toMatchObject({ lifetime_seconds: expect.any(Number) });
    const id = created.body.data.sandbox_id;

    const result = await exec(id, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(result.body.data).toMatchObject({ exit_code: 3, stdout: 'out\n', stderr: 'err\n', truncated: false, timed_out: false });

    const listed = await user.get('/api/sandboxes?status=running');
    expect(listed.body.data.map((s: { sandbox_id: string }) => s.sandbox_id)).toContain(id);

    const deleted = await user.delete(`/api/sandboxes/${id}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body.data).toMatchObject({ status: 'terminated', exit_reason: 'terminated_by_user' });
    expect((await user.delete(`/api/sandboxes/${id}`)).body.data.status).toBe('terminated');
    expect((await exec(id, ['true'])).status).toBe(409);
  });

  it('gives an exec no stdin: a command reading it sees end-of-file at once', async () => {
    const id = await create();
    const started = Date.now();
    const result = await exec(id, ['sh', '-c', 'cat; echo "read $?"'], { timeout_seconds: 20 });
    expect(result.body.data).toMatchObject({ exit_code: 0, stdout: 'read 0\n', timed_out: false });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('shares a named volume between sandboxes of the account and honours env and workdir', async () => {
    const writer = await create({ volume_name: 'shared' });
    await exec(writer, ['sh', '-c', 'mkdir -p sub && echo persisted > sub/note.txt']);
    await user.delete(`/api/sandboxes/${writer}`);

    const reader = await create({ volume_name: 'shared', env: { GREETING: 'hello' }, workdir: '/mnt/workspace/sub' });
    const read = await exec(reader, ['sh', '-c', 'cat note.txt; echo "$GREETING"; pwd']);
    expect(read.body.data.stdout).toBe('persisted\nhello\n/mnt/workspace/sub\n');
    const override = await exec(reader, ['sh', '-c', 'echo "$GREETING"; pwd'], { env: { GREETING: 'per-exec' }, workdir: '/tmp' });
    expect(override.body.data.stdout).toBe('per-exec\n/tmp\n');
  });

  it('injects named secrets into the sandbox and never returns or logs their values', async () => {
    const created = await user.post('/api/sandboxes', { secrets: ['github'] });
    expect({ status: created.status, message: created.body.message }).toEqual({ status: 201, message: undefined });
    expect(created.body.data.secrets).toEqual(['github']);
    const id = created.body.data.sandbox_id;
    const inside = await exec(id, ['sh', '-c', 'printf %s "$GITHUB_TOKEN"']);
    expect(inside.body.data.stdout).toBe(SECRET_VALUE);
    const listed = await user.get('/api/sandboxes');
    const fetched = await user.get(`/api/sandboxes/${id}`);
    for (const text of [created.text, listed.text, fetched.text, app.logs.join('\n')]) expect(text.includes(SECRET_VALUE)).toBe(false);
  });

  it('gives network "none" nothing to reach while "open" (answered as "internet") reaches a host outside this machine', async () => {
    const peer = await TestPeerHost.start();
    const probe = ['bash', '-c', `exec 3<>/dev/tcp/${peer.address}/${peer.port} && cat <&3`];
    try {
      const open = await create({ network: 'open' });
      expect((await user.get(`/api/sandboxes/${open}`)).body.data.network).toBe('internet');
      expect((await exec(open, probe)).body.data).toMatchObject({ exit_code: 0, stdout: 'peer\n' });
      const closed = await create({ network: 'none' });
      const closedResult = await exec(closed, probe);
      expect(closedResult.body.data.exit_code).not.toBe(0);
      expect(closedResult.body.data.stdout).toBe('');
    } finally {
      await peer.stop();
    }
  });

  // The local engine builds images itself and really runs RUN steps. The fake Modal control plane
  // records RUN lines without executing them (its filesystem is the host's), so on Modal the test
  // checks what does hold there: ENV applied, each step sent to Modal as a layer of its own, a built
  // layer reused, a failing step (`RUN exit N` fails the fake's build) reported by step and exit code.
  it('runs Dockerfile steps, reports a failing step by name and caches the result', async () => {
    const stamp = `built-${Date.now()}`;
    const commands = ['ENV TOOL_HOME=/opt/tool', `RUN mkdir -p /opt/tool && echo ${stamp} > /opt/tool/version`];
    const since = engine.isModal ? await engine.fake.seq() : 0;
    const first = await create({ dockerfile_commands: commands });
    expect((await exec(first, ['sh', '-c', 'echo "$TOOL_HOME"'])).body.data.stdout).toBe('/opt/tool\n');
    if (engine.isModal) {
      const layers = (await engine.fake.calls('ImageGetOrCreate', since)).map((call) => call.request.image?.dockerfileCommands ?? []);
      expect(layers).toEqual(expect.arrayContaining([expect.arrayContaining([commands[0]]), expect.arrayContaining([commands[1]])]));
    } else {
      expect((await exec(first, ['sh', '-c', 'cat $TOOL_HOME/version'])).body.data.stdout).toBe(`${stamp}\n`);
    }

    const beforeSecond = engine.isModal ? await engine.fake.seq() : 0;
    const second = await create({ dockerfile_commands: commands });
    if (engine.isModal) {
      // Every layer is known to Modal already: nothing is built (joined) again.
      expect((await engine.fake.calls('ImageJoinStreaming', beforeSecond)).length).toBe(0);
      expect((await exec(second, ['sh', '-c', 'echo "$TOOL_HOME"'])).body.data.stdout).toBe('/opt/tool\n');
    } else {
      expect((await exec(second, ['cat', '/opt/tool/version'])).body.data.stdout).toBe(`${stamp}\n`);
    }

    const failingStep = engine.pick({ local: 'RUN echo broken-step-output && exit 7', modal: 'RUN exit 7' });
    const failing = await user.post('/api/sandboxes', { dockerfile_commands: ['RUN echo preparing', failingStep] });
    expect({ status: failing.status, message: failing.body.message }).toMatchObject({ status: 422, message: expect.stringContaining('step 2') });
    expect(failing.body.message).toContain('exit 7');
    expect(JSON.stringify(failing.body.details)).toContain(engine.pick({ local: 'broken-step-output', modal: 'non-zero code: 7' }));

    const unsupported = await user.post('/api/sandboxes', { dockerfile_commands: ['COPY . /app'] });
    expect(unsupported.status).toBe(400);
    expect(unsupported.body.message).toContain('COPY');
  });

  // A registry image: both engines pull it (registry-images.e2e-spec.ts pulls from a loopback registry).
  // Locally no test reaches the internet: a registry nothing listens on answers 503 naming image_base.
  it(`${engine.pick({ local: 'answers 503 naming image_base when the registry of image_base is unreachable', modal: 'builds the sandbox on a registry image_base' })}`, async () => {
    if (!engine.isModal) {
      const unreachable = await user.post('/api/sandboxes', { image_base: '127.0.0.1:1/none:latest' });
      expect({ status: unreachable.status, details: unreachable.body.details }).toEqual({ status: 503, details: { step: 'image', field: 'image_base', image: '127.0.0.1:1/none:latest' } });
      expect(unreachable.body.message).toMatch(/^image_base: the registry of 127\.0\.0\.1:1\/none:latest is unavailable: .*connection refused/);
      return;
    }
    const response = await user.post('/api/sandboxes', { image_base: 'alpine:3.21' });
    expect({ status: response.status, message: response.body.message }).toEqual({ status: 201, message: undefined });
    expect((await engine.fake.sandboxOf(response.body.data.sandbox_id)).image.registry).toBe('alpine:3.21');
    await user.delete(`/api/sandboxes/${response.body.data.sandbox_id}`);
  });

  it('hides sandboxes of other accounts behind 404 on every route', async () => {
    const id = await create();
    for (const response of [
      await other.get(`/api/sandboxes/${id}`),
      await other.delete(`/api/sandboxes/${id}`),
      await other.post(`/api/sandboxes/${id}/exec`, { command: ['true'] }),
      await other.get(`/api/sandboxes/${id}/runs`),
      await other.get(`/api/sandboxes/${id}/files`),
      await other.get(`/api/sandboxes/${id}/snapshots`),
    ]) {
      expect(response.status).toBe(404);
    }
    expect((await other.get('/api/sandboxes')).body.data.map((s: { sandbox_id: string }) => s.sandbox_id)).not.toContain(id);
    expect((await user.get(`/api/sandboxes/${id}`)).body.data.status).toBe('running');
  });

  it('ends a sandbox at its lifetime and GET says why', async () => {
    // Local: the service's timer; Modal: Modal's own sandbox timeout (the fake's), read back by poll().
    const id = await create({ timeout_seconds: 10 });
    await new Promise((resolve) => setTimeout(resolve, 11_500));
    const { body } = await user.get(`/api/sandboxes/${id}`);
    expect(body.data).toMatchObject({ status: 'terminated', exit_reason: 'timeout' });
  });

  // Only Modal ends a sandbox on its own for reasons the service did not ask for; on the local engine
  // the lifetime is the test above and the idle stop is the service's own (test/idle-stop.e2e-spec.ts).
  itOn(engine, ['modal'], 'the local engine has no control plane that ends sandboxes').each(['timeout', 'idle_timeout'] as const)('reports a sandbox Modal ended with status %s with that exit_reason', async (status) => {
    const id = await create();
    await engine.fake.finish((await engine.fake.sandboxOf(id)).id, status);
    const { body } = await user.get(`/api/sandboxes/${id}`);
    expect(body.data).toMatchObject({ status: 'terminated', exit_reason: status });
    expect((await exec(id, ['true'])).status).toBe(409);
  });

  it('paginates the list newest first with a cursor', async () => {
    const ids = [await create(), await create(), await create()];
    const first = await user.get('/api/sandboxes?limit=2');
    expect(first.body.data.map((s: { sandbox_id: string }) => s.sandbox_id)).toEqual([ids[2], ids[1]]);
    const second = await user.get(`/api/sandboxes?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.data[0].sandbox_id).toBe(ids[0]);
    expect((await user.get('/api/sandboxes?cursor=garbage')).status).toBe(400);
  });

  it.each<[string, string, Record<string, unknown>]>([
    ['a relative mount path', 'volume_mount_path', { volume_mount_path: 'relative/path' }],
    ['".." in the volume name', 'volume_name', { volume_name: '../escape' }],
    ['"/" in the volume name', 'volume_name', { volume_name: 'a/b' }],
    ['an oversized env', 'env', { env: { HUGE: 'x'.repeat(40_000) } }],
    ['an unknown network', 'network', { network: 'bridge' }],
    ['an unknown secret', 'secrets', { secrets: ['not-configured'] }],
    ['a lifetime over the cap', 'timeout_seconds', { timeout_seconds: 999_999 }],
    ['a traversing key prefix', 's3_key_prefix', { s3_key_prefix: '../other/' }],
    ['a bucket that is not allowed', 's3_bucket_name', { s3_bucket_name: 'someone-elses-bucket' }],
  ])('rejects %s with a 400 naming %s', async (_label, field, body) => {
    const response = await user.post('/api/sandboxes', body);
    expect(response.status).toBe(400);
    expect(JSON.stringify(response.body.message)).toContain(field);
  });

  // Modal has no domain allowlist (the adapter refuses allowed_domains, see below): there the CIDRs alone.
  it('rejects a secret that exists nowhere with a 400 naming it', async () => {
    const response = await user.post('/api/sandboxes', { secrets: ['github', 'not-configured'] });
    expect({ status: response.status, message: response.body.message }).toMatchObject({ status: 400, message: expect.stringContaining('not-configured') });
    expect(response.body.message).not.toContain('"github"');
  });

  it('shows the applied allowlist, normalized, on create, GET and list', async () => {
    const domains = engine.pick({ local: { allowed_domains: ['Registry.NPMJS.org.', '*.GitHub.com'] }, modal: {} });
    const body = { network: 'allowlist', cidr_allowlist: ['203.0.113.7', '2001:DB8::/32', '203.0.113.7/32'], ...domains };
    const applied = { network: 'allowlist', cidr_allowlist: ['203.0.113.7/32', '2001:db8::/32'], allowed_domains: engine.pick({ local: ['registry.npmjs.org', '*.github.com'], modal: [] }) };
    const created = await user.post('/api/sandboxes', body);
    expect({ status: created.status, message: created.body.message }).toEqual({ status: 201, message: undefined });
    expect(created.body.data).toMatchObject(applied);
    const id = created.body.data.sandbox_id;
    expect((await user.get(`/api/sandboxes/${id}`)).body.data).toMatchObject(applied);
    const listed = (await user.get('/api/sandboxes')).body.data.find((s: { sandbox_id: string }) => s.sandbox_id === id);
    expect(listed).toMatchObject(applied);
    await user.delete(`/api/sandboxes/${id}`);
  });

  itOn(engine, ['modal'], 'the local engine enforces domain allowlists (previous test)')('refuses allowed_domains with a 422 naming the field, before calling Modal', async () => {
    const before = await engine.fake.seq();
    const response = await user.post('/api/sandboxes', { network: 'allowlist', cidr_allowlist: ['203.0.113.0/24'], allowed_domains: ['registry.npmjs.org'] });
    expect(response.status).toBe(422);
    expect(response.body.message).toMatch(/^allowed_domains: /);
    expect(response.body.details).toMatchObject({ field: 'allowed_domains' });
    expect(await engine.fake.calls('', before)).toEqual([]);
  });

  itOn(engine, ['modal'], 'it reads the request the SDK sends to the Modal control plane').each<[string, Record<string, unknown>, { networkAccessType: number; allowedCidrs: string[] }]>([
    ['internet', {}, { networkAccessType: 1, allowedCidrs: [] }],
    ['none', { network: 'none' }, { networkAccessType: 2, allowedCidrs: [] }],
    ['allowlist', { network: 'allowlist', cidr_allowlist: ['203.0.113.0/24', '2001:db8::/32'] }, { networkAccessType: 3, allowedCidrs: ['203.0.113.0/24', '2001:db8::/32'] }],
  ])('sends network %s to Modal as the SDK encodes it', async (mode, body, expected) => {
    const before = await engine.fake.seq();
    const response = await user.post('/api/sandboxes', body);
    expect({ status: response.status, message: response.body.message }).toEqual({ status: 201, message: undefined });
    expect(response.body.data).toMatchObject({ network: mode });
    const created = await engine.fake.calls('SandboxCreate', before);
    expect(created).toHaveLength(1);
    expect(created[0].request.definition?.networkAccess).toMatchObject({ ...expected, allowedDomains: [] });
    await user.delete(`/api/sandboxes/${response.body.data.sandbox_id}`);
  });

  it.each(Object.entries(CREATE_EXAMPLES))('creates the Swagger example "%s" as shown', async (_name, example) => {
    const created = await user.post('/api/sandboxes', example.value);
    // The domain allowlist example says so itself: "local engine; Modal answers 422".
    if (engine.isModal && 'allowed_domains' in example.value) {
      expect({ status: created.status, details: created.body.details }).toMatchObject({ status: 422, details: { field: 'allowed_domains' } });
      return;
    }
    expect({ status: created.status, message: created.body.message }).toEqual({ status: 201, message: undefined });
    await user.delete(`/api/sandboxes/${created.body.data.sandbox_id}`);
  });

  it.each<[string, string, Record<string, unknown>]>([
    ['cidr_allowlist without network "allowlist"', 'cidr_allowlist', { cidr_allowlist: ['203.0.113.0/24'] }],
    ['allowed_domains with network "internet"', 'allowed_domains', { network: 'internet', allowed_domains: ['example.com'] }],
    ['allowed_domains with the deprecated "open"', 'allowed_domains', { network: 'open', allowed_domains: ['example.com'] }],
    ['a CIDR with host bits set', 'cidr_allowlist[0]', { network: 'allowlist', cidr_allowlist: ['10.1.2.3/8'] }],
    ['a CIDR inside a blocked range', 'cidr_allowlist[1]', { network: 'allowlist', cidr_allowlist: ['203.0.113.0/24', '169.254.169.254'] }],
    ['a prefix too long', 'cidr_allowlist[0]', { network: 'allowlist', cidr_allowlist: ['2001:db8::/129'] }],
    ['a CIDR that is not a string', 'cidr_allowlist', { network: 'allowlist', cidr_allowlist: [24] }],
    ['cidr_allowlist that is not an array', 'cidr_allowlist', { network: 'allowlist', cidr_allowlist: '203.0.113.0/24' }],
    ['65 CIDRs', 'cidr_allowlist', { network: 'allowlist', cidr_allowlist: Array.from({ length: 65 }, (_, i) => `203.0.113.${i}`) }],
    ['a domain with a port', 'allowed_domains[0]', { network: 'allowlist', allowed_domains: ['example.com:443'] }],
    ['an IP address as a domain', 'allowed_domains[1]', { network: 'allowlist', allowed_domains: ['example.com', '203.0.113.7'] }],
    ['a URL as a domain', 'allowed_domains[0]', { network: 'allowlist', allowed_domains: ['https://example.com/'] }],
    ['a wildcard in the middle', 'allowed_domains[0]', { network: 'allowlist', allowed_domains: ['a.*.example.com'] }],
    ['a domain over 253 characters', 'allowed_domains[0]', { network: 'allowlist', allowed_domains: [`${'a'.repeat(62)}.`.repeat(4) + 'com'] }],
    ['65 domains', 'allowed_domains', { network: 'allowlist', allowed_domains: Array.from({ length: 65 }, (_, i) => `h${i}.example.com`) }],
    ['the old network name "bridge"', 'network', { network: 'bridge' }],
  ])('rejects %s with a 400 naming %s', async (_label, field, body) => {
    const response = await user.post('/api/sandboxes', body);
    expect({ status: response.status, message: response.body.message }).toMatchObject({ status: 400 });
    expect(JSON.stringify(response.body.message)).toContain(field);
  });

  it('rejects a non-array command with a 400 naming it', async () => {
    const id = await create();
    const response = await call(app.url, 'POST', `/api/sandboxes/${id}/exec`, { token: undefined, body: { command: 'rm -rf /' } });
    expect(response.status).toBe(401);
    const named = await user.post(`/api/sandboxes/${id}/exec`, { command: 'rm -rf /' });
    expect(named.status).toBe(400);
    expect(JSON.stringify(named.body.message)).toContain('command');
  });
}, { secrets: { github: { GITHUB_TOKEN: SECRET_VALUE } } });
