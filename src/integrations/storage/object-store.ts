import type { Readable } from 'node:stream';

export interface StoredObject {
  key: string;
  size: number;
  lastModified: Date;
}

export interface ListOptions {
  /** The nextCursor of the previous page. */
  cursor?: string;
  /** At most this many objects (1..1000, default 1000). */
  limit?: number;
}

/** One page of a listing, in key order. */
export interface ObjectListing {
  objects: StoredObject[];
  /** Set when more keys follow; pass it back as `cursor`. */
  nextCursor?: string;
}

export const MAX_LIST_LIMIT = 1000;

/**
 * Object storage (S3-compatible or a local directory), used as a DI token. Implementations stream
 * bodies with bounded memory and translate their failures into the errors of ./object-store.errors.ts.
 */
export abstract class ObjectStore {
  abstract readonly kind: 'local' | 's3';

  /** Stores body under key, replacing any object there; the object appears only once complete. */
  abstract put(bucket: string, key: string, body: Readable, size?: number): Promise<void>;

  /** The object's content; ObjectNotFoundError when there is none. */
  abstract get(bucket: string, key: string): Promise<Readable>;

  /** Copies inside the store without moving the content through this process. */
  abstract copy(bucket: string, fromKey: string, toKey: string, size?: number): Promise<void>;

  abstract list(bucket: string, prefix: string, options?: ListOptions): Promise<ObjectListing>;

  /** Removes the object; removing a missing object is not an error. */
  abstract delete(bucket: string, key: string): Promise<void>;

  /** Every object below prefix, page after page. */
  async *listAll(bucket: string, prefix: string): AsyncGenerator<StoredObject> {
    let cursor: string | undefined;
    do {
      const page = await this.list(bucket, prefix, { cursor });
      yield* page.objects;
      cursor = page.nextCursor;
    } while (cursor !== undefined);
  }
}

export function listLimit(limit: number | undefined): number {
  return Math.min(Math.max(Math.trunc(limit ?? MAX_LIST_LIMIT), 1), MAX_LIST_LIMIT);
}
