import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import type { Request, Response } from 'express';
import { STATUS_CODES } from 'node:http';
import { DiskFullError, findDiskFullCause } from './disk-full';
import { DomainError, DomainErrorKind } from './domain-error';
import { JsonTooDeepError, NulCharacterError } from './json-body-guards';

const STATUS_BY_KIND: Record<DomainErrorKind, number> = {
  invalid: HttpStatus.BAD_REQUEST,
  unauthenticated: HttpStatus.UNAUTHORIZED,
  forbidden: HttpStatus.FORBIDDEN,
  not_found: HttpStatus.NOT_FOUND,
  conflict: HttpStatus.CONFLICT,
  payload_too_large: HttpStatus.PAYLOAD_TOO_LARGE,
  unprocessable: HttpStatus.UNPROCESSABLE_ENTITY,
  bad_gateway: HttpStatus.BAD_GATEWAY,
  unavailable: HttpStatus.SERVICE_UNAVAILABLE,
  timeout: HttpStatus.GATEWAY_TIMEOUT,
};

/** Errors thrown by Express' body parser carry a `type` and a status. */
interface BodyParserError {
  type: string;
  status: number;
}
const BODY_PARSER_MESSAGES: Record<string, string> = {
  'entity.parse.failed': 'Malformed JSON in request body',
  'entity.too.large': 'Request body is larger than the configured BODY_LIMIT',
  'encoding.unsupported': 'Unsupported request body encoding',
  'charset.unsupported': 'Unsupported request body charset',
};

export interface ErrorBody {
  statusCode: number;
  error: string;
  message: string | string[];
  request_id?: string;
  details?: Record<string, unknown>;
}

/** The one place errors become HTTP answers; anything unexpected is a 500 with a request id. */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger(HttpExceptionFilter.name);

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<Request & { id?: string }>();
    const response = http.getResponse<Response>();
    const body = this.toBody(exception, String(request.id ?? ''));
    if (response.headersSent) {
      this.logger.warn({ err: exception, request_id: request.id }, 'error after the response started');
      response.end();
      return;
    }
    response.status(body.statusCode).json(body);
  }

  private toBody(exception: unknown, requestId: string): ErrorBody {
    const diskFull = exception instanceof DomainError ? undefined : findDiskFullCause(exception);
    if (diskFull) {
      // Without the query and its parameters (they may hold secrets): the cause is what the operator needs.
      this.logger.error({ request_id: requestId, code: diskFull.code, error: diskFull.message }, 'a write failed: the disk is full');
      return this.toBody(new DiskFullError(), requestId);
    }
    if (exception instanceof DomainError) {
      const statusCode = STATUS_BY_KIND[exception.kind];
      return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message: exception.message, ...(exception.details ? { details: exception.details } : {}) };
    }
    const parserError = [exception, (exception as { cause?: unknown } | null)?.cause].find(isBodyParserError);
    if (parserError) {
      const message = isBodyGuardError(parserError) ? (parserError as unknown as Error).message : (BODY_PARSER_MESSAGES[parserError.type] ?? 'Invalid request body');
      return { statusCode: parserError.status, error: STATUS_CODES[parserError.status] ?? 'Error', message };
    }
    if (exception instanceof HttpException) {
      const statusCode = exception.getStatus();
      const payload = exception.getResponse();
      const message = typeof payload === 'string' ? payload : ((payload as { message?: string | string[] }).message ?? exception.message);
      // Terminus' 503 carries each check's state there: what a health probe's reader needs.
      const details = typeof payload === 'object' ? (payload as { details?: unknown }).details : undefined;
      return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message, ...(isPlainObject(details) ? { details } : {}) };
    }
    this.logger.error({ err: exception, request_id: requestId }, 'unhandled error');
    return { statusCode: 500, error: 'Internal Server Error', message: 'An unexpected error occurred; quote the request id when reporting it', request_id: requestId };
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Our own checks inside the body parser, whose messages name the problem. */
function isBodyGuardError(error: unknown): boolean {
  return error instanceof NulCharacterError || error instanceof JsonTooDeepError;
}

function isBodyParserError(value: unknown): value is BodyParserError {
  const candidate = value as Partial<BodyParserError> | null;
  return typeof candidate?.type === 'string' && typeof candidate.status === 'number' && candidate.status >= 400 && candidate.status < 500;
}
