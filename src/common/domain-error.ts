/**
 * Base classes for errors raised by services and adapters. Features subclass them with their own
 * names and messages; the exception filter maps each kind to an HTTP status. Services never throw
 * HttpException.
 */
export abstract class DomainError extends Error {
  abstract readonly kind: DomainErrorKind;
  constructor(message: string, readonly details?: Record<string, unknown>) {
    super(message);
    this.name = new.target.name;
  }
}

export type DomainErrorKind =
  | 'invalid'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'unprocessable'
  | 'bad_gateway'
  | 'unavailable'
  | 'timeout';

export class InvalidInputError extends DomainError {
  readonly kind = 'invalid';
}
export class UnauthenticatedError extends DomainError {
  readonly kind = 'unauthenticated';
}
export class ForbiddenError extends DomainError {
  readonly kind = 'forbidden';
}
export class NotFoundError extends DomainError {
  readonly kind = 'not_found';
}
export class ConflictError extends DomainError {
  readonly kind = 'conflict';
}
export class PayloadTooLargeError extends DomainError {
  readonly kind = 'payload_too_large';
}
export class UnprocessableError extends DomainError {
  readonly kind = 'unprocessable';
}
export class UpstreamError extends DomainError {
  readonly kind = 'bad_gateway';
}
export class UnavailableError extends DomainError {
  readonly kind = 'unavailable';
}
export class DeadlineExceededError extends DomainError {
  readonly kind = 'timeout';
}
