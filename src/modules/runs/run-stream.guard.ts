import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import { InvalidInputError } from '../../common/domain-error';
import { AuthenticatedUser } from '../auth/authenticated-user';
import { RunNotFoundError } from './runs.errors';
import { RunsService } from './runs.service';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SEQ = /^\d{1,9}$/;

/**
 * Checks an event-stream request before the stream starts: Nest sends the SSE headers (200) as soon
 * as the handler is called, so a 404 or 400 decided inside it could never reach the client.
 */
@Injectable()
export class RunStreamGuard implements CanActivate {
  constructor(private readonly runs: RunsService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<Request & { user: AuthenticatedUser }>();
    const { id, run_id: runId } = request.params as Record<string, string>;
    if (!UUID.test(id) || !UUID.test(runId)) throw new RunNotFoundError();
    const after = request.headers['last-event-id'] ?? request.query.after;
    if (after !== undefined && (typeof after !== 'string' || !SEQ.test(after))) {
      throw new InvalidInputError('Last-Event-ID / after must be an event sequence number');
    }
    await this.runs.get(request.user.accountId, id, runId);
    return true;
  }
}
