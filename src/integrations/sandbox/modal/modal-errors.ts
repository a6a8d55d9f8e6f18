import type { Logger } from '@nestjs/common';
import {
  AlreadyExistsError,
  ClientClosedError,
  ConflictError,
  InvalidError,
  NotFoundError,
  ResourceExhaustedError,
  SandboxFilesystemDirectoryNotEmptyError,
  SandboxFilesystemError,
  SandboxFilesystemFileTooLargeError,
  SandboxFilesystemIsADirectoryError,
  SandboxFilesystemNotADirectoryError,
  SandboxFilesystemNotFoundError,
  SandboxFilesystemPathAlreadyExistsError,
  SandboxFilesystemPermissionError,
  SandboxTimeoutError,
  TimeoutError,
} from 'modal';
import { DomainError } from '../../../common/domain-error';
import {
  ProviderConflictError,
  ProviderExhaustedError,
  ProviderFailureError,
  ProviderInvalidError,
  ProviderNotFoundError,
  type ProviderStep,
  ProviderTimeoutError,
  ProviderUnavailableError,
} from '../sandbox-provider.errors';

type Translate = (step: ProviderStep, message: string) => DomainError;

const notFound: Translate = (step, message) => new ProviderNotFoundError(step, message);
const invalid: Translate = (step, message) => new ProviderInvalidError(step, message);
const conflict: Translate = (step, message) => new ProviderConflictError(step, message);
const exhausted: Translate = (step, message) => new ProviderExhaustedError(step, message);
const timeout: Translate = (step, message) => new ProviderTimeoutError(step, message);
const unavailable: Translate = (step) => new ProviderUnavailableError(step, 'the Modal API is unavailable');
const failure: Translate = (step, message) => new ProviderFailureError(step, message);

/**
 * SDK error classes, most specific first. Matched by instanceof and by name, because a second
 * copy of the SDK (another version in node_modules) has its own classes with the same names.
 */
const SDK_ERRORS: Array<[new (...args: never[]) => Error, string, Translate]> = [
  [SandboxFilesystemNotFoundError, 'SandboxFilesystemNotFoundError', notFound],
  [SandboxFilesystemFileTooLargeError, 'SandboxFilesystemFileTooLargeError', invalid],
  [SandboxFilesystemDirectoryNotEmptyError, 'SandboxFilesystemDirectoryNotEmptyError', conflict],
  [SandboxFilesystemIsADirectoryError, 'SandboxFilesystemIsADirectoryError', conflict],
  [SandboxFilesystemNotADirectoryError, 'SandboxFilesystemNotADirectoryError', conflict],
  [SandboxFilesystemPathAlreadyExistsError, 'SandboxFilesystemPathAlreadyExistsError', conflict],
  [SandboxFilesystemPermissionError, 'SandboxFilesystemPermissionError', conflict],
  [SandboxFilesystemError, 'SandboxFilesystemError', failure],
  [NotFoundError, 'NotFoundError', notFound],
  [InvalidError, 'InvalidError', invalid],
  [AlreadyExistsError, 'AlreadyExistsError', conflict],
  [ConflictError, 'ConflictError', conflict],
  [ResourceExhaustedError, 'ResourceExhaustedError', exhausted],
  [TimeoutError, 'TimeoutError', timeout],
  [SandboxTimeoutError, 'SandboxTimeoutError', timeout],
  [ClientClosedError, 'ClientClosedError', (step) => new ProviderConflictError(step, 'the connection to the sandbox was closed')],
];

/** gRPC status codes (nice-grpc ClientError.code) that reach us unwrapped from some SDK calls. */
const GRPC_CODES: Record<number, Translate> = {
  3: invalid, // INVALID_ARGUMENT
  4: timeout, // DEADLINE_EXCEEDED
  5: notFound, // NOT_FOUND
  6: conflict, // ALREADY_EXISTS
  8: exhausted, // RESOURCE_EXHAUSTED
  9: conflict, // FAILED_PRECONDITION
  14: unavailable, // UNAVAILABLE
};
const GRPC_UNAUTHENTICATED = 16;
const GRPC_PERMISSION_DENIED = 7;
/** How a credential rejection reads when it arrives wrapped in another error's message. */
const AUTH_FAILURE_TEXT = [/\bUNAUTHENTICATED\b|\bPERMISSION_DENIED\b/, /unauthori[sz]ed|\b401\b|invalid (api )?token|token (is )?(invalid|missing|expired)/i];
const MAX_MESSAGE_LENGTH = 500;

/**
 * Translates anything an SDK call threw into our provider errors, naming the failing step.
 * Rejected credentials are logged as a configuration problem and surface without internals.
 */
export function toProviderError(step: ProviderStep, error: unknown, logger: Logger): DomainError {
  if (error instanceof DomainError) return error;
  if (isAuthenticationFailure(error)) {
    logger.error(`Modal rejected the configured credentials during the ${step} step: check MODAL_TOKEN_ID, MODAL_TOKEN_SECRET and MODAL_ENVIRONMENT`);
    return new ProviderUnavailableError(step, 'the sandbox engine is not available');
  }
  const message = errorMessage(error);
  const grpc = grpcCode(error);
  if (grpc !== undefined) return (GRPC_CODES[grpc] ?? failure)(step, grpcDetails(error) ?? message);
  const match = SDK_ERRORS.find(([errorClass, name]) => error instanceof errorClass || (error as Error | null)?.name === name);
  return (match?.[2] ?? failure)(step, message);
}

/** Runs one SDK call under the provider's deadline and error translation. */
export type ModalCall = <T>(step: ProviderStep, what: string, call: () => Promise<T>, seconds?: number) => Promise<T>;

/**
 * Runs one SDK call with a deadline; whatever it throws, or the deadline itself, comes out as a
 * provider error. The call is not cancelled (the SDK offers no cancellation), only abandoned.
 */
export async function withDeadline<T>(step: ProviderStep, what: string, seconds: number, logger: Logger, call: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new ProviderTimeoutError(step, `${what} did not finish within ${seconds}s`)), seconds * 1000);
  });
  try {
    return await Promise.race([Promise.resolve().then(call), deadline]);
  } catch (error) {
    throw toProviderError(step, error, logger);
  } finally {
    clearTimeout(timer);
  }
}

function isAuthenticationFailure(error: unknown): boolean {
  const code = grpcCode(error);
  if (code === GRPC_UNAUTHENTICATED || code === GRPC_PERMISSION_DENIED) return true;
  if ((error as Error | null)?.name?.startsWith('SandboxFilesystem')) return false;
  return AUTH_FAILURE_TEXT.some((pattern) => pattern.test(errorMessage(error)));
}

function grpcCode(error: unknown): number | undefined {
  const candidate = error as { name?: unknown; code?: unknown } | null;
  return candidate?.name === 'ClientError' && typeof candidate.code === 'number' ? candidate.code : undefined;
}

function grpcDetails(error: unknown): string | undefined {
  const details = (error as { details?: unknown }).details;
  return typeof details === 'string' && details !== '' ? details.slice(0, MAX_MESSAGE_LENGTH) : undefined;
}

function errorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.slice(0, MAX_MESSAGE_LENGTH);
}
