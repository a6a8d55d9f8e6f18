import type { Observable } from 'rxjs';
import type { ClaudeEvent } from './claude.events';
import type { LogOffsets } from './claude-run-log';

/** Where a run happens: the engine's sandbox, the directory to work in and where the volume is mounted. */
export interface ClaudeSandbox {
  providerSandboxId: string;
  workdir: string;
  volumeMountPath: string;
}

export interface ClaudeRunOptions {
  prompt: string;
  /** The `session_id` of an earlier run on the same volume, to continue its conversation. */
  resumeSessionId?: string;
  /** Defaults to the configured ANTHROPIC_MODEL, else the CLI's own default. */
  model?: string;
  maxTurns?: number;
  allowedTools?: string[];
  disallowedTools?: string[];
  appendSystemPrompt?: string;
  includePartialMessages?: boolean;
  /**
   * The run's model gateway token, to be given only when modelGatewayUnavailableReason() is null:
   * Claude then reaches the model through the gateway and never sees the operator's credentials.
   */
  modelGatewayToken?: string;
}

export interface ClaudeResult {
  status: 'succeeded' | 'failed';
  /** Why it failed, for a person: Claude's own error, else the end of its error output. */
  error: string | null;
  exitCode: number;
  sessionId: string | null;
  result: string | null;
  totalCostUsd: number | null;
  usage: Record<string, unknown> | null;
  numTurns: number | null;
}

/** One Claude run. Subscribe to events$ at once: it is hot and replays nothing. */
export interface ClaudeExecution {
  /** Completes once the process has exited and its output has been read. */
  events$: Observable<ClaudeEvent>;
  /**
   * Settles after events$ completes; rejects when Claude could not be started, and with
   * ExecutionDetachedError after detach().
   */
  result: Promise<ClaudeResult>;
  /** Kills Claude (or, if it is still starting, as soon as it has started). */
  cancel(): Promise<void>;
  /** Stops following the run and leaves Claude running, for a service that stops: the next one resumes it. */
  detach(): Promise<void>;
}

/** Where a run's output was read up to, as recorded with its events: following resumes there. */
export interface ResumePoint {
  offsets: LogOffsets;
  /** The payload of the `result` message, when it was recorded before the restart. */
  result?: Record<string, unknown>;
  /** The last recorded stderr lines, to explain a failure. */
  stderrTail: string;
}

export const START_OF_RUN: ResumePoint = { offsets: { stdout: 0, stderr: 0 }, stderrTail: '' };

/** The Claude Code agent; an abstract class so that it can be injected and replaced. */
export abstract class ClaudeAgent {
  /** Whether model credentials are configured at all; runs are refused (503) otherwise. */
  abstract isConfigured(): boolean;
  /** Tells an operator which variables to set; contains no values. */
  abstract missingCredentialsMessage(): string;
  /** Why runs cannot go through the model gateway (their process then gets the credentials), or null. */
  abstract modelGatewayUnavailableReason(): string | null;
  /** Starts Claude for the run; it runs detached from the service and outlives it. */
  abstract start(sandbox: ClaudeSandbox, runId: string, options: ClaudeRunOptions): ClaudeExecution;
  /** Follows a run started earlier (by a service that has since restarted) from where its output was read. */
  abstract resume(sandbox: ClaudeSandbox, runId: string, from: ResumePoint): ClaudeExecution;
  /** Kills the run's agent, wherever it is followed from (a cancel that reached another instance). */
  abstract kill(sandbox: ClaudeSandbox, runId: string): Promise<void>;
}
