/** The message types of the CLI's stream-json output; every other line is plain output. */
export const CLAUDE_MESSAGE_TYPES = ['system', 'assistant', 'user', 'stream_event', 'result'] as const;
export type ClaudeMessageType = (typeof CLAUDE_MESSAGE_TYPES)[number];

/** Where the line an event came from ends in the run's log: recorded with the event, reading resumes there. */
export interface LogPosition {
  stream: 'stdout' | 'stderr';
  offset: number;
}

/** What a Claude run produces, in order. */
export type ClaudeEvent = (
  /** One of Claude's messages, unchanged. */
  | { kind: 'message'; type: ClaudeMessageType; payload: Record<string, unknown> }
  /** A stdout line that is not one of Claude's messages (JSON of another type is given as its text). */
  | { kind: 'output'; line: string }
  | { kind: 'stderr'; line: string }
  /** A stdout line over the size limit, dropped so that memory stays bounded. */
  | { kind: 'oversized'; bytes: number; limitBytes: number }
) & { position?: LogPosition };

/** The service stopped following a run whose agent goes on (see ClaudeExecution.detach). */
export class ExecutionDetachedError extends Error {
  constructor() {
    super('no longer following this run');
  }
}

export function isClaudeMessageType(type: string): type is ClaudeMessageType {
  return (CLAUDE_MESSAGE_TYPES as readonly string[]).includes(type);
}
