import { existsSync, statSync } from 'node:fs';
import { AppConfig } from '../src/config/app-config';
import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { type ImageRootName, type ImageRoots, imageRoots } from './support/image-roots';
import { readSse } from './support/sse-client';
import { createMember, startTestApp, type TestApp } from './support/test-app';

/**
 * The service's Claude CLI inside image-based sandboxes on the local engine: the glibc build in a
 * glibc image, the musl build (CLAUDE_BIN_MUSL, fetched by `npm run build`) in a musl one, the
 * glibc build with the host's loader in an image with no libc at all. The images are root
 * filesystems under IMAGES_DIR with busybox as their only shell and coreutils (test/support/image-roots.ts).
 */
describe('Claude runs inside images (local engine)', () => {
  let roots: ImageRoots;
  let fake: FakeAnthropic;
  let app: TestApp;
  let user: ReturnType<typeof api>;
  let token: string;
  let config: AppConfig['sandbox'];

  beforeAll(async () => {
    roots = imageRoots();
    fake = await FakeAnthropic.start({ delayMs: 5 });
    app = await startTestApp({ env: { SANDBOX_PROVIDER: 'local', IMAGES_DIR: roots.dir, ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-test-images', RUN_IDLE_TIMEOUT_SECONDS: '20' } });
    config = app.app.get(AppConfig).sandbox;
    if (!existsSync(config.claudeBinMusl)) throw new Error(`the CLI's musl build is missing at ${config.claudeBinMusl}: run \`npm run build\` (scripts/fetch-claude-musl.sh)`);
    token = (await createMember(app)).token;
    user = api(app.url, token);
  }, 120_000);
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
    roots?.remove();
  });

  const create = async (image: ImageRootName) => {
    const response = await user.post('/api/sandboxes', { image_base: image, volume_name: `volume-${image}` });
    expect({ status: response.status, body: response.body }).toMatchObject({ status: 201 });
    return response.body.data.sandbox_id as string;
  };
  const exec = async (sandboxId: string, command: string[]) => (await user.post(`/api/sandboxes/${sandboxId}/exec`, { command })).body.data;

  it.each<[ImageRootName, string]>([
    ['musl', 'musl'],
    ['glibc', 'glibc'],
    ['static', 'no libc'],
  ])('runs a command and a Claude run that writes a file in the %s image (%s)', async (image) => {
    const sandboxId = await create(image);
    // The image's own userland (busybox), not the host's.
    expect(await exec(sandboxId, ['sh', '-c', 'readlink /bin/sh; [ ! -e /usr/bin/apt-get ] && echo no-apt'])).toMatchObject({ exit_code: 0, stdout: '/bin/busybox\nno-apt\n' });
    expect(await exec(sandboxId, ['claude', '--version'])).toMatchObject({ exit_code: 0, stdout: expect.stringContaining('(Claude Code)') });
    const build = image === 'musl' ? config.claudeBinMusl : config.claudeBin;
    expect(await exec(sandboxId, ['sh', '-c', 'wc -c < /opt/claude-code/bin/claude'])).toMatchObject({ stdout: `${statSync(build).size}\n` });

    fake.script([
      { content: [{ type: 'text', text: 'Writing it.' }, { type: 'tool_use', name: 'Write', input: { file_path: '/mnt/workspace/from-claude.txt', content: `hi from ${image}\n` } }] },
      { content: [{ type: 'text', text: 'Written.' }] },
    ]);
    const started = await user.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Write the file', include_partial_messages: true });
    expect(started.status).toBe(202);
    const runId = started.body.data.run_id as string;
    const { events } = await readSse(`${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`, { token });

    const types = events.map((event) => event.event);
    expect(types[0]).toBe('system');
    expect(types).toEqual(expect.arrayContaining(['assistant', 'user', 'stream_event', 'result']));
    expect(types[types.length - 1]).toBe('done');
    expect(events.map((event) => Number(event.id))).toEqual(events.map((_, index) => index + 1));
    expect(JSON.parse(events[events.length - 1].data)).toMatchObject({ run_id: runId, status: 'succeeded', exit_code: 0 });
    expect(await exec(sandboxId, ['cat', '/mnt/workspace/from-claude.txt'])).toMatchObject({ exit_code: 0, stdout: `hi from ${image}\n` });
    const run = await user.get(`/api/sandboxes/${sandboxId}/runs/${runId}`);
    expect(run.body.data).toMatchObject({ status: 'succeeded', result: 'Written.' });

    await user.delete(`/api/sandboxes/${sandboxId}`);
  }, 120_000);
});
