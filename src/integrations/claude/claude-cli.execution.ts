import type { Readable } from 'node:stream';
import { Subject } from 'rxjs';
import type { SandboxProcess } from '../sandbox/sandbox-provider';
import type { ClaudeExecution, ClaudeResult } from './claude.agent';
import { ClaudeEvent, isClaudeMessageType } from './claude.events';
import { DEFAULT_MAX_LINE_BYTES, ParsedLine, readStreamJson } from './stream-json-reader';

const STDERR_TAIL_BYTES = 4096;

/** The `result` message the CLI prints last. */
interface ResultMessage {
  subtype?: string;
  is_error?: boolean;
  result?: string;
  session_id?: string;
  total_cost_usd?: number;
  usage?: Record<string, unknown>;
  num_turns?: number;
}

/** One run of the CLI in a sandbox: its output read as stream-json, its end interpreted. */
export class ClaudeCliExecution implements ClaudeExecution {
  private readonly events = new Subject<ClaudeEvent>();
  readonly events$ = this.events.asObservable();
  readonly result: Promise<ClaudeResult>;
  private process?: SandboxProcess;
  private cancelled = false;

  constructor(started: Promise<SandboxProcess>) {
    this.result = this.follow(started).finally(() => this.events.complete());
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.process?.kill();
  }

  private async follow(started: Promise<SandboxProcess>): Promise<ClaudeResult> {
    const process = await started;
    this.process = process;
    if (this.cancelled) await process.kill();
    const [exit, message, stderrTail] = await Promise.all([process.wait(), this.readStdout(process.stdout), this.readStderr(process.stderr)]);
    return resultOf(exit.exitCode, message, stderrTail);
  }

  private async readStdout(stream: Readable): Promise<ResultMessage | undefined> {
    let result: ResultMessage | undefined;
    for await (const line of readStreamJson(stream)) {
      if (line.kind === 'json' && line.type === 'result') result = line.payload as ResultMessage;
      this.events.next(stdoutEvent(line));
    }
    return result;
  }

  /** Streams every stderr line and returns the last few kilobytes, to explain a failure. */
  private async readStderr(stream: Readable): Promise<string> {
    const tail: string[] = [];
    for await (const line of readStreamJson(stream)) {
      const text = line.kind === 'json' ? JSON.stringify(line.payload) : line.kind === 'output' ? line.line : line.head;
      tail.push(text);
      while (tail.join('\n').length > STDERR_TAIL_BYTES && tail.length > 1) tail.shift();
      this.events.next({ kind: 'stderr', line: text });
    }
    return tail.join('\n');
  }
}

function stdoutEvent(line: ParsedLine): ClaudeEvent {
  if (line.kind === 'json' && isClaudeMessageType(line.type)) return { kind: 'message', type: line.type, payload: line.payload };
  if (line.kind === 'json') return { kind: 'output', line: JSON.stringify(line.payload) };
  if (line.kind === 'output') return { kind: 'output', line: line.line };
  return { kind: 'oversized', bytes: line.bytes, limitBytes: DEFAULT_MAX_LINE_BYTES };
}

function resultOf(exitCode: number, message: ResultMessage | undefined, stderrTail: string): ClaudeResult {
  return {
    status: isSuccess(message) ? 'succeeded' : 'failed',
    error: errorOf(message, stderrTail),
    exitCode,
    sessionId: message?.session_id ?? null,
    result: message?.result ?? null,
    totalCostUsd: message?.total_cost_usd ?? null,
    usage: message?.usage ?? null,
    numTurns: message?.num_turns ?? null,
  };
}

function isSuccess(message: ResultMessage | undefined): boolean {
  return message !== undefined && !message.is_error && (!message.subtype || message.subtype === 'success');
}

function errorOf(message: ResultMessage | undefined, stderrTail: string): string | null {
  if (!message) return `Claude exited without a result. ${stderrTail.trim() || 'No error output.'}`.trim();
  if (isSuccess(message)) return null;
  return `${message.subtype ?? 'error'}: ${message.result ?? stderrTail}`.trim();
}
