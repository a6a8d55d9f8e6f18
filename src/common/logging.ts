import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import type { Params } from 'nestjs-pino';
import { type DestinationStream, stdSerializers } from 'pino';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Paths pino blanks in every log line, whatever the logger was handed. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.token',
  '*.access_token',
  '*.secret',
  '*.apiKey',
  '*.api_key',
];

/** Properties of database errors (TypeORM's QueryFailedError, pg's errors) that repeat the statement or its values. */
const STATEMENT_PROPERTIES = ['query', 'parameters', 'driverError', 'where', 'internalQuery'];

/**
 * An error as pino logs it, without the SQL statement and its parameters a database error carries:
 * those hold what was being written (password hashes, tokens' hashes, tenants' output). The
 * driver's code and message stay, which is what an operator needs.
 */
export function loggableError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const serialized = stdSerializers.err(error) as unknown as Record<string, unknown>;
  const code = (error as { code?: unknown; driverError?: { code?: unknown } }).code ?? (error as { driverError?: { code?: unknown } }).driverError?.code;
  for (const property of STATEMENT_PROPERTIES) delete serialized[property];
  return code === undefined ? serialized : { ...serialized, code };
}

/**
 * Structured JSON logs, one request id per request (the caller's X-Request-Id when it is sane), and
 * the instance's id on every line (with pino's usual pid and hostname).
 */
export function buildLoggerParams(level: string, instanceId: string, destination?: DestinationStream): Params {
  const options = {
        level,
        base: { pid: process.pid, hostname: hostname(), instance_id: instanceId },
        redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
        genReqId: (request: IncomingMessage, response: ServerResponse) => {
          const incoming = request.headers['x-request-id'];
          const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
          response.setHeader('X-Request-Id', id);
          return id;
        },
        customProps: (request: IncomingMessage & { id?: unknown }) => ({ request_id: request.id }),
        serializers: {
          req: (request: { id: unknown; method: string; url: string }) => ({ id: request.id, method: request.method, url: request.url }),
          err: loggableError,
        },
  };
  return { pinoHttp: destination ? [options, destination] : options };
}
