import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImagePullRefusedError } from '../sandbox-provider.errors';
import { hostPlatform, type ImagePullPolicy, RegistryImageStore } from './registry-images';
import type { RegistryTools } from './registry-tools';

const PLATFORM = { os: 'linux', architecture: 'amd64' };
const digestOf = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const IMAGE_DIGEST = digestOf('manifest v1');

/** Writes the OCI layout skopeo would: index → manifest → config. */
function writeLayout(layout: string, config: object): void {
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (text: string) => {
    const digest = digestOf(text);
    writeFileSync(join(blobs, digest.slice('sha256:'.length)), text);
    return digest;
  };
  const configDigest = put(JSON.stringify({ config }));
  const manifestDigest = put(JSON.stringify({ schemaVersion: 2, config: { digest: configDigest }, layers: [] }));
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ digest: manifestDigest }] }));
}

/** skopeo and umoci as strict mocks: only the calls a test allows, each checked. */
function fakeTools(digest = IMAGE_DIGEST) {
  const tools = {
    manifestDigest: jest.fn(async () => digest),
    copy: jest.fn(async (_image: string, _source: string, destination: string) => {
      await new Promise((resolve) => setTimeout(resolve, 20)); // long enough for concurrent callers to pile up
      writeLayout(destination.replace(/^oci:/, '').replace(/:image$/, ''), { Env: ['PATH=/usr/bin:/bin', 'FOO=bar'], WorkingDir: '/srv' });
    }),
    unpack: jest.fn(async (_image: string, _layout: string, bundle: string) => {
      mkdirSync(join(bundle, 'rootfs', 'etc'), { recursive: true });
      writeFileSync(join(bundle, 'rootfs', 'etc', 'os-release'), 'NAME=test\n');
    }),
  };
  return tools;
}

describe('RegistryImageStore', () => {
  let dir: string;
  let logs: string[];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'registry-images-'));
    logs = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const store = (tools: ReturnType<typeof fakeTools>, pullPolicy: ImagePullPolicy = 'if-not-present', insecureRegistries: string[] = []) =>
    new RegistryImageStore(join(dir, 'store'), tools as unknown as RegistryTools, { pullPolicy, insecureRegistries, platform: PLATFORM, authFile: '/etc/auth.json' }, (line) => logs.push(line));

  it('resolves a tag, pulls by digest into a content-addressed entry and reads the image config', async () => {
    const tools = fakeTools();

    const image = await store(tools).get('127.0.0.1:5000/team/tool:1');

    expect(tools.manifestDigest).toHaveBeenCalledWith('127.0.0.1:5000/team/tool:1', 'docker://127.0.0.1:5000/team/tool:1', { tlsVerify: false, authFile: '/etc/auth.json' });
    expect(tools.copy).toHaveBeenCalledWith('127.0.0.1:5000/team/tool:1', `docker://127.0.0.1:5000/team/tool@${IMAGE_DIGEST}`, expect.stringMatching(/^oci:.*\/tmp\/pull-[^/]+\/layout:image$/), { tlsVerify: false, authFile: '/etc/auth.json' }, PLATFORM);
    expect(image).toEqual({
      reference: '127.0.0.1:5000/team/tool:1',
      digest: IMAGE_DIGEST,
      rootDir: join(dir, 'store', 'images', `v1-${IMAGE_DIGEST.replace(':', '-')}`, 'rootfs'),
      config: { env: { PATH: '/usr/bin:/bin', FOO: 'bar' }, workdir: '/srv' },
    });
    expect(readFileSync(join(image.rootDir, 'etc', 'os-release'), 'utf8')).toBe('NAME=test\n');
    expect(readdirSync(join(dir, 'store', 'tmp'))).toEqual([]);
    expect(statSync(join(dir, 'store')).mode & 0o777).toBe(0o700);
    expect(logs).toEqual([expect.stringMatching(new RegExp(`^pulled image 127.0.0.1:5000/team/tool:1 \\(${IMAGE_DIGEST}\\) in \\d+ ms$`))]);
  });

  it('reports pulling before skopeo copies and unpacking before umoci unpacks, and nothing for a cached image', async () => {
    const tools = fakeTools();
    const events: string[] = [];
    tools.copy.mockImplementationOnce(async (_image: string, _source: string, destination: string) => {
      events.push('copy');
      writeLayout(destination.replace(/^oci:/, '').replace(/:image$/, ''), {});
    });
    tools.unpack.mockImplementationOnce(async (_image: string, _layout: string, bundle: string) => {
      events.push('unpack');
      mkdirSync(join(bundle, 'rootfs'), { recursive: true });
    });
    const images = store(tools);

    await images.get('127.0.0.1:5000/team/tool:1', (progress) => events.push(JSON.stringify(progress)));
    await images.get('127.0.0.1:5000/team/tool:1', (progress) => events.push(`cached ${JSON.stringify(progress)}`));

    expect(events).toEqual([
      JSON.stringify({ phase: 'pulling_image', detail: '127.0.0.1:5000/team/tool:1' }),
      'copy',
      JSON.stringify({ phase: 'unpacking_image', detail: '127.0.0.1:5000/team/tool:1' }),
      'unpack',
    ]);
  });

  it('verifies TLS for registries off loopback unless REGISTRY_INSECURE lists them', async () => {
    const tools = fakeTools();
    await store(tools, 'if-not-present', ['r.lan:5000']).get('r.lan:5000/a:1');
    await store(tools).get('r.lan:5001/a:1');

    expect(tools.manifestDigest.mock.calls.map((call) => (call as unknown[])[2])).toEqual([
      { tlsVerify: false, authFile: '/etc/auth.json' },
      { tlsVerify: true, authFile: '/etc/auth.json' },
    ]);
  });

  it('pulls once for concurrent requests, and a cached tag asks the registry nothing', async () => {
    const tools = fakeTools();
    const images = store(tools);

    const results = await Promise.all([images.get('x.io/a:1'), images.get('x.io/a:1'), images.get(`x.io/a@${IMAGE_DIGEST}`)]);
    await images.get('x.io/a:1');
    await store(tools).get('x.io/a:1'); // another process on the same directory

    expect(new Set(results.map((image) => image.rootDir)).size).toBe(1);
    expect(tools.copy).toHaveBeenCalledTimes(1);
    expect(tools.unpack).toHaveBeenCalledTimes(1);
    expect(tools.manifestDigest).toHaveBeenCalledTimes(1);
  });

  it('resolves tags again under IMAGE_PULL_POLICY=always, pulling only digests it lacks', async () => {
    const tools = fakeTools();
    await store(tools).get('x.io/a:1');

    await store(tools, 'always').get('x.io/a:1');

    expect(tools.manifestDigest).toHaveBeenCalledTimes(2);
    expect(tools.copy).toHaveBeenCalledTimes(1);
  });

  it('uses only cached images under IMAGE_PULL_POLICY=never', async () => {
    const tools = fakeTools();
    const missing = store(tools, 'never').get('x.io/a:1');

    await expect(missing).rejects.toBeInstanceOf(ImagePullRefusedError);
    await expect(missing).rejects.toMatchObject({ reason: 'not_cached', message: 'image_base: x.io/a:1 is not in the local image cache and IMAGE_PULL_POLICY is never' });
    await store(tools).get('x.io/a:1');
    expect((await store(tools, 'never').get('x.io/a:1')).digest).toBe(IMAGE_DIGEST);
    expect(tools.copy).toHaveBeenCalledTimes(1);
  });

  it('leaves nothing behind when a pull fails, and tries again next time', async () => {
    const tools = fakeTools();
    tools.unpack.mockRejectedValueOnce(new ImagePullRefusedError('x.io/a:1', 'not_found', 'could not be unpacked'));

    await expect(store(tools).get('x.io/a:1')).rejects.toThrow('could not be unpacked');
    expect(readdirSync(join(dir, 'store', 'tmp'))).toEqual([]);
    expect(readdirSync(join(dir, 'store', 'images'))).toEqual([]);
    expect(existsSync((await store(tools).get('x.io/a:1')).rootDir)).toBe(true);
  });
});

describe('RegistryImageStore housekeeping', () => {
  it('removes partial pulls a dead process left a day ago, and no others', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'registry-images-'));
    try {
      const tmp = join(dir, 'store', 'tmp');
      mkdirSync(join(tmp, 'pull-old'), { recursive: true });
      mkdirSync(join(tmp, 'pull-recent'), { recursive: true });
      const dayAgo = new Date(Date.now() - 25 * 3600 * 1000);
      utimesSync(join(tmp, 'pull-old'), dayAgo, dayAgo);

      await new RegistryImageStore(join(dir, 'store'), fakeTools() as unknown as RegistryTools, { pullPolicy: 'if-not-present', insecureRegistries: [], platform: PLATFORM }, () => undefined).get('x.io/a:1');

      expect(readdirSync(tmp)).toEqual(['pull-recent']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hostPlatform', () => {
  it('names the architecture as OCI does', () => {
    expect(hostPlatform('x64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(hostPlatform('arm64')).toEqual({ os: 'linux', architecture: 'arm64' });
  });
});
