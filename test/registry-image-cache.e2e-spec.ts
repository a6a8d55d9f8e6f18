import { api } from './support/http';
import { OciRegistry, type PushedImage, TestImages } from './support/oci-registry';
import { createMember, startTestApp, type TestApp } from './support/test-app';

/**
 * The local engine's registry image cache through the API: GET /api/images, DELETE
 * /api/images/:digest (admin) and the IMAGE_CACHE_MAX_GB cap, against docker-registry on 127.0.0.1.
 */
describe('registry image cache', () => {
  let images: TestImages;
  let registry: OciRegistry;
  let first: PushedImage;
  let second: PushedImage;
  let third: PushedImage;
  let app: TestApp;
  let member: ReturnType<typeof api>;
  let admin: ReturnType<typeof api>;

  beforeAll(async () => {
    [registry, images] = await Promise.all([OciRegistry.start(), TestImages.build()]);
    first = await images.push(registry, 'test/cache-first', '1', 'first');
    second = await images.push(registry, 'test/cache-second', '1', 'second');
    third = await images.push(registry, 'test/cache-third', '1', 'third');
    // A cap smaller than any image: every pull prunes all images no sandbox runs on.
    app = await startTestApp({ env: { SANDBOX_PROVIDER: 'local', IMAGE_CACHE_MAX_GB: '0.000001' } });
    member = api(app.url, (await createMember(app)).token);
    admin = api(app.url, app.adminToken);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await registry?.stop();
    images?.remove();
  });

  const create = async (image: string) => {
    const response = await member.post('/api/sandboxes', { image_base: image });
    expect({ status: response.status, body: response.status === 201 ? undefined : response.body }).toEqual({ status: 201, body: undefined });
    return response.body.data.sandbox_id as string;
  };
  const listed = async () => {
    const response = await member.get('/api/images');
    expect(response.status).toBe(200);
    return response.body.data as Array<{ digest: string; reference: string; size_bytes: number; last_used_at: string; pulled_at: string; in_use: boolean }>;
  };

  it('lists an image a sandbox runs on as in use, refuses to delete it (409), a member may not delete (403), and deletes it once unused', async () => {
    const id = await create(first.tag);

    const [image] = await listed();
    expect(image).toEqual({ digest: first.digest, reference: first.tag, size_bytes: expect.any(Number), last_used_at: expect.any(String), pulled_at: expect.any(String), in_use: true });
    expect(image.size_bytes).toBeGreaterThan(0);
    expect(Date.parse(image.last_used_at)).toBeGreaterThanOrEqual(Date.parse(image.pulled_at));

    const inUse = await admin.delete(`/api/images/${first.digest}`);
    expect({ status: inUse.status, message: inUse.body.message }).toEqual({ status: 409, message: expect.stringContaining('in use') });
    expect((await member.delete(`/api/images/${first.digest}`)).status).toBe(403);
    const invalid = await admin.delete('/api/images/sha256:short');
    expect({ status: invalid.status, field: invalid.body.details?.field }).toEqual({ status: 400, field: 'digest' });

    expect((await member.delete(`/api/sandboxes/${id}`)).status).toBe(200);
    expect((await listed())[0].in_use).toBe(false);
    expect((await admin.delete(`/api/images/${first.digest}`)).status).toBe(204);
    expect(await listed()).toEqual([]);
    expect((await admin.delete(`/api/images/${first.digest}`)).status).toBe(404);

    const again = await create(first.tag); // pulled again
    expect((await listed()).map((entry) => entry.digest)).toEqual([first.digest]);
    await member.delete(`/api/sandboxes/${again}`);
  });

  it('over IMAGE_CACHE_MAX_GB a pull prunes the least recently used images no sandbox runs on, never one in use', async () => {
    const onSecond = await create(second.tag); // first is unused by now: pruned
    expect((await listed()).map((entry) => entry.digest)).toEqual([second.digest]);
    expect(app.logs.join('\n')).toContain(`removed ${first.digest}`);

    const onThird = await create(third.tag); // second is in use: kept, over the cap
    expect((await listed()).map((entry) => [entry.digest, entry.in_use])).toEqual([
      [third.digest, true],
      [second.digest, true],
    ]);
    await Promise.all([member.delete(`/api/sandboxes/${onSecond}`), member.delete(`/api/sandboxes/${onThird}`)]);
  });
});
