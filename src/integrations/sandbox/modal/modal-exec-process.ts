import type { Logger } from '@nestjs/common';
import type { Readable } from 'node:stream';
import type { ExecExit, SandboxProcess } from '../sandbox-provider';
import type { ModalProcessLike } from './modal-client';
import { toProviderError } from './modal-errors';
import { bytesReadable } from './modal-streams';

/**
 * Every exec carries this variable with an id of its own. modal@0.11.1 has no way to signal one
 * exec'd process, so kill() runs a second exec that kills every process (the exec and all the
 * children that inherited its environment) whose environment holds that id.
 */
export const EXEC_MARKER_ENV = 'SANDBOX_EXEC_ID';

/** argv of the killer exec; $1 is the marker value. Needs only sh, tr, grep and /proc. */
export function killByMarkerArgv(marker: string): string[] {
  const script = [
    'for dir in /proc/[0-9]*; do',
    `  if tr '\\000' '\\n' < "$dir/environ" 2>/dev/null | grep -qxF "${EXEC_MARKER_ENV}=$1"; then kill -KILL "\${dir#/proc/}" 2>/dev/null; fi`,
    'done',
    'exit 0',
  ].join('\n');
  return ['sh', '-c', script, 'kill-exec', marker];
}

/** Exit code reported when the exec's own timeout stopped it (as timeout(1) does). */
export const EXEC_TIMEOUT_EXIT_CODE = 124;

export interface ModalExecOptions {
  /** The exec's timeout as given to the SDK, if any. */
  timeoutMs?: number;
  kill: () => Promise<void>;
  logger: Logger;
  now?: () => number;
}

/** A process started with sandbox.exec(), seen through the SandboxProcess contract. */
export class ModalExecProcess implements SandboxProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  private readonly outputDrained: Promise<unknown>;
  private readonly startedAt: number;
  private exit?: Promise<ExecExit>;

  constructor(private readonly execution: ModalProcessLike, private readonly options: ModalExecOptions) {
    this.startedAt = this.now();
    const onSourceError = (error: unknown) => this.options.logger.warn(`exec output stream ended early: ${(error as Error)?.message ?? error}`);
    const stdout = bytesReadable(execution.stdout.getReader(), { onSourceError });
    const stderr = bytesReadable(execution.stderr.getReader(), { onSourceError });
    this.stdout = stdout.readable;
    this.stderr = stderr.readable;
    this.outputDrained = Promise.all([stdout.drained, stderr.drained]);
  }

  wait(): Promise<ExecExit> {
    this.exit ??= this.waitForExit();
    return this.exit;
  }

  async kill(): Promise<void> {
    await this.options.kill();
  }

  private async waitForExit(): Promise<ExecExit> {
    let exit: ExecExit;
    try {
      const exitCode = await this.execution.wait();
      exit = { exitCode, timedOut: exitCode !== 0 && this.pastTimeout() };
    } catch (error) {
      // At its deadline the SDK gives up waiting with a plain error; Modal has stopped the process.
      if (!this.pastTimeout()) throw toProviderError('exec', error, this.options.logger);
      exit = { exitCode: EXEC_TIMEOUT_EXIT_CODE, timedOut: true };
    }
    await this.outputDrained;
    return exit;
  }

  private pastTimeout(): boolean {
    return this.options.timeoutMs !== undefined && this.now() - this.startedAt >= this.options.timeoutMs;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}
