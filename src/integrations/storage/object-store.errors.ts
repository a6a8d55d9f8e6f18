import { InvalidInputError, NotFoundError, UnavailableError, UpstreamError } from '../../common/domain-error';

export type StorageOperation = 'put' | 'get' | 'copy' | 'list' | 'delete';

export class ObjectNotFoundError extends NotFoundError {
  constructor(readonly bucket: string, readonly key: string) {
    super(`object not found: ${bucket}/${key}`, { bucket, key });
  }
}

export class BucketNotFoundError extends NotFoundError {
  constructor(readonly bucket: string) {
    super(`bucket not found: ${bucket}`, { bucket });
  }
}

export class InvalidObjectKeyError extends InvalidInputError {
  constructor(key: string, reason: string) {
    super(`invalid object key ${JSON.stringify(key)}: ${reason}`);
  }
}

/** The storage refused our credentials or the bucket policy denies the operation. */
export class StorageAccessDeniedError extends UpstreamError {
  constructor(operation: StorageOperation, bucket: string) {
    super(`object storage denied ${operation} on bucket ${bucket}; check the storage credentials and bucket policy`, { bucket, operation });
  }
}

/** The storage cannot be reached or asks us to slow down; worth retrying later. */
export class StorageUnavailableError extends UnavailableError {
  constructor(operation: StorageOperation, bucket: string, cause: string) {
    super(`object storage unavailable during ${operation} on bucket ${bucket} (${cause})`, { bucket, operation });
  }
}

export class StorageFailureError extends UpstreamError {
  constructor(operation: StorageOperation, bucket: string, key: string, cause: string) {
    super(`object storage ${operation} of ${bucket}/${key} failed (${cause})`, { bucket, key, operation });
  }
}

/** Content read back does not have the size or SHA-256 it was recorded with. */
export class ContentMismatchError extends UpstreamError {
  constructor(expected: { size: number; sha256: string }, actual: { size: number; sha256?: string }) {
    super(
      actual.sha256 === undefined
        ? `content is longer than the recorded ${expected.size} bytes`
        : `content does not match: expected ${expected.size} bytes with sha256 ${expected.sha256}, got ${actual.size} bytes with sha256 ${actual.sha256}`,
    );
  }
}
