import { describeOnEngines } from './support/engines';
import { api, call } from './support/http';
import { createMember, startTestApp, TestApp } from './support/test-app';

// On Modal the files are reached through the running sandbox (the SDK's filesystem and execs in it).
describeOnEngines('workspace files API', (engine) => {
  let app: TestApp;
  let token: string;
  let user: ReturnType<typeof api>;
  let sandboxId: string;

  beforeAll(async () => {
    app = await startTestApp({ env: { ...engine.env(), FILE_UPLOAD_LIMIT_BYTES: '4096' } });
    token = (await createMember(app)).token;
    user = api(app.url, token);
    sandboxId = (await user.post('/api/sandboxes', { volume_name: 'files' })).body.data.sandbox_id;
  });
  afterAll(() => app?.close({ purge: true }));

  const put = (path: string, body: string | Buffer) =>
    call(app.url, 'PUT', `/api/sandboxes/${sandboxId}/files/content?path=${encodeURIComponent(path)}`, { token, rawBody: body, headers: { 'content-type': 'application/octet-stream' } });

  it('uploads a file (creating parents), lists it and downloads it with the right headers', async () => {
    const uploaded = await put('docs/guide/readme.md', '# Hello\n\nworkspace file ✓\n');
    expect(uploaded.status).toBe(200);
    expect(uploaded.body.data).toMatchObject({ name: 'readme.md', path: 'docs/guide/readme.md', type: 'file', size: Buffer.byteLength('# Hello\n\nworkspace file ✓\n') });

    const root = await user.get(`/api/sandboxes/${sandboxId}/files`);
    expect(root.body.data.map((entry: { name: string; type: string }) => [entry.name, entry.type])).toContainEqual(['docs', 'directory']);
    const nested = await user.get(`/api/sandboxes/${sandboxId}/files?path=docs/guide`);
    expect(nested.body.data[0]).toMatchObject({ name: 'readme.md', type: 'file', mode: expect.any(Number), modified_at: expect.any(String) });

    const download = await user.get(`/api/sandboxes/${sandboxId}/files/content?path=docs/guide/readme.md`);
    expect(download.status).toBe(200);
    expect(download.text).toBe('# Hello\n\nworkspace file ✓\n');
    expect(download.headers.get('content-type')).toContain('text/markdown');
    expect(download.headers.get('content-disposition')).toContain('attachment; filename="readme.md"');

    const seenInside = await user.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['cat', '/mnt/workspace/docs/guide/readme.md'] });
    expect(seenInside.body.data.stdout).toBe('# Hello\n\nworkspace file ✓\n');
  });

  it('stores a JSON upload byte for byte, whatever its content type', async () => {
    const json = '{"name": "config",  "spaces": true}\n';
    const uploaded = await call(app.url, 'PUT', `/api/sandboxes/${sandboxId}/files/content?path=config.json`, { token, rawBody: json, headers: { 'content-type': 'application/json' } });
    expect(uploaded.status).toBe(200);
    expect((await user.get(`/api/sandboxes/${sandboxId}/files/content?path=config.json`)).text).toBe(json);
  });

  it('refuses uploads beyond the configured limit with 413 and leaves no partial file', async () => {
    const tooBig = await put('big.bin', Buffer.alloc(5000, 1));
    expect(tooBig.status).toBe(413);
    expect((await user.get(`/api/sandboxes/${sandboxId}/files/content?path=big.bin`)).status).toBe(404);
  });

  it('confines paths to the volume: "..", absolute paths and symlinks leading outside are refused', async () => {
    await user.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['sh', '-c', 'ln -sfn /etc /mnt/workspace/etc-link && ln -sfn /etc/hostname /mnt/workspace/host-file'] });
    for (const path of ['../../etc/passwd', '/etc/passwd', 'docs/../../outside', 'etc-link/passwd', 'host-file']) {
      const download = await user.get(`/api/sandboxes/${sandboxId}/files/content?path=${encodeURIComponent(path)}`);
      expect({ path, status: [400, 404].includes(download.status) }).toEqual({ path, status: true });
      expect(download.text).not.toContain('root:');
    }
    expect([400, 404]).toContain((await user.get(`/api/sandboxes/${sandboxId}/files?path=etc-link`)).status);
    expect([400, 404]).toContain((await put('../escape.txt', 'x')).status);
    expect([400, 404]).toContain((await put('etc-link/evil', 'x')).status);
    expect((await user.get(`/api/sandboxes/${sandboxId}/files/content`)).status).toBe(400);
  });

  it('answers 404 for another account’s sandbox', async () => {
    const other = api(app.url, (await createMember(app)).token);
    expect((await other.get(`/api/sandboxes/${sandboxId}/files`)).status).toBe(404);
    expect((await other.get(`/api/sandboxes/${sandboxId}/files/content?path=docs/guide/readme.md`)).status).toBe(404);
    const otherToken = (await createMember(app)).token;
    expect((await call(app.url, 'PUT', `/api/sandboxes/${sandboxId}/files/content?path=x.txt`, { token: otherToken, rawBody: 'x', headers: { 'content-type': 'application/octet-stream' } })).status).toBe(404);
  });
});
