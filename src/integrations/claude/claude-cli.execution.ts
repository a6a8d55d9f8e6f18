import type { Readable } from 'node:stream';
import { Subject } from 'rxjs';
import type { ExecExit, ExecRequest, SandboxProcess } from '../sandbox/sandbox-provider';
import type { ClaudeExecution, ClaudeResult, ResumePoint } from './claude.agent';
import { ClaudeEvent, ExecutionDetachedError, isClaudeMessageType } from './claude.events';
import { endOfRunCode, followArgv, killArgv, type LogStream } from './claude-run-log';
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

/** Runs a command in the run's sandbox. */
export type SandboxExec = (request: ExecRequest) => Promise<SandboxProcess>;

/**
 * One run of the CLI in a sandbox, followed through its log files there (see claude-run-log.ts):
 * two follower processes print stdout and stderr from the offsets already recorded, so a service
 * that restarts resumes where the last one stopped, and the stdout follower's exit code is the
 * agent's. Output is read as stream-json; each event says where its line ends in its log.
 */
export class ClaudeCliExecution implements ClaudeExecution {
  private readonly events = new Subject<ClaudeEvent>();
  readonly events$ = this.events.asObservable();
  readonly result: Promise<ClaudeResult>;
  private readonly followers: SandboxProcess[] = [];
  private cancelled = false;
  private detached = false;
  private startFailed = false;

  /**
   * `launched` settles once the starter exec exists, `started` once the agent runs (both already,
   * when resuming after a restart).
   */
  constructor(
    private readonly exec: SandboxExec,
    private readonly dir: string,
    start: { launched: Promise<unknown>; started: Promise<unknown> },
    private readonly from: ResumePoint,
  ) {
    this.result = this.follow(start).finally(() => this.events.complete());
  }

  async cancel(): Promise<void> {
    this.cancelled = true;
    await this.killAgent();
  }

  /** Stops following, leaving the agent running; `result` then rejects with ExecutionDetachedError. */
  async detach(): Promise<void> {
    this.detached = true;
    await Promise.all(this.followers.map((follower) => follower.kill()));
  }

  private async killAgent(): Promise<void> {
    const killer = await this.exec({ argv: killArgv(this.dir) }).catch(() => undefined);
    drain(killer?.stdout, killer?.stderr);
    await killer?.wait();
  }

  private async follow({ launched, started }: { launched: Promise<unknown>; started: Promise<unknown> }): Promise<ClaudeResult> {
    if (this.detached) throw new ExecutionDetachedError();
    // The followers start as soon as the starter exec exists, not once it has ended (they wait for the agent's pid):
    // an exec less before the first event, and the starter is never queued behind them.
    const following = launched.then(() => this.followBoth(), () => this.followBoth());
    try {
      await started;
    } catch (error) {
      this.startFailed = true;
      await Promise.all(this.followers.map((follower) => follower.kill()));
      await following.catch(() => undefined);
      throw error;
    }
    if (this.cancelled) await this.killAgent();
    const [exit, message, stderrTail] = await following;
    if (this.detached) throw new ExecutionDetachedError();
    return resultOf(exit.exitCode, message ?? (this.from.result as ResultMessage | undefined), stderrTail);
  }

  /**
   * Each follower is read from the moment it exists: one that ends at once (the agent ended while
   * nobody followed it) would otherwise have its output drained, unread, while the other starts.
   */
  private async followBoth(): Promise<[ExecExit, ResultMessage | undefined, string]> {
    const [[exit, message], stderrTail] = await Promise.all([
      this.follower('stdout').then(async (follower) => {
        const { result, endCode } = await this.readStdout(follower.stdout);
        return [await this.ended(follower, endCode), result] as const;
      }),
      this.follower('stderr').then(async (follower) => {
        const { tail, endCode } = await this.readStderr(follower.stdout);
        await this.ended(follower, endCode);
        return tail;
      }),
    ]);
    return [exit, message, stderrTail];
  }

  /**
   * The follower's end: at the wrapper's end-of-run line, which says the agent's exit code, the
   * log is complete and the follower is not waited for: its tail notices the agent's end at its
   * next check (20 ms) and exits by itself, which costs nothing, where killing it would cost an
   * exec on Modal. Otherwise its own exit.
   */
  private async ended(follower: SandboxProcess, endCode: number | undefined): Promise<ExecExit> {
    if (endCode === undefined) return follower.wait();
    follower.stdout.resume();
    return { exitCode: endCode, timedOut: false };
  }

  private async follower(stream: LogStream): Promise<SandboxProcess> {
    const follower = await this.exec({ argv: followArgv(this.dir, stream, this.from.offsets[stream]) });
    drain(follower.stderr);
    this.followers.push(follower);
    if (this.detached || this.startFailed) void follower.kill();
    return follower;
  }

  private async readStdout(stream: Readable): Promise<{ result?: ResultMessage; endCode?: number }> {
    let result: ResultMessage | undefined;
    for await (const line of readStreamJson(stream, { startOffset: this.from.offsets.stdout, isComplete: () => !this.detached && !this.startFailed })) {
      const endCode = line.kind === 'output' ? endOfRunCode(line.line) : undefined;
      if (endCode !== undefined) return { result, endCode };
      if (line.kind === 'json' && line.type === 'result') result = line.payload as ResultMessage;
      this.events.next(stdoutEvent(line));
    }
    return { result };
  }

  /** Streams every stderr line and returns the last few kilobytes, to explain a failure. */
  private async readStderr(stream: Readable): Promise<{ tail: string; endCode?: number }> {
    const tail: string[] = this.from.stderrTail ? [this.from.stderrTail] : [];
    for await (const line of readStreamJson(stream, { startOffset: this.from.offsets.stderr, isComplete: () => !this.detached })) {
      const endCode = line.kind === 'output' ? endOfRunCode(line.line) : undefined;
      if (endCode !== undefined) return { tail: tail.join('\n'), endCode };
      const text = line.kind === 'json' ? JSON.stringify(line.payload) : line.kind === 'output' ? line.line : line.head;
      tail.push(text);
      while (tail.join('\n').length > STDERR_TAIL_BYTES && tail.length > 1) tail.shift();
      this.events.next({ kind: 'stderr', line: text, position: { stream: 'stderr', offset: line.end } });
    }
    return { tail: tail.join('\n') };
  }
}

/** Output nobody needs is still read: an exec's wait() resolves only once its output was delivered. */
function drain(...streams: Array<Readable | undefined>): void {
  for (const stream of streams) stream?.resume();
}

function stdoutEvent(line: ParsedLine): ClaudeEvent {
  const position = { stream: 'stdout' as const, offset: line.end };
  if (line.kind === 'json' && isClaudeMessageType(line.type)) return { kind: 'message', type: line.type, payload: line.payload, position };
  if (line.kind === 'json') return { kind: 'output', line: JSON.stringify(line.payload), position };
  if (line.kind === 'output') return { kind: 'output', line: line.line, position };
  return { kind: 'oversized', bytes: line.bytes, limitBytes: DEFAULT_MAX_LINE_BYTES, position };
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
