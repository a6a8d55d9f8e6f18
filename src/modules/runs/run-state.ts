/** The life of a run: every status, what may follow it, and the groups the rest of the service asks about. */
export const RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'interrupted'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const ACTIVE_RUN_STATUSES = ['queued', 'running'] as const satisfies readonly RunStatus[];
export type ActiveRunStatus = (typeof ACTIVE_RUN_STATUSES)[number];
export type TerminalRunStatus = Exclude<RunStatus, ActiveRunStatus>;
export const TERMINAL_RUN_STATUSES = RUN_STATUSES.filter((status): status is TerminalRunStatus => !isActiveRunStatus(status));

/** A run whose conversation a later run may continue: only ended runs, never one still writing to it. */
export const RESUMABLE_RUN_STATUSES: readonly RunStatus[] = TERMINAL_RUN_STATUSES;

const NEXT: Record<RunStatus, readonly RunStatus[]> = {
  queued: ['running', ...TERMINAL_RUN_STATUSES],
  running: TERMINAL_RUN_STATUSES,
  succeeded: [],
  failed: [],
  cancelled: [],
  timed_out: [],
  interrupted: [],
};

export function isActiveRunStatus(status: RunStatus): status is ActiveRunStatus {
  return (ACTIVE_RUN_STATUSES as readonly RunStatus[]).includes(status);
}

export function canMoveRun(from: RunStatus, to: RunStatus): boolean {
  return NEXT[from].includes(to);
}

/** The statuses a run may be in for a move to `to`: the guard of the conditional UPDATE. */
export function statusesBefore(to: RunStatus): RunStatus[] {
  return RUN_STATUSES.filter((from) => canMoveRun(from, to));
}

/** `'a', 'b'` for a fixed SQL predicate (an index definition cannot take parameters). */
export function sqlStatusList(statuses: readonly RunStatus[]): string {
  return statuses.map((status) => `'${status}'`).join(', ');
}

export class IllegalRunTransitionError extends Error {
  constructor(
    readonly runId: string,
    readonly from: RunStatus,
    readonly to: RunStatus,
  ) {
    super(`run ${runId} cannot move from ${from} to ${to}`);
  }
}
