import type { Readable } from 'node:stream';

/** One line of the Claude CLI's `--output-format stream-json` stdout, classified, with where it ends in the stream. */
export type ParsedLine = LineContent & {
  /** Byte offset just after the line (its newline included) from the start of the stream: where reading resumes. */
  end: number;
};

type LineContent =
  /** A JSON object with a string `type` (system, assistant, user, stream_event, result, …), unchanged. */
  | { kind: 'json'; type: string; payload: Record<string, unknown> }
  /** Any other non-empty line (not JSON, or JSON that is not a typed object), decoded as UTF-8. */
  | { kind: 'output'; line: string }
  /** A line longer than the limit: dropped, except for its first bytes, so memory stays bounded. */
  | { kind: 'oversized'; bytes: number; head: string };

export const DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024;
const OVERSIZED_HEAD_BYTES = 1024;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/**
 * Splits raw stdout chunks into lines and parses them. Chunks may be cut anywhere, including inside
 * a multi-byte UTF-8 character: lines are cut at the newline byte, which never occurs inside a
 * multi-byte sequence, and decoded only when complete. Usage: call push() for every chunk and
 * end() once the stream has ended; both return the lines completed so far, in order.
 */
export class StreamJsonReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Set while skipping the rest of an oversized line: its head and total size so far. */
  private oversized: { head: Buffer; bytes: number } | null = null;
  /** Bytes of the stream before the current chunk. */
  private offset: number;

  /** `startOffset`: where in the stream the first chunk starts (reading resumed there after a restart). */
  constructor(
    private readonly maxLineBytes = DEFAULT_MAX_LINE_BYTES,
    startOffset = 0,
  ) {
    this.offset = startOffset;
  }

  push(chunk: Buffer): ParsedLine[] {
    const lines: ParsedLine[] = [];
    let start = 0;
    for (let newline = chunk.indexOf(NEWLINE); newline !== -1; newline = chunk.indexOf(NEWLINE, start)) {
      this.append(chunk.subarray(start, newline));
      this.completeLine(lines, this.offset + newline + 1);
      start = newline + 1;
    }
    this.append(chunk.subarray(start));
    this.offset += chunk.length;
    return lines;
  }

  /** Flushes a final line that had no trailing newline (only once the stream has really ended). */
  end(): ParsedLine[] {
    const lines: ParsedLine[] = [];
    this.completeLine(lines, this.offset);
    return lines;
  }

  private append(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.oversized) {
      this.oversized.bytes += piece.length;
      return;
    }
    this.pending.push(piece);
    this.pendingBytes += piece.length;
    // One byte of slack so that a line of exactly the limit followed by CRLF is still accepted.
    if (this.pendingBytes > this.maxLineBytes + 1) {
      const buffered = Buffer.concat(this.pending, this.pendingBytes);
      this.oversized = { head: Buffer.from(buffered.subarray(0, OVERSIZED_HEAD_BYTES)), bytes: buffered.length };
      this.pending = [];
      this.pendingBytes = 0;
    }
  }

  private completeLine(lines: ParsedLine[], end: number): void {
    if (this.oversized) {
      lines.push({ kind: 'oversized', bytes: this.oversized.bytes, head: this.oversized.head.toString('utf8'), end });
      this.oversized = null;
      return;
    }
    let raw = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    if (raw.length > 0 && raw[raw.length - 1] === CARRIAGE_RETURN) raw = raw.subarray(0, raw.length - 1);
    if (raw.length > this.maxLineBytes) {
      lines.push({ kind: 'oversized', bytes: raw.length, head: raw.subarray(0, OVERSIZED_HEAD_BYTES).toString('utf8'), end });
      return;
    }
    const line = raw.toString('utf8');
    if (line.trim() !== '') lines.push({ ...classify(line), end });
  }
}

function classify(line: string): LineContent {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { kind: 'output', line };
  }
  if (isTypedObject(value)) return { kind: 'json', type: value.type, payload: value };
  return { kind: 'output', line };
}

function isTypedObject(value: unknown): value is Record<string, unknown> & { type: string } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as { type?: unknown }).type === 'string';
}

/**
 * Reads a stream (e.g. the CLI's stdout) line by line, as it arrives, from `startOffset`. A last
 * line without a newline is given only when `isComplete()` says, once the stream ended, that the
 * output is complete (and not merely no longer followed).
 */
export async function* readStreamJson(stream: Readable, options: { maxLineBytes?: number; startOffset?: number; isComplete?: () => boolean } = {}): AsyncGenerator<ParsedLine> {
  const reader = new StreamJsonReader(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES, options.startOffset ?? 0);
  // A reader that stops early (the end-of-run line) leaves the stream to its owner, undestroyed.
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
    yield* reader.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  if (options.isComplete?.() ?? true) yield* reader.end();
}
