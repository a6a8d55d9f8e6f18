import { ConflictError, NotFoundError, UnavailableError } from '../../common/domain-error';

export class RunNotFoundError extends NotFoundError {
  constructor() {
    super('Run not found');
  }
}

export class RunAlreadyActiveError extends ConflictError {
  constructor(activeRunId: string) {
    super('A run is already active in this sandbox; wait for it or cancel it', { active_run_id: activeRunId });
  }
}

export class ModelNotConfiguredError extends UnavailableError {}
