import { describeOnEngines } from './support/engines';
import { S3TestServer } from './support/s3-server';
import { api } from './support/http';
import { createMember, startTestApp, TestApp } from './support/test-app';

const BUCKET = 'workspaces';

// On Modal the snapshot reads the workspace through the running sandbox and a restore writes it
// into the new sandbox before the create answers; the stores are the service's, the same on both.
describeOnEngines('workspace snapshots through the API', (engine) => {
describe.each(['local', 's3'] as const)('on the %s store', (store) => {
  let s3: S3TestServer | undefined;
  let app: TestApp;
  let user: ReturnType<typeof api>;

  beforeAll(async () => {
    const env: Record<string, string> = { ...engine.env(), STORAGE_PROVIDER: store, S3_DEFAULT_BUCKET: BUCKET };
    if (store === 's3') {
      s3 = await S3TestServer.start([BUCKET]);
      Object.assign(env, { S3_ENDPOINT: s3.endpoint, S3_ACCESS_KEY_ID: S3TestServer.accessKeyId, S3_SECRET_ACCESS_KEY: S3TestServer.secretAccessKey, S3_FORCE_PATH_STYLE: 'true' });
    }
    app = await startTestApp({ env });
    user = api(app.url, (await createMember(app)).token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await s3?.dispose();
  });

  const create = async (body: Record<string, unknown>) => {
    const response = await user.post('/api/sandboxes', body);
    expect({ status: response.status, message: response.body.message }).toEqual({ status: 201, message: undefined });
    return response.body.data.sandbox_id as string;
  };
  const sh = async (id: string, script: string) => (await user.post(`/api/sandboxes/${id}/exec`, { command: ['sh', '-c', script] })).body.data;

  it('snapshots a workspace, lists it, and restores it into a new sandbox with structure and modes', async () => {
    const source = await create({ volume_name: 'source', s3_bucket_name: BUCKET, s3_key_prefix: 'team-a/' });
    await sh(source, 'mkdir -p src/deep/er empty && echo "console.log(1)" > src/deep/er/app.js && printf "#!/bin/sh\\necho run\\n" > run.sh && chmod 755 run.sh && chmod 600 src/deep/er/app.js && chmod 750 empty && ln -s run.sh link-to-run');

    const snapshot = await user.post(`/api/sandboxes/${source}/snapshots`);
    expect(snapshot.status).toBe(201);
    expect(snapshot.body.data).toMatchObject({ files: 2, errors: [], files_copied: 0 });
    expect(snapshot.body.data.bytes_uploaded).toBe(snapshot.body.data.bytes_total);

    const again = await user.post(`/api/sandboxes/${source}/snapshots`);
    expect(again.body.data).toMatchObject({ bytes_uploaded: 0, files_copied: 2 });
    expect(again.body.data.version).toBeGreaterThan(snapshot.body.data.version);

    const versions = await user.get(`/api/sandboxes/${source}/snapshots`);
    expect(versions.body.data.map((v: { version: number }) => v.version)).toEqual([again.body.data.version, snapshot.body.data.version]);

    const restored = await create({ volume_name: 'restored', s3_bucket_name: BUCKET, s3_key_prefix: 'team-a/', init_from_s3: true });
    const listing = await sh(restored, 'stat -c "%n %a %F" run.sh src/deep/er/app.js empty link-to-run && cat src/deep/er/app.js && ./run.sh');
    expect(listing.stdout).toBe('run.sh 755 regular file\nsrc/deep/er/app.js 600 regular file\nempty 750 directory\nlink-to-run 777 symbolic link\nconsole.log(1)\nrun\n');

    const chosen = await create({ volume_name: 'chosen', s3_bucket_name: BUCKET, s3_key_prefix: 'team-a/', init_from_s3: true, snapshot_version: snapshot.body.data.version });
    expect((await sh(chosen, 'cat run.sh')).stdout).toContain('echo run');
    const missing = await user.post('/api/sandboxes', { volume_name: 'missing', s3_bucket_name: BUCKET, s3_key_prefix: 'team-a/', init_from_s3: true, snapshot_version: 12345 });
    expect(missing.status).toBe(404);
  });

  it('starts with the volume as it is when there is no version yet, and snapshots an empty volume', async () => {
    const id = await create({ volume_name: 'fresh', s3_bucket_name: BUCKET, s3_key_prefix: 'nothing-yet/', init_from_s3: true });
    expect((await sh(id, 'ls -A | wc -l')).stdout.trim()).toBe('0');
    expect((await user.get(`/api/sandboxes/${id}/snapshots`)).body.data).toEqual([]);
    const empty = await user.post(`/api/sandboxes/${id}/snapshots`);
    expect(empty.body.data).toMatchObject({ files: 0, bytes_total: 0, errors: [] });
  });

  it('syncs on DELETE, and keeps another account’s versions invisible', async () => {
    const id = await create({ volume_name: 'synced', s3_bucket_name: BUCKET, s3_key_prefix: 'sync/' });
    await sh(id, 'echo "last words" > final.txt');
    const deleted = await user.delete(`/api/sandboxes/${id}`);
    expect({ status: deleted.status, message: deleted.body.message, sandbox: deleted.body.data?.status }).toEqual({ status: 200, message: undefined, sandbox: 'terminated' });
    const versions = (await user.get(`/api/sandboxes/${id}/snapshots`)).body.data;
    expect(versions).toHaveLength(1);
    const back = await create({ volume_name: 'synced-again', s3_bucket_name: BUCKET, s3_key_prefix: 'sync/', init_from_s3: true });
    expect((await sh(back, 'cat final.txt')).stdout).toBe('last words\n');

    const stranger = api(app.url, (await createMember(app)).token);
    const theirs = (await stranger.post('/api/sandboxes', { s3_bucket_name: BUCKET, s3_key_prefix: 'sync/' })).body.data.sandbox_id;
    expect((await stranger.get(`/api/sandboxes/${theirs}/snapshots`)).body.data).toEqual([]);

    const unsynced = await create({ volume_name: 'unsynced', s3_bucket_name: BUCKET, s3_key_prefix: 'nosync/' });
    await user.delete(`/api/sandboxes/${unsynced}?sync=false`);
    expect((await user.get(`/api/sandboxes/${unsynced}/snapshots`)).body.data).toEqual([]);
  });

  if (store === 's3') {
    it('keeps the sandbox running and the latest version intact when the store fails during the final sync', async () => {
      const id = await create({ volume_name: 'fragile', s3_bucket_name: BUCKET, s3_key_prefix: 'fragile/' });
      await sh(id, 'for i in 1 2 3; do echo "content $i" > file-$i.txt; done');
      const good = (await user.post(`/api/sandboxes/${id}/snapshots`)).body.data.version;
      await sh(id, 'echo changed > file-1.txt && echo new > file-4.txt');

      await s3!.stop();
      try {
        const failed = await user.delete(`/api/sandboxes/${id}`);
        expect(failed.status).toBe(502);
        expect(failed.body.message).toContain('still running');
        expect((await user.get(`/api/sandboxes/${id}`)).body.data.status).toBe('running');
        expect((await sh(id, 'cat file-4.txt')).stdout).toBe('new\n');
        expect([502, 503]).toContain((await user.post(`/api/sandboxes/${id}/snapshots`)).status);
      } finally {
        await s3!.restart();
      }
      const versions = (await user.get(`/api/sandboxes/${id}/snapshots`)).body.data;
      expect(versions.map((v: { version: number }) => v.version)).toEqual([good]);

      await s3!.stop();
      try {
        const forced = await user.delete(`/api/sandboxes/${id}?force=true`);
        expect(forced.body.data.status).toBe('terminated');
      } finally {
        await s3!.restart();
      }
    });
  }
});
});
