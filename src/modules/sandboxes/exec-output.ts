import type { Readable } from 'node:stream';

/** Collects a stream up to a byte cap, then keeps draining it so the process never blocks. */
export class CappedOutput {
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  truncated = false;

  constructor(private readonly capBytes: number) {}

  collect(stream: Readable): Promise<void> {
    return new Promise((resolve, reject) => {
      stream.on('data', (chunk: Buffer) => this.add(chunk));
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', reject);
    });
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  private add(chunk: Buffer): void {
    const room = this.capBytes - this.bytes;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.truncated ||= kept.length < chunk.length;
    this.chunks.push(kept);
    this.bytes += kept.length;
  }
}
