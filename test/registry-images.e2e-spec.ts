import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { api } from './support/http';
import { FakeAnthropic } from './support/fake-anthropic';
import { OciRegistry, type PushedImage, TestImages } from './support/oci-registry';
import { readSse } from './support/sse-client';
import { createMember, startTestApp, type TestApp } from './support/test-app';

/**
 * Registry images on the local engine, against real registries on 127.0.0.1 (Debian's
 * docker-registry; one of them with htpasswd auth) holding busybox images built here with umoci:
 * nothing leaves the machine.
 */
describe('registry images on the local engine', () => {
  let images: TestImages;
  let registry: OciRegistry;
  let privateRegistry: OciRegistry;
  let layered: PushedImage;
  let concurrent: PushedImage;
  let uncached: PushedImage;
  let privateImage: PushedImage;
  let app: TestApp;
  let user: ReturnType<typeof api>;
  let token: string;
  let fake: FakeAnthropic;

  beforeAll(async () => {
    [registry, privateRegistry, images] = await Promise.all([OciRegistry.start(), OciRegistry.start({ credentials: { username: 'puller', password: 'registry-password-42' } }), TestImages.build()]);
    layered = await images.push(registry, 'test/busybox', '1');
    concurrent = await images.push(registry, 'test/concurrent', '1', 'concurrent');
    uncached = await images.push(registry, 'test/uncached', '1', 'uncached');
    privateImage = await images.push(privateRegistry, 'private/busybox', '1', 'private');
    fake = await FakeAnthropic.start({ delayMs: 5 });
    app = await startTestApp({ env: { SANDBOX_PROVIDER: 'local', ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-test-registry', RUN_IDLE_TIMEOUT_SECONDS: '20' } });
    token = (await createMember(app)).token;
    user = api(app.url, token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
    await Promise.all([registry?.stop(), privateRegistry?.stop()]);
    images?.remove();
  });

  const create = async (body: Record<string, unknown>, as = user) => {
    const response = await as.post('/api/sandboxes', body);
    expect({ status: response.status, body: response.status === 201 ? undefined : response.body }).toEqual({ status: 201, body: undefined });
    return response.body.data.sandbox_id as string;
  };
  const sh = async (id: string, script: string, as = user) => (await as.post(`/api/sandboxes/${id}/exec`, { command: ['sh', '-c', script] })).body.data;
  const pulls = (testApp: TestApp, image: PushedImage) => testApp.logs.filter((line) => line.includes(`pulled image ${image.tag}`)).length;

  it('creates a sandbox from a tag: the image’s files with their layers applied, its ENV, busybox as the shell', async () => {
    const id = await create({ image_base: layered.tag });

    const result = await sh(id, 'cat /etc/os-release; test -e /etc/gone.txt; echo "gone $?"; stat -c "%i %h" /data/original /data/linked; echo "$IMAGE_GREETING"; pwd; id -u; stat -c "%u:%g %a" /bin/busybox');
    const [osRelease, osId, gone, original, linked, greeting, workdir, uid, busybox] = result.stdout.trim().split('\n');
    expect({ exit: result.exit_code, osRelease, osId, gone, greeting, workdir, uid, busybox }).toEqual({
      exit: 0,
      osRelease: 'NAME="Busybox test image"',
      osId: 'ID=busybox',
      gone: 'gone 1',
      greeting: 'from-image-config',
      workdir: '/mnt/workspace',
      uid: '0',
      busybox: '0:0 755',
    });
    expect(original).toMatch(/^\d+ 2$/);
    expect(linked).toBe(original);
    expect(pulls(app, layered)).toBe(1);
    await user.delete(`/api/sandboxes/${id}`);
  });

  it('runs Claude in a sandbox made as the seed README makes one: a registry image, RUN steps, env', async () => {
    const id = await create({ image_base: layered.tag, dockerfile_commands: ['RUN mkdir -p /opt/tools && echo ready > /opt/tools/status', 'ENV TOOLING=installed'], volume_name: 'seed-example' });
    expect(await sh(id, 'cat /opt/tools/status; echo "$TOOLING"')).toMatchObject({ exit_code: 0, stdout: 'ready\ninstalled\n' });

    fake.script([
      { content: [{ type: 'text', text: 'Writing it.' }, { type: 'tool_use', name: 'Write', input: { file_path: '/mnt/workspace/from-claude.txt', content: 'hi from a registry image\n' } }] },
      { content: [{ type: 'text', text: 'Written.' }] },
    ]);
    const started = await user.post(`/api/sandboxes/${id}/runs`, { prompt: 'Write the file' });
    expect(started.status).toBe(202);
    const runId = started.body.data.run_id as string;
    const { events } = await readSse(`${app.url}/api/sandboxes/${id}/runs/${runId}/events`, { token });

    expect(events[0].event).toBe('system');
    expect(JSON.parse(events[events.length - 1].data)).toMatchObject({ run_id: runId, status: 'succeeded', exit_code: 0 });
    expect(await sh(id, 'cat /mnt/workspace/from-claude.txt')).toMatchObject({ exit_code: 0, stdout: 'hi from a registry image\n' });
    await user.delete(`/api/sandboxes/${id}`);
  }, 120_000);

  it('creates from the digest without pulling again: a second create fetches no blob', async () => {
    const blobsBefore = registry.fetches('/blobs/');
    expect(blobsBefore).toBeGreaterThanOrEqual(3); // the first create's config and two layers

    const byDigest = await create({ image_base: layered.pinned });
    const byTagAgain = await create({ image_base: layered.tag });

    expect((await sh(byDigest, 'cat /data/linked')).stdout).toBe('linked content\n');
    expect((await sh(byTagAgain, 'cat /data/linked')).stdout).toBe('linked content\n');
    expect(registry.fetches('/blobs/')).toBe(blobsBefore);
    expect(pulls(app, layered)).toBe(1);
    const detail = await user.get(`/api/sandboxes/${byDigest}`);
    expect(detail.body.data.image_base).toBe(layered.pinned);
    await Promise.all([user.delete(`/api/sandboxes/${byDigest}`), user.delete(`/api/sandboxes/${byTagAgain}`)]);
  });

  it('runs Dockerfile steps inside the image from its WORKDIR and ENV, caches them, and names a failing step', async () => {
    const steps = ['ENV STEP_GREETING="$IMAGE_GREETING and step"', 'RUN echo "$STEP_GREETING" > /built.txt && pwd >> /built.txt && cat /proc/sys/kernel/random/uuid > /stamp', 'WORKDIR /app'];
    const first = await create({ image_base: layered.tag, dockerfile_commands: steps });

    expect(await sh(first, 'cat /built.txt; pwd; echo "$STEP_GREETING"')).toMatchObject({ exit_code: 0, stdout: 'from-image-config and step\n/srv\n/app\nfrom-image-config and step\n' });
    const second = await create({ image_base: layered.tag, dockerfile_commands: steps });
    expect((await sh(second, 'cat /stamp')).stdout).toBe((await sh(first, 'cat /stamp')).stdout);

    const failing = await user.post('/api/sandboxes', { image_base: layered.tag, dockerfile_commands: ['RUN echo preparing', 'RUN echo broken-step-output && exit 7'] });
    expect({ status: failing.status, message: failing.body.message }).toEqual({ status: 422, message: 'image step 2 failed (exit 7): RUN echo broken-step-output && exit 7' });
    expect(failing.body.details).toMatchObject({ step: 'image', step_index: 1, exit_code: 7, output_tail: 'broken-step-output\n' });
    await Promise.all([user.delete(`/api/sandboxes/${first}`), user.delete(`/api/sandboxes/${second}`)]);
  });

  it('shows how a create stands while it runs: the step being built, on GET and the list of creating sandboxes; null once running', async () => {
    const nonce = Date.now().toString(36);
    const steps = [`RUN echo one-${nonce} > /one`, 'RUN sleep 2 && echo two > /two'];
    const seen: unknown[] = [];
    let settled = false;
    const created = create({ image_base: layered.tag, dockerfile_commands: steps }).finally(() => (settled = true));
    while (!settled) {
      const listed = await user.get('/api/sandboxes?status=creating&limit=5');
      const mine = (listed.body.data as Array<{ dockerfile_commands: string[]; progress: unknown }>).find((sandbox) => sandbox.dockerfile_commands[0] === steps[0]);
      if (mine?.progress) seen.push(mine.progress);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const id = await created;

    expect(seen).toContainEqual({ phase: 'building', step: 2, steps: 2, detail: steps[1] });
    expect(seen.every((progress) => ['pulling_image', 'unpacking_image', 'starting', 'building'].includes((progress as { phase: string }).phase))).toBe(true);
    expect((await user.get(`/api/sandboxes/${id}`)).body.data).toMatchObject({ status: 'running', progress: null });
    await user.delete(`/api/sandboxes/${id}`);
  });

  it('pulls once for concurrent creates of an image not cached yet', async () => {
    const ids = await Promise.all([1, 2, 3].map(() => create({ image_base: concurrent.tag })));

    expect(pulls(app, concurrent)).toBe(1);
    for (const id of ids) expect((await sh(id, 'echo "$VARIANT"')).stdout).toBe('concurrent\n');
    await Promise.all(ids.map((id) => user.delete(`/api/sandboxes/${id}`)));
  });

  it('refuses an unknown tag and a digest the repository does not have with a 422 naming image_base', async () => {
    const wrongDigest = `${registry.host}/test/busybox@sha256:${'0'.repeat(64)}`;
    for (const image of [wrongDigest, `${registry.host}/test/busybox:no-such-tag`, `${registry.host}/test/no-such-repo:1`]) {
      const response = await user.post('/api/sandboxes', { image_base: image });
      expect({ status: response.status, message: response.body.message, details: response.body.details }).toEqual({
        status: 422,
        message: expect.stringMatching(new RegExp(`^image_base: ${image.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist in its registry`)),
        details: { step: 'image', field: 'image_base', image, reason: 'not_found' },
      });
    }
    const invalid = await user.post('/api/sandboxes', { image_base: `${registry.host}/test/busybox@sha256:short` });
    expect({ status: invalid.status, field: invalid.body.details?.field }).toEqual({ status: 400, field: 'image_base' });
  });

  it('needs REGISTRY_AUTH_FILE for a private repository: refused without it, pulled with it; after a restart the sandbox keeps its image ENV; IMAGE_PULL_POLICY=never uses only the cache', async () => {
    const refused = await user.post('/api/sandboxes', { image_base: privateImage.tag });
    expect({ status: refused.status, reason: refused.body.details?.reason }).toEqual({ status: 422, reason: 'unauthorized' });
    expect(refused.body.message).toMatch(/^image_base: .* REGISTRY_AUTH_FILE/);

    const authFile = privateRegistry.writeAuthFile(join(app.dataDir, '..', `auth-${process.pid}.json`));
    const withAuth = await startTestApp({ env: { SANDBOX_PROVIDER: 'local', REGISTRY_AUTH_FILE: authFile } });
    let never: TestApp | undefined;
    let withAuthOpen = true;
    try {
      const { token } = await createMember(withAuth);
      const member = api(withAuth.url, token);
      const id = await create({ image_base: privateImage.tag }, member);
      expect((await sh(id, 'echo "$VARIANT"', member)).stdout).toBe('private\n');
      expect(withAuth.logs.join('\n')).not.toContain('registry-password-42');
      await withAuth.close(); // the sandbox goes on for the next start
      withAuthOpen = false;

      never = await startTestApp({ env: { SANDBOX_PROVIDER: 'local', IMAGE_PULL_POLICY: 'never' }, reuse: { dataDir: withAuth.dataDir } });
      const sameMember = api(never.url, token);
      expect((await sh(id, 'echo "$VARIANT $IMAGE_GREETING"', sameMember)).stdout).toBe('private from-image-config\n');
      await sameMember.delete(`/api/sandboxes/${id}`);
      const neverUser = api(never.url, (await createMember(never)).token);
      const cached = await create({ image_base: privateImage.tag }, neverUser);
      await neverUser.delete(`/api/sandboxes/${cached}`);
      const notCached = await neverUser.post('/api/sandboxes', { image_base: uncached.tag });
      expect({ status: notCached.status, reason: notCached.body.details?.reason, message: notCached.body.message }).toEqual({
        status: 422,
        reason: 'not_cached',
        message: `image_base: ${uncached.tag} is not in the local image cache and IMAGE_PULL_POLICY is never`,
      });
    } finally {
      if (withAuthOpen) await withAuth.close({ purge: true });
      await never?.close({ purge: true });
      rmSync(authFile, { force: true });
    }
  });
});
