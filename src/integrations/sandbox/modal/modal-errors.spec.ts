import { Logger } from '@nestjs/common';
import {
  AlreadyExistsError,
  ClientClosedError,
  ConflictError,
  InvalidError,
  NotFoundError,
  ResourceExhaustedError,
  SandboxFilesystemDirectoryNotEmptyError,
  SandboxFilesystemError,
  SandboxFilesystemNotFoundError,
  SandboxTimeoutError,
  TimeoutError,
} from 'modal';
import { DeadlineExceededError } from '../../../common/domain-error';
import {
  ProviderConflictError,
  ProviderExhaustedError,
  ProviderFailureError,
  ProviderInvalidError,
  ProviderNotFoundError,
  ProviderTimeoutError,
  ProviderUnavailableError,
  VolumePathNotFoundError,
} from '../sandbox-provider.errors';
import { toProviderError, withDeadline } from './modal-errors';
import { never } from './testing/fake-modal';

const logger = new Logger('test');

/** The same error as a second copy of the SDK would throw it: another class, the same name. */
function sameNameOnly(error: Error): Error {
  const copy = new Error(error.message);
  copy.name = error.name;
  return copy;
}

/** nice-grpc's ClientError as some SDK calls let it through. */
function grpcError(code: number, details: string): Error {
  return Object.assign(new Error(`/modal.client.ModalClient/Call ${code}: ${details}`), { name: 'ClientError', code, details, path: '/modal.client.ModalClient/Call' });
}

describe('toProviderError', () => {
  let logged: jest.SpyInstance;
  beforeEach(() => {
    logged = jest.spyOn(logger, 'error').mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  const cases: Array<[string, Error, new (...args: never[]) => Error, number]> = [
    ['NotFoundError', new NotFoundError("Volume 'x' not found"), ProviderNotFoundError, 404],
    ['InvalidError', new InvalidError('bad name'), ProviderInvalidError, 400],
    ['AlreadyExistsError', new AlreadyExistsError('exists'), ProviderConflictError, 409],
    ['ConflictError', new ConflictError('busy'), ProviderConflictError, 409],
    ['ResourceExhaustedError', new ResourceExhaustedError('quota'), ProviderExhaustedError, 503],
    ['TimeoutError', new TimeoutError('slow'), ProviderTimeoutError, 504],
    ['SandboxTimeoutError', new SandboxTimeoutError('slow'), ProviderTimeoutError, 504],
    ['SandboxFilesystemNotFoundError', new SandboxFilesystemNotFoundError('No such file: /w/a'), ProviderNotFoundError, 404],
    ['SandboxFilesystemDirectoryNotEmptyError', new SandboxFilesystemDirectoryNotEmptyError('not empty'), ProviderConflictError, 409],
    ['SandboxFilesystemError', new SandboxFilesystemError('odd'), ProviderFailureError, 502],
    ['ClientClosedError', new ClientClosedError(), ProviderConflictError, 409],
  ];
  const httpStatus: Record<string, number> = { not_found: 404, invalid: 400, conflict: 409, unavailable: 503, timeout: 504, bad_gateway: 502 };

  it.each(cases)('maps the SDK class %s and names the step', (_name, error, expected, status) => {
    const mapped = toProviderError('volume', error, logger);
    expect(mapped).toBeInstanceOf(expected);
    expect(httpStatus[mapped.kind]).toBe(status);
    expect(mapped.message).toMatch(/^volume: /);
    expect(mapped.details).toEqual({ step: 'volume' });
  });

  it.each(cases)('maps %s by name alone (another copy of the SDK)', (_name, error, expected) => {
    const mapped = toProviderError('exec', sameNameOnly(error), logger);
    expect(mapped).toBeInstanceOf(expected);
    expect(mapped.message).toMatch(/^exec: /);
  });

  it('keeps the SDK message and adds retry advice when Modal is out of capacity', () => {
    expect(toProviderError('sandbox', new ResourceExhaustedError('sandbox quota reached'), logger).message).toBe(
      'sandbox: sandbox quota reached; retry in a few seconds',
    );
  });

  it.each([
    [3, ProviderInvalidError],
    [4, ProviderTimeoutError],
    [5, ProviderNotFoundError],
    [6, ProviderConflictError],
    [8, ProviderExhaustedError],
    [9, ProviderConflictError],
    [14, ProviderUnavailableError],
    [13, ProviderFailureError],
  ])('maps a raw gRPC status %i', (code, expected) => {
    const mapped = toProviderError('app', grpcError(code, 'some details'), logger);
    expect(mapped).toBeInstanceOf(expected);
  });

  it.each([
    ['gRPC UNAUTHENTICATED', grpcError(16, 'Token ak-secret123 is invalid')],
    ['gRPC PERMISSION_DENIED', grpcError(7, 'workspace ak-secret123 denied')],
    ['a 401 message', new Error('HTTP 401 Unauthorized for token ak-secret123')],
  ])('turns %s into a 503 without internals and logs a configuration error without the token', (_what, error) => {
    const mapped = toProviderError('app', error, logger);
    expect(mapped).toBeInstanceOf(ProviderUnavailableError);
    expect(mapped.message).toBe('app: the sandbox engine is not available');
    expect(logged).toHaveBeenCalledTimes(1);
    const line = String(logged.mock.calls[0][0]);
    expect(line).toContain('MODAL_TOKEN_ID');
    expect(line).not.toContain('ak-secret123');
  });

  it('does not take a permission problem inside the sandbox for rejected credentials', () => {
    const mapped = toProviderError('filesystem', Object.assign(new Error('PERMISSION_DENIED: /w/a'), { name: 'SandboxFilesystemPermissionError' }), logger);
    expect(mapped).toBeInstanceOf(ProviderConflictError);
    expect(logged).not.toHaveBeenCalled();
  });

  it('passes our own domain errors through and wraps anything else as an upstream failure', () => {
    const ours = new VolumePathNotFoundError('a.txt');
    expect(toProviderError('filesystem', ours, logger)).toBe(ours);
    const mapped = toProviderError('image', new Error('x'.repeat(2000)), logger);
    expect(mapped).toBeInstanceOf(ProviderFailureError);
    expect(mapped.message.length).toBeLessThan(600);
  });
});

describe('withDeadline', () => {
  afterEach(() => jest.useRealTimers());

  it('rejects a call that never answers with a 504 naming the step, once the deadline passes', async () => {
    jest.useFakeTimers();
    const outcome = withDeadline('volume', 'volume volume-a', 3, logger, never);
    const settled = jest.fn();
    outcome.catch(settled);
    await jest.advanceTimersByTimeAsync(2999);
    expect(settled).not.toHaveBeenCalled();
    await jest.advanceTimersByTimeAsync(1);
    await expect(outcome).rejects.toBeInstanceOf(ProviderTimeoutError);
    await expect(outcome).rejects.toBeInstanceOf(DeadlineExceededError);
    await expect(outcome).rejects.toThrow('volume: volume volume-a did not finish within 3s');
  });

  it('returns the answer and maps a synchronous SDK throw', async () => {
    await expect(withDeadline('app', 'x', 1, logger, async () => 42)).resolves.toBe(42);
    await expect(
      withDeadline('image', 'x', 1, logger, () => {
        throw new InvalidError('COPY commands that copy from local context are not yet supported.');
      }),
    ).rejects.toBeInstanceOf(ProviderInvalidError);
  });
});
