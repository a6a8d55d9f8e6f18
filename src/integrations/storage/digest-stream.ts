import { createHash } from 'node:crypto';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ContentMismatchError } from './object-store.errors';

export interface ContentDigest {
  size: number;
  sha256: string;
}

/**
 * Passes bytes through while counting them and computing their SHA-256. Given the expected digest,
 * it fails the stream (before its consumer sees the end) when the content differs, so a consumer
 * that commits on a clean end, like an atomic file write, never commits wrong content.
 */
export class DigestStream extends Transform {
  private readonly hash = createHash('sha256');
  private bytes = 0;
  private digest?: ContentDigest;

  constructor(private readonly expected?: ContentDigest) {
    super();
  }

  /** Available once the stream has ended. */
  result(): ContentDigest {
    if (!this.digest) throw new Error('the digest is known only once the stream has ended');
    return this.digest;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expected && this.bytes > this.expected.size) {
      callback(new ContentMismatchError(this.expected, { size: this.bytes }));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.digest = { size: this.bytes, sha256: this.hash.digest('hex') };
    const { expected } = this;
    if (expected && (expected.size !== this.digest.size || expected.sha256 !== this.digest.sha256)) {
      callback(new ContentMismatchError(expected, this.digest));
      return;
    }
    callback();
  }
}

/** Reads source to its end and returns its size and SHA-256. */
export async function digestOf(source: Readable): Promise<ContentDigest> {
  const digest = new DigestStream();
  digest.resume();
  await pipeline(source, digest);
  return digest.result();
}

/**
 * Feeds source through digest into consume. Whichever side fails first stops the other, and the
 * consumer's error wins (it names the real cause more often than a stream torn down as a result).
 */
export async function streamThrough<T>(source: Readable, digest: DigestStream, consume: (body: Readable) => Promise<T>): Promise<T> {
  const piping = pipeline(source, digest);
  const consuming = consume(digest).catch((error: unknown) => {
    source.destroy();
    digest.destroy();
    throw error;
  });
  const [consumed, piped] = await Promise.allSettled([consuming, piping]);
  if (consumed.status === 'rejected') throw consumed.reason;
  if (piped.status === 'rejected') throw piped.reason;
  return consumed.value;
}
