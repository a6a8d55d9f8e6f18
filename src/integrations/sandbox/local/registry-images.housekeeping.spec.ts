import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageInUseError, ImageNotCachedError } from '../sandbox-provider.errors';
import { RegistryImageStore } from './registry-images';
import type { RegistryTools } from './registry-tools';

const PLATFORM = { os: 'linux', architecture: 'amd64' };
const digestOf = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

/** skopeo and umoci as strict mocks: each reference's tag names its own digest; every image's rootfs holds 1000 bytes. */
function fakeTools(pullDelayMs = 0) {
  return {
    manifestDigest: jest.fn(async (image: string) => digestOf(image)),
    copy: jest.fn(async (_image: string, _source: string, destination: string) => {
      await new Promise((resolve) => setTimeout(resolve, pullDelayMs));
      const layout = destination.replace(/^oci:/, '').replace(/:image$/, '');
      const blobs = join(layout, 'blobs', 'sha256');
      mkdirSync(blobs, { recursive: true });
      const put = (text: string) => {
        const digest = digestOf(text);
        writeFileSync(join(blobs, digest.slice('sha256:'.length)), text);
        return digest;
      };
      const config = put(JSON.stringify({ config: {} }));
      const manifest = put(JSON.stringify({ schemaVersion: 2, config: { digest: config }, layers: [] }));
      writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ digest: manifest }] }));
    }),
    unpack: jest.fn(async (_image: string, _layout: string, bundle: string) => {
      mkdirSync(join(bundle, 'rootfs'), { recursive: true });
      writeFileSync(join(bundle, 'rootfs', 'data'), Buffer.alloc(1000));
    }),
  };
}

describe('RegistryImageStore cache housekeeping', () => {
  let dir: string;
  let logs: string[];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'registry-images-hk-'));
    logs = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const store = (tools: ReturnType<typeof fakeTools>, options: { maxBytes?: number; inUse?: (digest: string) => boolean } = {}) =>
    new RegistryImageStore(join(dir, 'store'), tools as unknown as RegistryTools, { pullPolicy: 'if-not-present', insecureRegistries: [], platform: PLATFORM, ...options }, (line) => logs.push(line));

  it('lists pulled images with their size, pull time, last use and whether they are in use', async () => {
    const images = store(fakeTools(), { inUse: (digest) => digest === digestOf('x.io/b:1') });
    const a = await images.get('x.io/a:1');
    images.release(a.digest);
    await images.get('x.io/b:1');
    images.release(digestOf('x.io/b:1'));
    const leased = await images.get('x.io/a:1'); // leased until released

    const listed = await images.list();

    expect(listed.map((image) => [image.reference, image.sizeBytes, image.inUse])).toEqual([
      ['x.io/a:1', 1000, true],
      ['x.io/b:1', 1000, true],
    ]);
    expect(listed[0].lastUsedAt.getTime()).toBeGreaterThanOrEqual(listed[0].pulledAt.getTime());
    images.release(leased.digest);
    expect((await images.list()).find((image) => image.digest === leased.digest)?.inUse).toBe(false);
  });

  it('removes an image unless leased or in use; the next get pulls it again', async () => {
    const tools = fakeTools();
    const images = store(tools);
    const image = await images.get('x.io/a:1');

    await expect(images.remove(image.digest)).rejects.toThrow(ImageInUseError);
    images.release(image.digest);
    await images.remove(image.digest);
    await expect(images.remove(image.digest)).rejects.toThrow(ImageNotCachedError);
    expect(await images.list()).toEqual([]);
    expect(readdirSync(join(dir, 'store', 'tags'))).toEqual([]);

    await images.get('x.io/a:1');
    expect(tools.copy).toHaveBeenCalledTimes(2);
  });

  it('after a pull, prunes least recently used images nobody uses down to the cap, never the one just pulled', async () => {
    const images = store(fakeTools(), { maxBytes: 1500 });
    for (const name of ['a', 'b']) images.release((await images.get(`x.io/${name}:1`)).digest);
    expect((await images.list()).map((image) => image.reference)).toEqual(['x.io/b:1']);

    const c = await images.get('x.io/c:1'); // leased: b goes
    expect((await images.list()).map((image) => image.reference)).toEqual(['x.io/c:1']);
    expect(logs).toContainEqual(expect.stringContaining(`removed ${digestOf('x.io/b:1')}`));
    images.release(c.digest);
  });

  it('a removal waits for a pull under way', async () => {
    const images = store(fakeTools(50));
    const first = await images.get('x.io/a:1');
    images.release(first.digest);

    const pulling = images.get('x.io/b:1');
    await new Promise((resolve) => setTimeout(resolve, 10));
    const order: string[] = [];
    await Promise.all([pulling.then(() => order.push('pulled')), images.remove(first.digest).then(() => order.push('removed'))]);

    expect(order).toEqual(['pulled', 'removed']);
  });
});
