import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CREATE_EXAMPLES } from '../src/modules/sandboxes/sandboxes.controller';
import { api, call } from './support/http';
import { TestPeerHost } from './support/network-peer';
import { createMember, startTestApp, TestApp } from './support/test-app';

describe('sandbox API on the local bubblewrap provider', () => {
  let app: TestApp;
  let user: ReturnType<typeof api>;
  let other: ReturnType<typeof api>;

  const secretsDir = mkdtempSync(join(tmpdir(), 'mss-secrets-'));
  const SECRET_VALUE = 'ghp_sandbox-secret-value-42';

  beforeAll(async () => {
    const secretsFile = join(secretsDir, 'secrets.json');
    writeFileSync(secretsFile, JSON.stringify({ github: { GITHUB_TOKEN: SECRET_VALUE } }));
    app = await startTestApp({ env: { SANDBOX_MAX_TIMEOUT_SECONDS: '7200', SECRETS_FILE: secretsFile } });
    user = api(app.url, (await createMember(app)).token);
    other = api(app.url, (await createMember(app)).token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    rmSync(secretsDir, { recursive: true, force: true });
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
    expect(created.body.data).toMatchObject({ status: 'running', provider: 'local', volume_name: 'default', volume_mount_path: '/mnt/workspace', workdir: '/mnt/workspace', network: 'internet', cidr_allowlist: [], allowed_domains: [] });
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

  it('runs Dockerfile RUN steps, reports a failing step by name and caches the result', async () => {
    const commands = ['ENV TOOL_HOME=/opt/tool', `RUN mkdir -p /opt/tool && echo built-${Date.now()} > /opt/tool/version`];
    const first = await create({ dockerfile_commands: commands });
    const built = await exec(first, ['sh', '-c', 'cat $TOOL_HOME/version']);
    expect(built.body.data.stdout).toMatch(/^built-\d+\n$/);

    const second = await create({ dockerfile_commands: commands });
    const cached = await exec(second, ['cat', '/opt/tool/version']);
    expect(cached.body.data.stdout).toBe(built.body.data.stdout);

    const failing = await user.post('/api/sandboxes', { dockerfile_commands: ['RUN echo preparing', 'RUN echo broken-step-output && exit 7'] });
    expect(failing.status).toBe(422);
    expect(failing.body.message).toContain('step 2');
    expect(failing.body.message).toContain('exit 7');
    expect(JSON.stringify(failing.body.details)).toContain('broken-step-output');

    const unsupported = await user.post('/api/sandboxes', { dockerfile_commands: ['COPY . /app'] });
    expect(unsupported.status).toBe(400);
    expect(unsupported.body.message).toContain('COPY');
    expect((await user.post('/api/sandboxes', { image_base: 'alpine:3.21' })).status).toBe(422);
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
    const id = await create({ timeout_seconds: 10 });
    await new Promise((resolve) => setTimeout(resolve, 11_500));
    const { body } = await user.get(`/api/sandboxes/${id}`);
    expect(body.data).toMatchObject({ status: 'terminated', exit_reason: 'timeout' });
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

  it('shows the applied allowlist, normalized, on create, GET and list', async () => {
    const body = { network: 'allowlist', cidr_allowlist: ['203.0.113.7', '2001:DB8::/32', '203.0.113.7/32'], allowed_domains: ['Registry.NPMJS.org.', '*.GitHub.com'] };
    const applied = { network: 'allowlist', cidr_allowlist: ['203.0.113.7/32', '2001:db8::/32'], allowed_domains: ['registry.npmjs.org', '*.github.com'] };
    const created = await user.post('/api/sandboxes', body);
    expect({ status: created.status, message: created.body.message }).toEqual({ status: 201, message: undefined });
    expect(created.body.data).toMatchObject(applied);
    const id = created.body.data.sandbox_id;
    expect((await user.get(`/api/sandboxes/${id}`)).body.data).toMatchObject(applied);
    const listed = (await user.get('/api/sandboxes')).body.data.find((s: { sandbox_id: string }) => s.sandbox_id === id);
    expect(listed).toMatchObject(applied);
  });

  it.each(Object.entries(CREATE_EXAMPLES))('creates the Swagger example "%s" as shown', async (_name, example) => {
    const created = await user.post('/api/sandboxes', example.value);
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
});
