import { ArgumentsHost, BadRequestException, HttpException, Logger, NotFoundException } from '@nestjs/common';
import { QueryFailedError } from 'typeorm';
import {
  ConflictError,
  DeadlineExceededError,
  DomainError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  PayloadTooLargeError,
  UnauthenticatedError,
  UnavailableError,
  UnprocessableError,
  UpstreamError,
} from './domain-error';
import { ErrorBody, HttpExceptionFilter } from './http-exception.filter';

interface CapturedResponse {
  headersSent: boolean;
  status: jest.Mock;
  json: jest.Mock;
  end: jest.Mock;
}

/** Runs the filter for one request and returns what the client received. */
function answer(exception: unknown, options: { requestId?: string; headersSent?: boolean } = {}) {
  const response: CapturedResponse = { headersSent: options.headersSent ?? false, status: jest.fn(), json: jest.fn(), end: jest.fn() };
  response.status.mockReturnValue(response);
  const host = {
    switchToHttp: () => ({ getRequest: () => ({ id: options.requestId ?? 'req-1' }), getResponse: () => response }),
  } as unknown as ArgumentsHost;
  new HttpExceptionFilter().catch(exception, host);
  const body = response.json.mock.calls[0]?.[0] as ErrorBody | undefined;
  return { status: response.status.mock.calls[0]?.[0] as number | undefined, body, response };
}

/** The shape Express' body parser gives its errors (http-errors). */
function bodyParserError(type: string, status: number, message: string): Error {
  return Object.assign(new Error(message), { type, status, statusCode: status, expose: true });
}

describe('HttpExceptionFilter', () => {
  let loggedErrors: jest.SpyInstance;

  beforeEach(() => {
    loggedErrors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  it.each<[string, number, string, DomainError]>([
    ['invalid', 400, 'Bad Request', new InvalidInputError('bad field')],
    ['unauthenticated', 401, 'Unauthorized', new UnauthenticatedError('who are you')],
    ['forbidden', 403, 'Forbidden', new ForbiddenError('not yours')],
    ['not_found', 404, 'Not Found', new NotFoundError('no such thing')],
    ['conflict', 409, 'Conflict', new ConflictError('already there')],
    ['payload_too_large', 413, 'Payload Too Large', new PayloadTooLargeError('too big')],
    ['unprocessable', 422, 'Unprocessable Entity', new UnprocessableError('cannot build')],
    ['bad_gateway', 502, 'Bad Gateway', new UpstreamError('store failed')],
    ['unavailable', 503, 'Service Unavailable', new UnavailableError('not configured')],
    ['timeout', 504, 'Gateway Timeout', new DeadlineExceededError('too slow')],
  ])('answers a %s domain error with %i and its message', (_kind, statusCode, reason, error) => {
    const { status, body } = answer(error);

    expect(status).toBe(statusCode);
    expect(body).toEqual({ statusCode, error: reason, message: error.message });
  });

  it('includes the details of a domain error', () => {
    const { body } = answer(new ConflictError('A run is already active', { active_run_id: 'run-1' }));

    expect(body?.details).toEqual({ active_run_id: 'run-1' });
  });

  it('passes an HttpException through with its status and message', () => {
    const { status, body } = answer(new NotFoundException('Cannot GET /nowhere'));

    expect(status).toBe(404);
    expect(body).toEqual({ statusCode: 404, error: 'Not Found', message: 'Cannot GET /nowhere' });
  });

  it('keeps every validation message of a BadRequestException', () => {
    const messages = ['email must be an email', 'password should not be empty'];

    const { status, body } = answer(new BadRequestException(messages));

    expect(status).toBe(400);
    expect(body?.message).toEqual(messages);
  });

  it('uses the text of an HttpException built from a string', () => {
    const { status, body } = answer(new HttpException('Too many login attempts', 429));

    expect(status).toBe(429);
    expect(body).toEqual({ statusCode: 429, error: 'Too Many Requests', message: 'Too many login attempts' });
  });

  describe('request body errors', () => {
    it('answers malformed JSON with 400 and a message that does not echo the body', () => {
      const { status, body } = answer(bodyParserError('entity.parse.failed', 400, 'Unexpected token s in JSON at position 9: {"secret":'));

      expect(status).toBe(400);
      expect(body?.message).toBe('Malformed JSON in request body');
    });

    it('answers a body over the limit with 413 naming BODY_LIMIT', () => {
      const { status, body } = answer(bodyParserError('entity.too.large', 413, 'request entity too large'));

      expect(status).toBe(413);
      expect(body?.message).toContain('BODY_LIMIT');
    });

    it('recognises malformed JSON wrapped by Nest as the cause of a BadRequestException', () => {
      const parserError = bodyParserError('entity.parse.failed', 400, 'Unexpected end of JSON input');

      const { status, body } = answer(new BadRequestException(parserError.message, { cause: parserError }));

      expect(status).toBe(400);
      expect(body?.message).toBe('Malformed JSON in request body');
    });

    it('keeps the 413 of a too-large body wrapped as the cause of an HttpException', () => {
      const parserError = bodyParserError('entity.too.large', 413, 'request entity too large');

      const { status, body } = answer(new HttpException(parserError.message, 413, { cause: parserError }));

      expect(status).toBe(413);
      expect(body?.message).toContain('BODY_LIMIT');
    });
  });

  describe('unexpected errors', () => {
    it('answers 500 with a generic message and the request id, keeping the details out of the body', () => {
      const failure = new Error('connect ECONNREFUSED postgres://app:hunter2@db:5432/prod');

      const { status, body } = answer(failure, { requestId: 'req-42' });

      expect(status).toBe(500);
      expect(body).toEqual({ statusCode: 500, error: 'Internal Server Error', message: expect.stringContaining('request id'), request_id: 'req-42' });
      expect(JSON.stringify(body)).not.toMatch(/ECONNREFUSED|hunter2|postgres/);
    });

    it('logs the error with the request id so an operator can find it', () => {
      const failure = new TypeError('cannot read properties of undefined');

      answer(failure, { requestId: 'req-7' });

      expect(loggedErrors).toHaveBeenCalledWith(expect.objectContaining({ err: failure, request_id: 'req-7' }), expect.any(String));
    });

    it('treats a thrown non-error value as unexpected too', () => {
      const { status, body } = answer('something odd');

      expect(status).toBe(500);
      expect(JSON.stringify(body)).not.toContain('something odd');
    });

    it('does not take a server-side error with a 5xx status for a body error', () => {
      const { status } = answer(Object.assign(new Error('EACCES reading /srv/file'), { type: 'system', status: 500 }));

      expect(status).toBe(500);
    });
  });

  describe('a full disk', () => {
    const diskFull = () =>
      new QueryFailedError('INSERT INTO "user" …', ['owner@example.test', 'scrypt$hash'], Object.assign(new Error('could not extend file "base/5/16406": No space left on device'), { code: '53100' }));

    it('answers a write that failed for lack of space with 503 saying the disk is full', () => {
      const { status, body } = answer(diskFull());

      expect(status).toBe(503);
      expect(body).toEqual({ statusCode: 503, error: 'Service Unavailable', message: expect.stringMatching(/no space left/i), details: { reason: 'disk_full' } });
    });

    it('answers a file system ENOSPC the same way', () => {
      const { status } = answer(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));

      expect(status).toBe(503);
    });

    it('logs the cause with the request id, without the query parameters', () => {
      answer(diskFull(), { requestId: 'req-9' });

      expect(loggedErrors).toHaveBeenCalledWith({ request_id: 'req-9', code: '53100', error: expect.stringContaining('No space left') }, expect.stringContaining('disk is full'));
      expect(JSON.stringify(loggedErrors.mock.calls)).not.toContain('scrypt$hash');
    });

    it('leaves a domain error about a full volume to its own mapping', () => {
      const { status, body } = answer(new UpstreamError('no space left for /workspace/big.bin'));

      expect(status).toBe(502);
      expect(body?.message).toBe('no space left for /workspace/big.bin');
    });
  });

  it('only ends a response that has already started streaming', () => {
    const { status, response } = answer(new InvalidInputError('late'), { headersSent: true });

    expect(status).toBeUndefined();
    expect(response.json).not.toHaveBeenCalled();
    expect(response.end).toHaveBeenCalled();
  });
});
