import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { BucketNotFoundError, ObjectNotFoundError, StorageAccessDeniedError, StorageUnavailableError } from './object-store.errors';
import { S3ObjectStore } from './s3-object-store';

const SETTINGS = { endpoint: 'http://127.0.0.1:9', region: 'us-east-1', accessKeyId: 'AKIAEXAMPLEKEYID', secretAccessKey: 'wJalrXUtnFEMI/SECRET', forcePathStyle: true };
const GIB = 1024 ** 3;

type Command = { constructor: { name: string }; input: Record<string, unknown> };

/** Strict: every command the test does not answer fails the test. */
function answer(handlers: Partial<Record<string, (input: Record<string, unknown>) => unknown>>): jest.SpyInstance {
  return jest.spyOn(S3Client.prototype, 'send').mockImplementation((async (command: Command) => {
    const handler = handlers[command.constructor.name];
    if (!handler) throw new Error(`unexpected S3 command ${command.constructor.name}`);
    return handler(command.input);
  }) as never);
}

function serviceError(name: string, status: number, message: string): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: status }, message });
}

describe('S3ObjectStore', () => {
  let store: S3ObjectStore;

  beforeEach(() => {
    store = new S3ObjectStore(SETTINGS);
  });

  afterEach(() => {
    jest.restoreAllMocks();
    store.onModuleDestroy();
  });

  it('copies inside the bucket with a percent-encoded copy source', async () => {
    const send = answer({ [CopyObjectCommand.name]: () => ({}) });

    await store.copy('snapshots', 'acc/1/dir/a b+c?(1).txt', 'acc/2/dir/a b+c?(1).txt', 10);

    expect(send.mock.calls[0][0].input).toEqual({ Bucket: 'snapshots', Key: 'acc/2/dir/a b+c?(1).txt', CopySource: 'snapshots/acc/1/dir/a%20b%2Bc%3F%281%29.txt' });
  });

  it('copies objects above 5 GiB part by part', async () => {
    const ranges: string[] = [];
    answer({
      [CreateMultipartUploadCommand.name]: () => ({ UploadId: 'upload-1' }),
      [UploadPartCopyCommand.name]: (input) => {
        ranges.push(String(input.CopySourceRange));
        return { CopyPartResult: { ETag: `"etag-${String(input.PartNumber)}"` } };
      },
      [CompleteMultipartUploadCommand.name]: (input) => {
        expect(input).toMatchObject({ UploadId: 'upload-1', MultipartUpload: { Parts: expect.arrayContaining([{ PartNumber: 6, ETag: '"etag-6"' }]) } });
        return {};
      },
    });

    await store.copy('snapshots', 'big/1/disk.img', 'big/2/disk.img', 5 * GIB + 10);

    expect(ranges).toHaveLength(6);
    expect(ranges[0]).toBe(`bytes=0-${GIB - 1}`);
    expect(ranges[5]).toBe(`bytes=${5 * GIB}-${5 * GIB + 9}`);
  });

  it('reports refused credentials without repeating anything the service sent back', async () => {
    answer({
      [GetObjectCommand.name]: () => {
        throw serviceError('SignatureDoesNotMatch', 403, `signature mismatch for ${SETTINGS.accessKeyId} / ${SETTINGS.secretAccessKey}`);
      },
    });

    const error = (await store.get('snapshots', 'key').catch((caught: unknown) => caught)) as Error;

    expect(error).toBeInstanceOf(StorageAccessDeniedError);
    expect(error.message).not.toContain(SETTINGS.accessKeyId);
    expect(error.message).not.toContain(SETTINGS.secretAccessKey);
    expect(JSON.stringify(error)).not.toContain('SECRET');
  });

  it('maps missing objects, missing buckets and unreachable servers to their domain errors', async () => {
    answer({
      [GetObjectCommand.name]: () => {
        throw serviceError('NoSuchKey', 404, 'The specified key does not exist.');
      },
      [ListObjectsV2Command.name]: (input) => {
        if (input.Bucket === 'gone') throw serviceError('NoSuchBucket', 404, 'The specified bucket does not exist');
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
      },
    });

    await expect(store.get('snapshots', 'missing')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.list('gone', '')).rejects.toBeInstanceOf(BucketNotFoundError);
    await expect(store.list('snapshots', '')).rejects.toBeInstanceOf(StorageUnavailableError);
  });

  it('turns a truncated listing into a page with a cursor', async () => {
    const send = answer({
      [ListObjectsV2Command.name]: () => ({
        Contents: [{ Key: 'p/a', Size: 3, LastModified: new Date(0) }],
        IsTruncated: true,
        NextContinuationToken: 'token-2',
      }),
    });

    const page = await store.list('snapshots', 'p/', { limit: 5000, cursor: 'token-1' });

    expect(page).toEqual({ objects: [{ key: 'p/a', size: 3, lastModified: new Date(0) }], nextCursor: 'token-2' });
    expect(send.mock.calls[0][0].input).toEqual({ Bucket: 'snapshots', Prefix: 'p/', ContinuationToken: 'token-1', MaxKeys: 1000 });
  });
});
