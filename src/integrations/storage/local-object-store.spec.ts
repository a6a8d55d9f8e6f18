import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { LocalObjectStore } from './local-object-store';
import { InvalidObjectKeyError, ObjectNotFoundError } from './object-store.errors';

const BUCKET = 'bucket-1';

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

describe('LocalObjectStore', () => {
  let root: string;
  let store: LocalObjectStore;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'local-store-spec-'));
    store = new LocalObjectStore(root);
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function putText(key: string, content: string): Promise<void> {
    await store.put(BUCKET, key, Readable.from([Buffer.from(content)]));
  }

  it('stores and returns objects under a directory per bucket', async () => {
    await putText('a/b/c.txt', 'hello');

    expect(await text(await store.get(BUCKET, 'a/b/c.txt'))).toBe('hello');
    expect(await readdir(join(root, BUCKET, 'a/b'))).toEqual(['c.txt']);
    await expect(store.get(BUCKET, 'a/b')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.get(BUCKET, 'missing')).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('keeps the previous object when a replacement body fails midway', async () => {
    await putText('doc.txt', 'version 1');
    const broken = new Readable({
      read() {
        this.push('version 2, partial');
        this.destroy(new Error('client went away'));
      },
    });

    await expect(store.put(BUCKET, 'doc.txt', broken)).rejects.toThrow('client went away');

    expect(await text(await store.get(BUCKET, 'doc.txt'))).toBe('version 1');
    expect(await readdir(join(root, '.staging'))).toEqual([]);
  });

  it('copies an object so that replacing the source leaves the copy unchanged', async () => {
    await putText('v1/file', 'first');

    await store.copy(BUCKET, 'v1/file', 'v2/file');
    await store.copy(BUCKET, 'v1/file', 'v2/file');
    await putText('v1/file', 'second');

    expect(await text(await store.get(BUCKET, 'v2/file'))).toBe('first');
    expect(await readdir(join(root, '.staging'))).toEqual([]);
    await expect(store.copy(BUCKET, 'v1/none', 'v2/none')).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('lists keys in key order with a string prefix and pages', async () => {
    for (const key of ['a/x', 'a-b', 'a/y/z', 'b', 'a/w.txt', 'ab']) await putText(key, key);

    const all = await store.list(BUCKET, '');
    expect(all.objects.map((object) => object.key)).toEqual(['a-b', 'a/w.txt', 'a/x', 'a/y/z', 'ab', 'b']);
    expect(all.nextCursor).toBeUndefined();
    expect((await store.list(BUCKET, 'a/')).objects.map((object) => object.key)).toEqual(['a/w.txt', 'a/x', 'a/y/z']);
    expect((await store.list(BUCKET, 'a/w')).objects.map((object) => object.key)).toEqual(['a/w.txt']);

    const keys: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.list(BUCKET, '', { limit: 2, cursor });
      expect(page.objects.length).toBeLessThanOrEqual(2);
      keys.push(...page.objects.map((object) => object.key));
      cursor = page.nextCursor;
    } while (cursor);
    expect(keys).toEqual(all.objects.map((object) => object.key));
  });

  it('lists nothing for a bucket or prefix that does not exist', async () => {
    expect(await store.list('other-bucket', 'x/')).toEqual({ objects: [] });
  });

  it('deletes idempotently and removes directories left empty', async () => {
    await putText('deep/er/file', 'x');
    await putText('keep', 'y');

    await store.delete(BUCKET, 'deep/er/file');
    await store.delete(BUCKET, 'deep/er/file');

    expect(await readdir(join(root, BUCKET))).toEqual(['keep']);
  });

  it.each(['../escape', '/absolute', 'a//b', 'a/./b', 'nul\0byte', 'trailing/'])('refuses the key %j', async (key) => {
    await expect(store.put(BUCKET, key, Readable.from(['x']))).rejects.toBeInstanceOf(InvalidObjectKeyError);
    await expect(store.get(BUCKET, key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
  });

  it('refuses bucket names that are not plain names', async () => {
    await expect(store.get('..', 'key')).rejects.toBeInstanceOf(InvalidObjectKeyError);
    await expect(store.list('.staging', '')).rejects.toBeInstanceOf(InvalidObjectKeyError);
  });
});
