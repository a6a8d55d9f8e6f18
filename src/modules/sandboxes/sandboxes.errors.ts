import { ConflictError, DomainError, InvalidInputError, NotFoundError, UpstreamError } from '../../common/domain-error';

export class SandboxNotFoundError extends NotFoundError {
  constructor() {
    super('Sandbox not found');
  }
}

export class SandboxNotRunningError extends ConflictError {
  constructor(status: string) {
    super(`The sandbox is ${status}, not running`);
  }
}

export class SandboxFieldError extends InvalidInputError {
  constructor(field: string, problem: string) {
    super(`${field} ${problem}`);
  }
}

/** The snapshot taken before termination failed; the sandbox keeps running so nothing is lost. */
export class FinalSyncFailedError extends UpstreamError {
  constructor(cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    const details = cause instanceof DomainError ? cause.details : undefined;
    super(`The workspace snapshot before termination failed, so the sandbox is still running: ${reason}. Retry, terminate with force=true, or with sync=false.`, details);
  }
}
