import { constants, fstatSync, openSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';

/** Something log bytes go to: writes what it can at once and returns how many bytes; never waits. */
export interface LogWriter {
  /** How warnings name it, e.g. `stdout (a file)`. */
  readonly name: string;
  /** Throws the system error (`ENOSPC`, `EAGAIN`, `EPIPE`…) when it takes nothing. */
  write(bytes: Buffer): number;
}

export interface DroppingLogDestinationOptions {
  writer: LogWriter;
  /** Log bytes kept while the writer refuses them; lines beyond are dropped and counted. */
  maxBufferedBytes: number;
  /** Where warnings about failures and dropped lines go (stderr in the service). */
  warn: (message: string) => void;
  /** At most one warning per interval; what happened meanwhile is summed up in the next one. */
  warnIntervalMs?: number;
  /** How long kept lines wait before the writer is tried again. */
  retryDelayMs?: number;
  now?: () => number;
}

export interface LogDestinationStats {
  droppedLines: number;
  bufferedBytes: number;
  /** The error the writer last failed with, while it is failing. */
  failing?: string;
}

/** Errors after which the same bytes may be accepted later (a reader catching up, space freed): kept and retried. */
const RETRYABLE = new Set(['EAGAIN', 'EWOULDBLOCK', 'EINTR', 'EBUSY', 'ENOSPC', 'EDQUOT']);
/** A reader that is merely slower than the service: lines are kept, no warning unless some are dropped. */
const BACKPRESSURE = new Set(['EAGAIN', 'EWOULDBLOCK', 'EINTR', 'EBUSY']);
const MAX_WRITE_BYTES = 64 * 1024;
const PINO_WARN_LEVEL = 40;

/**
 * A pino destination that never blocks the service on its log: writes go to a writer that never
 * waits (see openLogWriter); what it refuses is kept up to `maxBufferedBytes` and retried on a
 * timer, and lines beyond are dropped and counted. Warnings (rate limited) say how many. Its timers
 * never keep the process alive, so a stuck destination cannot hold up shutdown either.
 */
export class DroppingLogDestination {
  private readonly queue: Buffer[] = [];
  /** Bytes of queue[0] already written. */
  private headOffset = 0;
  private bufferedBytes = 0;
  private failure?: { code: string; message: string };
  private failureWarned = false;
  private retryTimer?: NodeJS.Timeout;
  private droppedTotal = 0;
  private droppedSinceWarning = 0;
  private droppedSinceFailure = 0;
  private lastWarningAt = Number.NEGATIVE_INFINITY;
  private warningTimer?: NodeJS.Timeout;
  private closed = false;
  private readonly writer: LogWriter;
  private readonly maxBufferedBytes: number;
  private readonly warnIntervalMs: number;
  private readonly retryDelayMs: number;
  private readonly now: () => number;

  constructor(private readonly options: DroppingLogDestinationOptions) {
    this.writer = options.writer;
    this.maxBufferedBytes = options.maxBufferedBytes;
    this.warnIntervalMs = options.warnIntervalMs ?? 10_000;
    this.retryDelayMs = options.retryDelayMs ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  /** pino's entry point: one log line. Never throws, never waits. */
  write(line: string): boolean {
    if (this.closed) return false;
    const bytes = Buffer.from(line, 'utf8');
    if (this.bufferedBytes + bytes.length > this.maxBufferedBytes) {
      this.drop(1);
      return false;
    }
    this.queue.push(bytes);
    this.bufferedBytes += bytes.length;
    // While the writer fails, the retry timer writes; trying on every line would only add syscalls.
    if (this.failure) this.scheduleRetry();
    else this.flush();
    return true;
  }

  /** pino calls it after a fatal line: writes what the writer takes now, without waiting for the rest. */
  flushSync(): void {
    this.flush();
  }

  stats(): LogDestinationStats {
    return { droppedLines: this.droppedTotal, bufferedBytes: this.bufferedBytes, ...(this.failure ? { failing: this.failure.code } : {}) };
  }

  /** At exit: one last attempt, then what is left counts as dropped and a final warning says so. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.warningTimer);
    if (this.queue.length > 0) this.drop(this.queue.length, { discardQueued: true });
    this.warnNow();
  }

  private flush(): void {
    while (this.queue.length > 0) {
      let written: number;
      try {
        written = this.writer.write(this.nextBatch());
      } catch (error) {
        this.failed(error as NodeJS.ErrnoException);
        return;
      }
      if (written <= 0) {
        this.failed(Object.assign(new Error('the destination took no bytes'), { code: 'EAGAIN' }));
        return;
      }
      this.consume(written);
    }
    if (this.failure) this.recovered();
  }

  /** The unwritten bytes of the first lines, at most MAX_WRITE_BYTES unless one line is longer. */
  private nextBatch(): Buffer {
    const head = this.headOffset > 0 ? this.queue[0].subarray(this.headOffset) : this.queue[0];
    if (this.queue.length === 1 || head.length >= MAX_WRITE_BYTES) return head;
    const parts = [head];
    let size = head.length;
    for (let index = 1; index < this.queue.length && size + this.queue[index].length <= MAX_WRITE_BYTES; index++) {
      parts.push(this.queue[index]);
      size += this.queue[index].length;
    }
    return parts.length === 1 ? head : Buffer.concat(parts, size);
  }

  private consume(written: number): void {
    let left = written;
    while (left > 0 && this.queue.length > 0) {
      const rest = this.queue[0].length - this.headOffset;
      if (left < rest) {
        this.headOffset += left;
        return;
      }
      left -= rest;
      this.bufferedBytes -= this.queue[0].length;
      this.queue.shift();
      this.headOffset = 0;
    }
  }

  private failed(error: NodeJS.ErrnoException): void {
    const code = error.code ?? 'EIO';
    const starting = !this.failure;
    this.failure = { code, message: error.message };
    if (starting && !BACKPRESSURE.has(code)) this.requestWarning();
    // The destination is gone (closed pipe, bad descriptor): what was kept cannot be written later.
    if (!RETRYABLE.has(code)) this.drop(this.queue.length, { discardQueued: true });
    this.scheduleRetry();
  }

  private recovered(): void {
    const dropped = this.droppedSinceFailure;
    this.failure = undefined;
    this.droppedSinceFailure = 0;
    // Whoever reads the log sees the gap explained; best effort, the destination just took bytes.
    if (dropped > 0) this.tryWrite(this.gapNotice(dropped));
    if (this.failureWarned) this.requestWarning();
  }

  private gapNotice(dropped: number): Buffer {
    const message = `${dropped} log lines were dropped while the log destination could not be written`;
    return Buffer.from(`${JSON.stringify({ level: PINO_WARN_LEVEL, time: this.now(), context: 'LogDestination', dropped_log_lines: dropped, msg: message })}\n`);
  }

  private tryWrite(bytes: Buffer): void {
    try {
      this.writer.write(bytes);
    } catch {
      // A notice about lost lines is not worth keeping when even it cannot be written.
    }
  }

  private drop(lines: number, { discardQueued = false } = {}): void {
    if (discardQueued) {
      this.queue.length = 0;
      this.headOffset = 0;
      this.bufferedBytes = 0;
    }
    if (lines === 0) return;
    this.droppedTotal += lines;
    this.droppedSinceWarning += lines;
    this.droppedSinceFailure += lines;
    this.requestWarning();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed || this.queue.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flush();
    }, this.retryDelayMs);
    this.retryTimer.unref();
  }

  private requestWarning(): void {
    if (this.warningTimer || this.closed) return;
    const wait = this.lastWarningAt + this.warnIntervalMs - this.now();
    if (wait <= 0) {
      this.warnNow();
      return;
    }
    this.warningTimer = setTimeout(() => {
      this.warningTimer = undefined;
      this.warnNow();
    }, wait);
    this.warningTimer.unref();
  }

  private warnNow(): void {
    const message = this.warningText();
    if (!message) return;
    this.lastWarningAt = this.now();
    this.droppedSinceWarning = 0;
    try {
      this.options.warn(message);
    } catch {
      // Warnings are best effort: stderr may be failing too.
    }
  }

  private warningText(): string | undefined {
    const name = this.writer.name;
    const dropped =
      this.droppedTotal === 0 ? 'no log line dropped yet' : `${this.droppedSinceWarning} log lines dropped since the last warning, ${this.droppedTotal} in total`;
    if (this.failure && (this.droppedSinceWarning > 0 || !BACKPRESSURE.has(this.failure.code))) {
      this.failureWarned = true;
      const cause = this.failure.message.includes(this.failure.code) ? this.failure.message : `${this.failure.code}: ${this.failure.message}`;
      const next = this.closed ? 'the service is exiting' : `up to ${this.maxBufferedBytes} bytes of log lines are kept and retried, later lines are dropped and counted`;
      return `log destination ${name} cannot be written (${cause}): ${dropped}; ${next}`;
    }
    if (!this.failure && this.failureWarned) {
      this.failureWarned = false;
      return `log destination ${name} is written again: ${dropped}`;
    }
    if (this.droppedSinceWarning > 0) return `log destination ${name}: ${dropped}`;
    return undefined;
  }
}

/**
 * A writer for an inherited descriptor (stdout, stderr) that never waits:
 * - a file or a terminal: written directly (a full disk fails at once with ENOSPC);
 * - a pipe or FIFO: reopened through /proc in non-blocking mode, so a reader that stops reading
 *   gives EAGAIN instead of a blocked service, without changing the mode others share;
 * - a socket (systemd's journal stream, a log shipper): made non-blocking.
 */
export function openLogWriter(fd: number, label: string): LogWriter {
  let stats;
  try {
    stats = fstatSync(fd);
  } catch (error) {
    return failingWriter(`${label} (unusable)`, error as Error);
  }
  if (stats.isFIFO()) return descriptorWriter(`${label} (a pipe)`, reopenNonBlocking(fd) ?? fd);
  if (stats.isSocket()) return Object.assign(descriptorWriter(`${label} (a socket)`, fd), { handle: makeNonBlocking(fd) });
  return descriptorWriter(`${label} (${stats.isFile() ? 'a file' : 'a device'})`, fd);
}

function descriptorWriter(name: string, fd: number): LogWriter {
  return { name, write: (bytes) => writeSync(fd, bytes) };
}

function failingWriter(name: string, error: Error): LogWriter {
  return {
    name,
    write: () => {
      throw error;
    },
  };
}

/** A descriptor of our own on the same pipe, with O_NONBLOCK; undefined where /proc cannot give one. */
function reopenNonBlocking(fd: number): number | undefined {
  try {
    return openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    // No reader left (ENXIO) or no /proc: the inherited descriptor fails with EPIPE or blocks as before.
    return undefined;
  }
}

/**
 * Node has no fcntl; opening a handle on the socket sets O_NONBLOCK (as process.stdout does for
 * pipes). The handle never reads nor writes and does not keep the process alive; it is kept
 * referenced by the writer so that it is never collected.
 */
function makeNonBlocking(fd: number): Socket | undefined {
  try {
    const socket = new Socket({ fd, readable: false, writable: false });
    socket.unref();
    return socket;
  } catch {
    return undefined;
  }
}

/** Writes a warning to stderr without ever waiting; lost when stderr cannot take it. */
export function stderrWarner(): (message: string) => void {
  const writer = openLogWriter(2, 'stderr');
  return (message) => {
    try {
      writer.write(Buffer.from(`[${new Date().toISOString()}] warning: ${message}\n`));
    } catch {
      // stderr is failing too: nobody could read the warning.
    }
  };
}

let processDestination: DroppingLogDestination | undefined;

/**
 * The service's log: JSON lines on stdout, through a DroppingLogDestination (one per process).
 * Whatever is still kept at exit gets a last non-blocking attempt, then counts as dropped.
 */
export function stdoutLogDestination(maxBufferedBytes: number): DroppingLogDestination {
  if (!processDestination) {
    const destination = new DroppingLogDestination({ writer: openLogWriter(1, 'stdout'), maxBufferedBytes, warn: stderrWarner() });
    process.once('exit', () => destination.close());
    processDestination = destination;
  }
  return processDestination;
}
