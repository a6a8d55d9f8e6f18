import { Readable } from 'node:stream';

export interface BytesReadableOptions {
  /** Bytes already taken from the reader, delivered first. */
  first?: Uint8Array;
  /** Runs once the source is exhausted; a rejection fails the stream instead of ending it. */
  beforeEnd?: () => Promise<void>;
  /** The source failed; the stream ends (the caller decides what the failure means). */
  onSourceError?: (error: unknown) => void;
}

export interface BytesReadable {
  readable: Readable;
  /** Resolves when the source has nothing more to give (exhausted, failed, or cancelled). */
  drained: Promise<void>;
}

/**
 * A Node stream fed from one of the SDK's byte streams as the consumer reads it (backpressure is
 * kept: nothing is pulled ahead). Chunks pass through as the same bytes with the same boundaries;
 * nothing is decoded, so a multi-byte character split across chunks arrives intact.
 */
export function bytesReadable(reader: ReadableStreamDefaultReader<Uint8Array>, options: BytesReadableOptions = {}): BytesReadable {
  let markDrained!: () => void;
  const drained = new Promise<void>((resolve) => (markDrained = resolve));
  let first = options.first;

  const readable = new Readable({
    read() {
      if (first) {
        const chunk = first;
        first = undefined;
        this.push(asBuffer(chunk));
        return;
      }
      void pull();
    },
    destroy(error, callback) {
      reader.cancel().catch(() => undefined);
      markDrained();
      callback(error);
    },
  });

  async function pull(): Promise<void> {
    try {
      const chunk = await readNonEmpty(reader);
      if (chunk) {
        readable.push(asBuffer(chunk));
        return;
      }
    } catch (error) {
      options.onSourceError?.(error);
    }
    markDrained();
    if (readable.destroyed) return;
    try {
      await options.beforeEnd?.();
      readable.push(null);
    } catch (error) {
      readable.destroy(error as Error);
    }
  }

  return { readable, drained };
}

/** The next chunk that holds at least one byte, or undefined at the end of the source. */
export async function readNonEmpty(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Uint8Array | undefined> {
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return undefined;
    if (value.byteLength > 0) return value;
  }
}

/** Reads a whole (small) stream, keeping at most `limit` bytes from its end; for error output. */
export async function readTail(stream: ReadableStream<Uint8Array>, limit: number): Promise<string> {
  const reader = stream.getReader();
  let tail = Buffer.alloc(0);
  for (let chunk = await readNonEmpty(reader); chunk; chunk = await readNonEmpty(reader)) {
    tail = Buffer.concat([tail, asBuffer(chunk)]);
    if (tail.length > limit) tail = tail.subarray(tail.length - limit);
  }
  return tail.toString('utf8');
}

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}
