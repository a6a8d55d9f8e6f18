import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Logger, type OnModuleDestroy } from '@nestjs/common';
import { PassThrough, type Readable } from 'node:stream';
import type { AppConfig } from '../../config/app-config';
import { DomainError } from '../../common/domain-error';
import {
  BucketNotFoundError,
  ObjectNotFoundError,
  StorageAccessDeniedError,
  StorageFailureError,
  type StorageOperation,
  StorageUnavailableError,
} from './object-store.errors';
import { listLimit, type ListOptions, type ObjectListing, ObjectStore } from './object-store';

export type S3Settings = AppConfig['storage']['s3'];

const MIN_PART_BYTES = 8 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** Parts in flight per upload; with MIN_PART_BYTES this bounds an upload's buffers to ~16-24 MB. */
const PARTS_IN_FLIGHT = 2;
const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
/** CopyObject copies at most 5 GiB; larger objects are copied part by part. */
const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3;
const COPY_PART_BYTES = 1024 ** 3;
const NETWORK_ERROR_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'ServiceUnavailable', 'SlowDown']);
const ACCESS_ERROR_NAMES = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken']);

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/**
 * S3-compatible object storage (AWS S3, MinIO, Cloudflare R2). Uploads are multipart and streamed;
 * errors become domain errors built only from the error name and status, never from SDK text, so
 * nothing the SDK echoes (signatures, key ids) can reach a log line or an API answer.
 */
export class S3ObjectStore extends ObjectStore implements OnModuleDestroy {
  readonly kind = 's3';
  private readonly logger = new Logger(S3ObjectStore.name);
  private readonly client: S3Client;

  constructor(settings: S3Settings) {
    super();
    this.client = new S3Client(clientConfig(settings));
    this.logger.log(`object storage: S3 at ${settings.endpoint ?? 'AWS'} (region ${settings.region}, ${settings.forcePathStyle ? 'path' : 'virtual-host'} style)`);
  }

  onModuleDestroy(): void {
    this.client.destroy();
  }

  async put(bucket: string, key: string, body: Readable, size?: number): Promise<void> {
    let bodyError: unknown;
    body.once('error', (error) => (bodyError = error));
    const upload = new Upload({
      client: this.client,
      params: { Bucket: bucket, Key: key, Body: body },
      partSize: size === undefined ? MIN_PART_BYTES : Math.max(MIN_PART_BYTES, Math.ceil(size / MAX_PARTS)),
      queueSize: PARTS_IN_FLIGHT,
    });
    try {
      await upload.done();
    } catch (error) {
      // A failing body (the caller's source) is the cause; report it rather than what the SDK made of it.
      throw bodyError ?? translateS3Error(error, 'put', bucket, key);
    }
  }

  async get(bucket: string, key: string): Promise<Readable> {
    const response = await this.send('get', bucket, key, () => this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key })));
    return translateBodyErrors(response.Body as Readable, bucket, key);
  }

  async copy(bucket: string, fromKey: string, toKey: string, size?: number): Promise<void> {
    const source = `${encodeURIComponent(bucket)}/${encodeKey(fromKey)}`;
    await this.send('copy', bucket, fromKey, async () => {
      if (size !== undefined && size > MAX_SINGLE_COPY_BYTES) await this.copyInParts(bucket, source, toKey, size);
      else await this.client.send(new CopyObjectCommand({ Bucket: bucket, Key: toKey, CopySource: source }));
    });
  }

  async list(bucket: string, prefix: string, options: ListOptions = {}): Promise<ObjectListing> {
    const response = await this.send('list', bucket, prefix, () =>
      this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: options.cursor, MaxKeys: listLimit(options.limit) }),
      ),
    );
    return {
      objects: (response.Contents ?? []).map((object) => ({ key: object.Key ?? '', size: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) })),
      ...(response.IsTruncated && response.NextContinuationToken ? { nextCursor: response.NextContinuationToken } : {}),
    };
  }

  async delete(bucket: string, key: string): Promise<void> {
    await this.send('delete', bucket, key, () => this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })));
  }

  private async copyInParts(bucket: string, source: string, toKey: string, size: number): Promise<void> {
    const target = { Bucket: bucket, Key: toKey };
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand(target));
    try {
      const parts = [];
      for (let start = 0, partNumber = 1; start < size; start += COPY_PART_BYTES, partNumber += 1) {
        const range = `bytes=${start}-${Math.min(start + COPY_PART_BYTES, size) - 1}`;
        const { CopyPartResult } = await this.client.send(
          new UploadPartCopyCommand({ ...target, UploadId, PartNumber: partNumber, CopySource: source, CopySourceRange: range }),
        );
        parts.push({ PartNumber: partNumber, ETag: CopyPartResult?.ETag });
      }
      await this.client.send(new CompleteMultipartUploadCommand({ ...target, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (error) {
      await this.client.send(new AbortMultipartUploadCommand({ ...target, UploadId })).catch(() => undefined);
      throw error;
    }
  }

  private async send<T>(operation: StorageOperation, bucket: string, key: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw translateS3Error(error, operation, bucket, key);
    }
  }
}

function clientConfig(settings: S3Settings): S3ClientConfig {
  const { endpoint, region, accessKeyId, secretAccessKey, forcePathStyle } = settings;
  return {
    region,
    endpoint,
    forcePathStyle,
    // Without explicit keys the SDK's default chain applies (instance role, shared config).
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
    // MinIO, R2 and older S3-compatible servers reject the newer default flexible checksums.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

/** CopySource is a URL path: every key segment percent-encoded, '/' kept. */
function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** A connection lost while the body is read surfaces as a storage error naming the object. */
function translateBodyErrors(body: Readable, bucket: string, key: string): Readable {
  const output = new PassThrough();
  body.on('error', (error) => output.destroy(translateS3Error(error, 'get', bucket, key)));
  output.on('close', () => body.destroy());
  return body.pipe(output);
}

export function translateS3Error(error: unknown, operation: StorageOperation, bucket: string, key: string): Error {
  if (error instanceof DomainError) return error;
  const { name = 'Error', $metadata } = (error ?? {}) as SdkError;
  const code = (error as SdkError | undefined)?.code ?? networkCodeInMessage(error);
  const status = $metadata?.httpStatusCode;
  if (name === 'NoSuchBucket') return new BucketNotFoundError(bucket);
  if (name === 'NoSuchKey' || (name === 'NotFound' && operation !== 'list') || (status === 404 && operation !== 'list')) {
    return new ObjectNotFoundError(bucket, key);
  }
  if (ACCESS_ERROR_NAMES.has(name) || status === 403) return new StorageAccessDeniedError(operation, bucket);
  if (NETWORK_ERROR_NAMES.has(name) || (code && NETWORK_ERROR_CODES.has(code)) || status === 503) {
    return new StorageUnavailableError(operation, bucket, code ?? name);
  }
  if (code === 'ERR_STREAM_PREMATURE_CLOSE') return new StorageUnavailableError(operation, bucket, 'connection lost');
  return new StorageFailureError(operation, bucket, key, status ? `${name}, HTTP ${status}` : name);
}

/**
 * A socket error created in another VM realm (as under Jest) fails the SDK's `instanceof Error`
 * and reaches us flattened into the text of a wrapper error; its code is still recognisable there.
 */
function networkCodeInMessage(error: unknown): string | undefined {
  const message = (error as SdkError | undefined)?.message ?? '';
  return [...NETWORK_ERROR_CODES].find((code) => message.includes(code));
}
