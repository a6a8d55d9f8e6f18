import type { Readable } from 'node:stream';
import type { DomainError } from '../../../common/domain-error';
import {
  PathOutsideVolumeError,
  ProviderConflictError,
  ProviderFailureError,
  ProviderInvalidError,
  VolumePathNotFoundError,
} from '../sandbox-provider.errors';
import type { ModalProcessLike, ModalSandboxLike } from './modal-client';
import type { ModalCall } from './modal-errors';
import { bytesReadable, readNonEmpty } from './modal-streams';

/**
 * Shell helpers run inside the sandbox (POSIX sh, readlink -f: present in Debian and busybox
 * images). $1 is the volume root, $2 the path below it. Exit codes: 40 the path resolves outside
 * the volume, 41 not a regular file, 42 not found, 43 not a directory, 44 is a directory, 127 a
 * tool the step needs is missing (GNU find, tar, sha256sum: the caller falls back to simpler steps).
 */
export const PRELUDE = `
root=$1 rel=$2
p=$root/$rel
[ -d "$root" ] || exit 42
realroot=$(readlink -f -- "$root") || exit 42
inside() { r=$(readlink -f -- "$1") || exit 40; case $r in "$realroot"|"$realroot"/*) return 0;; esac; exit 40; }
guard() { d=$1; while [ ! -e "$d" ]; do d=\${d%/*}; [ -n "$d" ] || exit 42; done; inside "$d"; }
`;
/** The bulk steps print this once their checks passed, before they read stdin or write data. */
export const READY_LINE = 'ready\n';
export const TOOLS_MISSING = 127;
/** GNU find can describe entries in one pass; busybox find cannot (it lacks -printf). */
export const REQUIRE_GNU_FIND = `find "$root" -maxdepth 0 -printf '' >/dev/null 2>&1 || exit ${TOOLS_MISSING}`;
export const REQUIRE_GNU_TAR = `case $(tar --version 2>/dev/null) in *'GNU tar'*) ;; *) exit ${TOOLS_MISSING};; esac`;

const ERROR_OUTPUT_LIMIT = 2000;
/** Bytes per stdin write (one RPC each): the SDK's own chunk size for streamed stdin. */
const STDIN_CHUNK_BYTES = 256 * 1024;

export function scriptError(script: string, relative: string, exitCode: number, output: string): DomainError {
  switch (exitCode) {
    case 40:
      return new PathOutsideVolumeError(relative);
    case 41:
      return new ProviderInvalidError('filesystem', `not a regular file: ${relative}`);
    case 42:
      return new VolumePathNotFoundError(relative);
    case 43:
      return new ProviderConflictError('filesystem', `not a directory: ${relative}`);
    case 44:
      return new ProviderConflictError('filesystem', `is a directory: ${relative}`);
    default:
      return new ProviderFailureError('filesystem', `${script} ${relative || '/'} failed (exit ${exitCode}): ${output.trim()}`);
  }
}

export interface StepOptions {
  /** The whole step's budget: the sandbox kills it after this. */
  seconds: number;
  /** Bytes of stderr kept for error messages and for attributing errors to paths. */
  stderrLimit?: number;
}

/**
 * One exec of a shell step, driven through its three streams: stdin written in large chunks (each
 * write is an RPC), stdout read as a Node stream, stderr collected up to a bound meanwhile.
 */
export class ShellStep {
  private readonly stderr: Promise<BoundedText>;

  private constructor(
    private readonly process: ModalProcessLike,
    private readonly call: ModalCall,
    readonly what: string,
    private readonly options: StepOptions,
  ) {
    this.stderr = collectBounded(process.stderr, options.stderrLimit ?? ERROR_OUTPUT_LIMIT);
    this.stderr.catch(() => undefined);
  }

  static async start(sandbox: ModalSandboxLike, call: ModalCall, what: string, argv: string[], options: StepOptions): Promise<ShellStep> {
    const process = await call('filesystem', what, () => sandbox.exec(argv, { mode: 'binary', timeoutMs: options.seconds * 1000 }));
    return new ShellStep(process, call, what, options);
  }

  /**
   * Waits for the ready line and answers the output that follows it, or undefined when the step
   * ended without being ready (its exit code then tells why).
   */
  async ready(): Promise<Readable | undefined> {
    const reader = this.process.stdout.getReader();
    const first = await this.call('filesystem', this.what, () => readPrefix(reader, READY_LINE.length));
    if (first.prefix.length === 0) return undefined;
    if (first.prefix.toString('latin1') !== READY_LINE) {
      await reader.cancel().catch(() => undefined);
      throw new ProviderInvalidError('filesystem', `${this.what}: unexpected output from the sandbox`);
    }
    return bytesReadable(reader, { first: first.rest }).readable;
  }

  /** The whole output as a Node stream (no ready line expected). */
  output(): Readable {
    return bytesReadable(this.process.stdout.getReader()).readable;
  }

  /** Streams source into stdin in large writes, then sends EOF. */
  async send(source: AsyncIterable<Uint8Array>): Promise<number> {
    const { stdin } = this.process;
    return this.call('filesystem', this.what, () => writeCoalesced(stdin.getWriter(), source), this.options.seconds);
  }

  async exit(): Promise<number> {
    return this.call('filesystem', this.what, () => this.process.wait(), this.options.seconds);
  }

  async errorOutput(): Promise<BoundedText> {
    return this.stderr.catch(() => ({ text: '', truncated: true }));
  }
}

export interface BoundedText {
  text: string;
  truncated: boolean;
}

async function writeCoalesced(writer: WritableStreamDefaultWriter<Uint8Array>, source: AsyncIterable<Uint8Array>): Promise<number> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let total = 0;
  const flush = async (): Promise<void> => {
    const data = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    for (let offset = 0; offset < data.length; offset += STDIN_CHUNK_BYTES) await writer.write(data.subarray(offset, offset + STDIN_CHUNK_BYTES));
  };
  try {
    for await (const chunk of source) {
      pending.push(chunk);
      pendingBytes += chunk.byteLength;
      total += chunk.byteLength;
      if (pendingBytes >= STDIN_CHUNK_BYTES) await flush();
    }
    if (pendingBytes > 0) await flush();
    await writer.close();
    return total;
  } finally {
    writer.releaseLock();
  }
}

/** Reads until `length` bytes are in (or the end); bytes beyond them are handed back as rest. */
async function readPrefix(reader: ReadableStreamDefaultReader<Uint8Array>, length: number): Promise<{ prefix: Buffer; rest?: Uint8Array }> {
  let collected = Buffer.alloc(0);
  while (collected.length < length) {
    const chunk = await readNonEmpty(reader);
    if (!chunk) break;
    collected = Buffer.concat([collected, chunk]);
  }
  const rest = collected.length > length ? collected.subarray(length) : undefined;
  return { prefix: collected.subarray(0, length), rest };
}

/** The first `limit` bytes of a stream, read to its end so the process never blocks on it. */
async function collectBounded(stream: ReadableStream<Uint8Array>, limit: number): Promise<BoundedText> {
  const reader = stream.getReader();
  const kept: Uint8Array[] = [];
  let keptBytes = 0;
  let truncated = false;
  for (let chunk = await readNonEmpty(reader); chunk; chunk = await readNonEmpty(reader)) {
    const room = limit - keptBytes;
    if (chunk.byteLength > room) truncated = true;
    if (room > 0) {
      kept.push(chunk.subarray(0, room));
      keptBytes += Math.min(room, chunk.byteLength);
    }
  }
  return { text: Buffer.concat(kept).toString('utf8'), truncated };
}
