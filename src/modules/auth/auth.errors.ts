import { NotFoundError, UnauthenticatedError } from '../../common/domain-error';

export class InvalidCredentialsError extends UnauthenticatedError {
  constructor() {
    super('Invalid email or password');
  }
}

export class InvalidBearerTokenError extends UnauthenticatedError {
  constructor() {
    super('Missing, invalid, expired or revoked bearer token');
  }
}

export class ApiTokenNotFoundError extends NotFoundError {
  constructor() {
    super('API token not found');
  }
}
