import { ConflictError } from '../../common/domain-error';

export const SANDBOX_STATUSES = ['creating', 'running', 'terminated', 'error'] as const;
export type SandboxStatus = (typeof SANDBOX_STATUSES)[number];
export type EndedSandboxStatus = Extract<SandboxStatus, 'terminated' | 'error'>;

/** Every move a sandbox may make; an ended sandbox never comes back. */
const TRANSITIONS: Record<SandboxStatus, readonly SandboxStatus[]> = {
  creating: ['running', 'terminated', 'error'],
  running: ['terminated', 'error'],
  terminated: [],
  error: [],
};

/** Statuses in which an engine sandbox may exist for the row. */
export const ACTIVE_SANDBOX_STATUSES: readonly SandboxStatus[] = ['creating', 'running'];

export class IllegalSandboxTransitionError extends ConflictError {
  constructor(from: SandboxStatus, to: SandboxStatus) {
    super(`A ${from} sandbox cannot become ${to}`);
  }
}

export function isActive(status: SandboxStatus): boolean {
  return ACTIVE_SANDBOX_STATUSES.includes(status);
}

/** The statuses from which a sandbox may move to `to`. */
export function statusesLeadingTo(to: SandboxStatus): SandboxStatus[] {
  return SANDBOX_STATUSES.filter((from) => TRANSITIONS[from].includes(to));
}

export function assertTransition(from: SandboxStatus, to: SandboxStatus): void {
  if (!TRANSITIONS[from].includes(to)) throw new IllegalSandboxTransitionError(from, to);
}
