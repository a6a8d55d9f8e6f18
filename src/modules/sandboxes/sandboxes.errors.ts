import { ConflictError, InvalidInputError, NotFoundError } from '../../common/domain-error';

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

export class UnknownSecretError extends InvalidInputError {
  constructor(name: string) {
    super(`secrets: no secret named "${name}" is configured (SECRETS_FILE)`);
  }
}

export class SandboxFieldError extends InvalidInputError {
  constructor(field: string, problem: string) {
    super(`${field} ${problem}`);
  }
}
