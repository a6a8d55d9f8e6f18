import { Writable } from 'node:stream';
import pino from 'pino';
import { QueryFailedError } from 'typeorm';
import { buildLoggerParams, loggableError, REDACTED_PATHS } from './logging';

describe('loggableError', () => {
  function logged(error: unknown): string {
    let text = '';
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        text += chunk.toString();
        callback();
      },
    });
    pino({ redact: REDACTED_PATHS, serializers: { err: loggableError } }, destination).error({ err: error }, 'unhandled error');
    return text;
  }

  it('logs a database error without its statement and parameters, keeping its code and message', () => {
    const driverError = Object.assign(new Error('duplicate key value violates unique constraint "uq_user_email"'), { code: '23505' });
    const error = new QueryFailedError('INSERT INTO "user"("email", "password_hash") VALUES ($1, $2)', ['a@example.test', 'scrypt$secret-hash-value'], driverError);

    const line = JSON.parse(logged(error));

    expect(JSON.stringify(line)).not.toContain('secret-hash-value');
    expect(JSON.stringify(line)).not.toContain('INSERT INTO');
    expect(line.err).toMatchObject({ type: 'QueryFailedError', code: '23505', message: expect.stringContaining('duplicate key') });
    expect(line.err.stack).toEqual(expect.any(String));
  });

  it('logs other errors as pino does', () => {
    const line = JSON.parse(logged(new TypeError('boom')));

    expect(line.err).toMatchObject({ type: 'TypeError', message: 'boom' });
  });
});

describe('buildLoggerParams', () => {
  it("puts the instance's id on every line, beside pino's pid and hostname", () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString());
        callback();
      },
    });
    const [options] = buildLoggerParams('info', 'web-1-abc123', destination).pinoHttp as [pino.LoggerOptions, unknown];

    const logger = pino(options, destination);
    logger.info('one');
    logger.child({ context: 'Child' }).warn({ detail: 1 }, 'two');

    expect(lines.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ msg: 'one', instance_id: 'web-1-abc123', pid: process.pid, hostname: expect.any(String) }),
      expect.objectContaining({ msg: 'two', instance_id: 'web-1-abc123', context: 'Child' }),
    ]);
  });
});
